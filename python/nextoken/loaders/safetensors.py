"""Hugging Face model folders: config.json, model.safetensors (or shards listed in
model.safetensors.index.json), generation_config.json and the tokenizer files.

Read by the core (csrc/loaders/safetensors.cpp), which the C API shares: the JSON files parsed, the
tensors left in the memory-mapped files (the `safetensors` package's numpy loader cannot return BF16
tensors and copies every tensor). Only F32, F16 and BF16 tensors are accepted; everything a user can
get wrong is a nextoken.Error naming the file."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import _core
from .._core import Error
from ..architectures import Tensor


@dataclass
class HFFolder:
    path: Path
    config: dict
    tensors: dict = field(default_factory=dict)            # name -> Tensor (views of the mapped files)
    generation_config: dict = field(default_factory=dict)
    preprocessor_config: dict = field(default_factory=dict)  # image models: preprocessor_config.json

    @property
    def source(self) -> str:
        return self.path.name

    @property
    def config_source(self) -> str:
        return f"{self.path.name}/config.json"


def is_folder(path) -> bool:
    return Path(path).is_dir()


def read_json(path: Path) -> dict:
    """A JSON object from a file; anything else is a nextoken.Error naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise Error(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(value, dict):
        raise Error(f"{path}: expected a JSON object")
    return value


def read(folder) -> HFFolder:
    folder = Path(folder)
    f = _core.read_hf_folder(str(folder))
    tensors = {name: Tensor(*t) for name, t in f["tensors"].items()}
    return HFFolder(folder, f["config"], tensors, f["generation_config"], f["preprocessor_config"])


def read_file(path: Path) -> dict:
    """The tensors of one .safetensors file: name -> Tensor, viewing the memory map."""
    return {name: Tensor(*t) for name, t in _core.read_safetensors(str(path)).items()}
