"""GGUF files: metadata parsed here, tensors left in the memory map.

The format (llama.cpp's docs/gguf.md): "GGUF", version, tensor count, key/value count, the key/values,
the tensor infos (name, dims, ggml type, offset), then the tensor data at the next multiple of
general.alignment. Parsed by hand rather than with `gguf.GGUFReader` for one reason: the reader builds a
numpy view per array element, which takes ~2 s for a 49k-token vocabulary and its merges; this takes
~0.1 s. The tests check that both readers agree.

Only the Llama architecture family is supported so far (llama; SmolLM and Mistral-style models are
stored under that name). Everything a user can get wrong in a file is reported as nextoken.Error.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._core import Error

# ggml_type numbers: the ones the kernels implement, with (block size, bytes per block) ...
SUPPORTED_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 8: "Q8_0"}
_BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34)}
# ... and names of the others, for error messages.
_OTHER_TYPES = {6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
                15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
                22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
                30: "BF16"}
SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF metadata value types: struct format of the scalars; 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass
class ModelFile:
    path: Path
    architecture: str
    config: dict                     # sizes, as _core.LlamaModel takes them
    context_length: int              # what the model was trained for
    tensors: list                    # (name, ggml type, rows, cols, uint8 view of the bytes)
    tokenizer: dict                  # model, pre, tokens, token_types, merges, bos/eos ids, add_bos
    metadata: dict = field(default_factory=dict)  # every key/value (arrays as lists or numpy arrays)


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


def read(path) -> ModelFile:
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


def _read(buf, path: Path) -> ModelFile:
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
    if alignment <= 0 or alignment & (alignment - 1):
        raise Error(f"{path}: general.alignment {alignment} is not a power of two")
    data_start = -(-cur.pos // alignment) * alignment

    def get(key, default=None):
        if key in meta:
            return meta[key]
        if default is None:
            raise Error(f"the GGUF metadata lacks '{key}'")
        return default

    arch = get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise Error(f"unsupported architecture '{arch}' in {path.name} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")

    tensors = []
    for name, dims, type_id, offset in infos:
        if type_id not in SUPPORTED_TYPES:
            type_name = _OTHER_TYPES.get(type_id, f"number {type_id}")
            raise Error(f"tensor '{name}' has type {type_name}, which nextoken does not support "
                        f"(supported: {', '.join(SUPPORTED_TYPES.values())})")
        cols = dims[0] if dims else 1  # GGUF order: dims[0] is the row length
        rows = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
        block, block_bytes = _BLOCK[type_id]
        if cols % block:
            raise Error(f"tensor '{name}' has rows of {cols} weights, not whole {SUPPORTED_TYPES[type_id]} blocks")
        nbytes = rows * (cols // block) * block_bytes
        start = data_start + offset
        if offset % alignment or start + nbytes > len(buf):
            raise Error(f"tensor '{name}' lies outside the file (offset {offset}, {nbytes} bytes; "
                        f"the file has {len(buf)}): truncated or corrupted")
        tensors.append((name, type_id, rows, cols, np.frombuffer(buf, np.uint8, nbytes, start)))

    n_heads = int(get(f"{arch}.attention.head_count"))
    dim = int(get(f"{arch}.embedding_length"))
    tokens = get("tokenizer.ggml.tokens", [])
    if not tokens:
        raise Error(f"{path.name} has no tokenizer (tokenizer.ggml.tokens)")
    config = {
        "n_layers": int(get(f"{arch}.block_count")),
        "dim": dim,
        "hidden_dim": int(get(f"{arch}.feed_forward_length")),
        "n_heads": n_heads,
        "n_kv_heads": int(get(f"{arch}.attention.head_count_kv", n_heads)),
        "head_dim": int(get(f"{arch}.rope.dimension_count", dim // max(n_heads, 1))),
        "vocab_size": int(get(f"{arch}.vocab_size", len(tokens))),
        "rope_base": float(get(f"{arch}.rope.freq_base", 10000.0)),
        "norm_eps": float(get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
    }
    if config["head_dim"] * n_heads != dim:
        raise Error(f"{path.name}: head dim {config['head_dim']} x {n_heads} heads != embedding length {dim}")
    tokenizer = {
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre", "default"),
        "tokens": tokens,
        "token_types": [int(t) for t in get("tokenizer.ggml.token_type", np.ones(len(tokens), np.int32))],
        "merges": get("tokenizer.ggml.merges", []),
        "bos_id": int(get("tokenizer.ggml.bos_token_id", -1)),
        "eos_id": int(get("tokenizer.ggml.eos_token_id", -1)),
        "eot_id": int(get("tokenizer.ggml.eot_token_id", -1)),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": get("tokenizer.chat_template", ""),
    }
    return ModelFile(path, arch, config, int(get(f"{arch}.context_length", 2048)), tensors, tokenizer, meta)
