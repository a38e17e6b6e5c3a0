"""What the Hugging Face architectures share: reading config.json values (transformers 4 and 5 spellings)
and the RoPE, window and activation settings spelled in them."""
from __future__ import annotations

from .._core import Error
from . import positive_float, positive_int, scaled_rope_inv_freq

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

    def rope_parameters(self, layer_type: str | None = None) -> dict:
        """transformers 5's rope_parameters (per layer type where the model has several), or transformers 4's
        rope_theta + rope_scaling, as one dict with rope_type and rope_theta."""
        params = self.get("rope_parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise Error(f"{self.source}: 'rope_parameters' must be an object, got {params!r}"[:300])
            if layer_type is not None and layer_type in params:
                params = params[layer_type]
            if not isinstance(params, dict) or "rope_theta" not in params:
                raise Error(f"{self.source}: 'rope_parameters' has no rope_theta"
                            + (f" for {layer_type}" if layer_type else ""))
            return params
        scaling = self.get("rope_scaling") or {}
        if not isinstance(scaling, dict):
            raise Error(f"{self.source}: 'rope_scaling' must be an object, got {scaling!r}"[:300])
        params = dict(scaling)
        params.setdefault("rope_type", params.pop("type", "default"))
        params["rope_theta"] = self.get("rope_theta", 10000.0)
        return params

    def rope_inv_freq(self, head_dim: int, layer_type: str | None = None):
        params = self.rope_parameters(layer_type)
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise Error(f"{self.source}: partial rotary embeddings are not supported")
        base = positive_float(params["rope_theta"], f"{self.source}: rope_theta")
        return scaled_rope_inv_freq(base, head_dim, params, f"{self.source}: rope scaling")

    def layer_types(self, n_layers: int, default: list) -> list:
        types = self.get("layer_types", default)
        if not isinstance(types, list) or len(types) != n_layers or \
                any(t not in ("full_attention", "sliding_attention") for t in types):
            raise Error(f"{self.source}: 'layer_types' must list 'full_attention' or 'sliding_attention' for each of "
                        f"the {n_layers} layers")
        return types

    def sliding_windows(self, types: list) -> list:
        if "sliding_attention" not in types:
            return [0] * len(types)
        window = self.int("sliding_window")
        return [window if t == "sliding_attention" else 0 for t in types]
