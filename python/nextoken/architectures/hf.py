"""Reading config.json values for the encoder-decoder families mapped here (t5.py, bart.py,
vision_encoder_decoder.py). The decoder-only families are mapped in C++ (csrc/loaders/hf_models.cpp),
whose HFConfig reads the same way."""
from __future__ import annotations

from .._core import Error
from . import positive_float, positive_int

ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


class HFConfig:
    """config.json of a folder, read with errors that name the file and the key."""

    def __init__(self, values: dict, source: str):
        if not isinstance(values, dict):  # a sub-config (encoder, decoder) of the wrong type
            raise Error(f"{source}: expected a JSON object, got {type(values).__name__} {str(values)[:40]}")
        self.values, self.source = values, source

    def get(self, key, default=None):
        return self.values.get(key, default) if self.values.get(key) is not None else default

    def require(self, key):
        if self.values.get(key) is None:
            raise Error(f"{self.source} lacks '{key}'")
        return self.values[key]

    def int(self, key, default=None) -> int:
        value = self.get(key, default)
        if value is None:
            self.require(key)
        return positive_int(value, f"{self.source}: '{key}'")

    def float(self, key, default=None) -> float:
        value = self.get(key, default)
        if value is None:
            self.require(key)
        return positive_float(value, f"{self.source}: '{key}'")

    def activation(self, key: str) -> str:
        act = self.require(key)
        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise Error(f"{self.source}: '{key}' is '{act}' (supported: {', '.join(ACTIVATIONS)})")
        return ACTIVATIONS[act]
