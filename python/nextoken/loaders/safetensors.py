"""Hugging Face model folders: config.json, model.safetensors (or shards listed in
model.safetensors.index.json), generation_config.json and the tokenizer files.

Tensors stay in the memory-mapped files. The safetensors layout is read here (an 8-byte little-endian
header length, a JSON header of name -> dtype, shape and byte offsets, then the data) rather than with
the `safetensors` package, whose numpy loader cannot return BF16 tensors (numpy has no bfloat16) and
copies every tensor. Only F32, F16 and BF16 tensors are accepted; everything a user can get wrong is a
nextoken.Error naming the file."""
from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._core import Error
from ..architectures import BF16, F16, F32, Tensor

_DTYPES = {"F32": (F32, 4), "F16": (F16, 2), "BF16": (BF16, 2)}


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
    if not (folder / "config.json").is_file():
        raise Error(f"{folder} is not a Hugging Face model folder: it has no config.json")
    config = read_json(folder / "config.json")
    generation = read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise Error(f"{index}: no 'weight_map' of tensor name -> file")
        files = sorted(set(weight_map.values()))
    elif (folder / "model.safetensors").is_file():
        weight_map, files = None, ["model.safetensors"]
    else:
        raise Error(f"{folder} has no model.safetensors or model.safetensors.index.json "
                    "(only safetensors weights are read)")
    tensors = {}
    for name in files:
        path = folder / name
        if path.parent != folder or not path.is_file():
            raise Error(f"{index.name} names '{name}', which is not a file in {folder}")
        for tensor_name, tensor in read_file(path).items():
            if tensor_name in tensors:
                raise Error(f"tensor '{tensor_name}' appears in two files of {folder}")
            if weight_map is not None and weight_map.get(tensor_name) != name:
                raise Error(f"{path.name} holds '{tensor_name}', which {index.name} places elsewhere")
            tensors[tensor_name] = tensor
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise Error(f"{index.name} lists '{missing[0]}', which no shard holds")
    processor = folder / "preprocessor_config.json"
    return HFFolder(folder, config, tensors, generation, read_json(processor) if processor.is_file() else {})


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_file(path: Path) -> dict:
    """The tensors of one .safetensors file: name -> Tensor, viewing the memory map."""
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise Error(f"{path} is empty") from None
    if len(buf) < 8:
        raise Error(f"{path} is not a safetensors file: too short")
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > len(buf) - 8:
        raise Error(f"{path}: header of {n} bytes is longer than the file (truncated or not safetensors)")
    try:
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise Error(f"{path}: unreadable safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise Error(f"{path}: the safetensors header is not a JSON object")
    data_start, tensors = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        # The format's types, strictly (as the safetensors crate reads them): a dtype string, a list of integer
        # dimensions and two integer offsets
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or \
                not isinstance(info.get("shape"), list) or not all(map(_is_int, info["shape"])) or \
                not isinstance(info.get("data_offsets"), list) or len(info["data_offsets"]) != 2 or \
                not all(map(_is_int, info["data_offsets"])):
            raise Error(f"{path}: tensor '{name}' has a malformed header entry (it needs a dtype string, a shape "
                        f"of integers and two integer data_offsets): {str(info)[:100]}")
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPES:
            raise Error(f"{path}: tensor '{name}' is {dtype} (supported: {', '.join(_DTYPES)})")
        type_id, item = _DTYPES[dtype]
        if any(d < 0 for d in shape):
            raise Error(f"{path}: tensor '{name}' has a negative dimension")
        if any(d >= 2**31 for d in shape):  # the core takes 32-bit sizes
            raise Error(f"{path}: tensor '{name}' has a dimension of 2**31 or more: {shape}")
        count = math.prod(shape)  # exact: a product past 2**63 must not wrap round to a size that fits
        if not 0 <= begin <= end <= len(buf) - data_start or end - begin != count * item:
            raise Error(f"{path}: tensor '{name}' ({dtype} {shape}) does not fit its byte range [{begin}, {end}) "
                        "(truncated or corrupted)")
        cols = shape[-1] if shape else 1
        rows = count // cols if cols else 0
        data = np.frombuffer(buf, np.uint8, end - begin, data_start + begin)
        if (data_start + begin) % 64:  # writers pad the header so tensors are aligned; a copy where one did not
            data = data.copy()
        tensors[name] = Tensor(type_id, rows, cols, data)
    return tensors
