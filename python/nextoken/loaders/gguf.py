"""GGUF files: metadata parsed here, tensors left in the memory map.

The format (llama.cpp's docs/gguf.md): "GGUF", version, tensor count, key/value count, the key/values,
the tensor infos (name, dims, ggml type, offset), then the tensor data at the next multiple of
general.alignment. Parsed by hand rather than with `gguf.GGUFReader` for one reason: the reader builds a
numpy view per array element, which takes ~2 s for a 49k-token vocabulary and its merges; this takes
~0.1 s. The tests check that both readers agree.

This module reads the container only; what the architecture's keys and tensors mean is in
nextoken.architectures. Everything a user can get wrong in a file is reported as nextoken.Error.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._core import Error

from .. import _core
from ..architectures import Tensor

# ggml type numbers of the types the kernels take: {number: (name, weights per block, bytes per block)} ...
SUPPORTED_TYPES = _core.weight_types()
# ... and names of the others, for error messages.
_OTHER_TYPES = {6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
                15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
                22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M"}

# GGUF metadata value types: struct format of the scalars; 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass
class GGUFFile:
    path: Path
    metadata: dict                                  # every key/value (arrays as lists or numpy arrays)
    tensors: dict = field(default_factory=dict)     # name -> Tensor (bytes viewed in the memory map)

    @property
    def architecture(self) -> str:
        return self.get("general.architecture")

    def get(self, key, default=None):
        if key in self.metadata:
            return self.metadata[key]
        if default is None:
            raise Error(f"the GGUF metadata of {self.path.name} lacks '{key}'")
        return default


class _Cursor:
    """Reads little-endian GGUF values from a buffer, failing cleanly past its end."""

    def __init__(self, buf):
        self.buf, self.pos, self.size = buf, 0, len(buf)

    def need(self, n: int):
        if n < 0 or self.pos + n > self.size:
            raise Error(f"the file ends at byte {self.size}, inside its header (truncated or corrupted)")

    def scalar(self, fmt: str):
        n = struct.calcsize("<" + fmt)
        self.need(n)
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.scalar("Q")
        self.need(n)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, type_id: int):
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id])
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            elem, n = self.scalar("I"), self.scalar("Q")
            if elem == _STRING:
                return [self.string() for _ in range(n)]
            if elem in _NUMPY:
                dtype = np.dtype(_NUMPY[elem])
                self.need(n * dtype.itemsize)
                arr = np.frombuffer(self.buf, dtype, n, self.pos).copy()
                self.pos += n * dtype.itemsize
                return arr
            if elem == _ARRAY:
                return [self.value(_ARRAY) for _ in range(n)]
        raise Error(f"unknown GGUF value type {type_id} at byte {self.pos}")


def read(path) -> GGUFFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise Error(f"{path} is not a readable GGUF file: it is empty") from None
    try:
        return _read(buf, path)
    except Error:
        raise
    except (ValueError, OverflowError, MemoryError, struct.error) as e:
        raise Error(f"{path}: malformed GGUF file: {type(e).__name__}: {e}") from e


def _read(buf, path: Path) -> GGUFFile:
    cur = _Cursor(buf)
    if len(buf) < 24 or buf[:4] != b"GGUF":
        raise Error(f"{path} is not a readable GGUF file: it does not start with the GGUF magic")
    cur.pos = 4
    version = cur.scalar("I")
    if version not in (2, 3):
        raise Error(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = cur.scalar("Q"), cur.scalar("Q")
    if n_tensors > len(buf) // 24 or n_kv > len(buf) // 12:  # each entry takes at least that many bytes
        raise Error(f"{path}: header claims {n_tensors} tensors and {n_kv} metadata entries, too many for the file")
    meta = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.scalar("I"))

    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.scalar("I")
        if n_dims > 4:
            raise Error(f"tensor '{name}' has {n_dims} dimensions (GGUF allows 4)")
        dims = [cur.scalar("Q") for _ in range(n_dims)]
        infos.append((name, dims, cur.scalar("I"), cur.scalar("Q")))
    alignment = int(meta.get("general.alignment", 32))
    if alignment < 8 or alignment & (alignment - 1):  # the format asks for a multiple of 8
        raise Error(f"{path}: general.alignment {alignment} is not a power of two of at least 8")
    data_start = -(-cur.pos // alignment) * alignment

    tensors = {}
    for name, dims, type_id, offset in infos:
        if type_id not in SUPPORTED_TYPES:
            type_name = _OTHER_TYPES.get(type_id, f"number {type_id}")
            raise Error(f"tensor '{name}' has type {type_name}, which nextoken does not support "
                        f"(supported: {', '.join(t[0] for t in SUPPORTED_TYPES.values())})")
        if name in tensors:
            raise Error(f"{path.name} holds two tensors named '{name}'")
        cols = dims[0] if dims else 1  # GGUF order: dims[0] is the row length
        rows = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
        type_name, block, block_bytes = SUPPORTED_TYPES[type_id]
        if cols % block:
            raise Error(f"tensor '{name}' has rows of {cols} weights, not whole {type_name} blocks")
        nbytes = rows * (cols // block) * block_bytes
        start = data_start + offset
        if offset % alignment or start + nbytes > len(buf):
            raise Error(f"tensor '{name}' lies outside the file (offset {offset}, {nbytes} bytes; "
                        f"the file has {len(buf)}): truncated or corrupted")
        tensors[name] = Tensor(type_id, rows, cols, np.frombuffer(buf, np.uint8, nbytes, start))
    return GGUFFile(path, meta, tensors)
