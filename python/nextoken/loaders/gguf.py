"""GGUF files, read with `gguf` (llama.cpp's own Python reader); tensors stay in the memory map.

Only the Llama architecture family is supported so far (llama; SmolLM and Mistral-style models are
stored under that name). Everything a user can get wrong in a file is reported as nextoken.Error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._core import Error

# GGUF (ggml_type) numbers of the weight types the kernels implement.
SUPPORTED_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 8: "Q8_0"}
SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass
class ModelFile:
    path: Path
    architecture: str
    config: dict                     # sizes, as _core.LlamaModel takes them
    context_length: int              # what the model was trained for
    tensors: list                    # (name, ggml type, rows, cols, uint8 view of the bytes)
    tokenizer: dict                  # model, pre, tokens, token_types, merges, bos/eos ids, add_bos
    metadata: dict = field(default_factory=dict)  # the other scalar key/values, for the curious


def _scalar(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise Error(f"the GGUF metadata lacks '{key}'")
        return default
    part = f.parts[f.data[0]]
    if f.types and f.types[0].name == "STRING":
        return bytes(part).decode("utf-8")
    return part.tolist()[0]


def _array(reader, key, as_str):
    f = reader.fields.get(key)
    if f is None:
        return None
    if as_str:
        return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
    return [f.parts[i].tolist()[0] for i in f.data]


def read(path) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        from gguf import GGUFReader
        reader = GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors... on damaged files
        raise Error(f"{path} is not a readable GGUF file: {type(e).__name__}: {e}") from e
    try:
        return _read(reader, path)
    except Error:
        raise
    except Exception as e:
        raise Error(f"{path}: malformed GGUF metadata: {type(e).__name__}: {e}") from e


def _read(reader, path: Path) -> ModelFile:
    arch = _scalar(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise Error(f"unsupported architecture '{arch}' in {path.name} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    tensors = []
    for t in reader.tensors:
        type_id = int(t.tensor_type)
        if type_id not in SUPPORTED_TYPES:
            raise Error(f"tensor '{t.name}' has type {t.tensor_type.name}, which nextoken does not support "
                        f"(supported: {', '.join(SUPPORTED_TYPES.values())})")
        shape = [int(n) for n in t.shape]  # GGUF order: shape[0] is the row length
        cols, rows = shape[0], int(np.prod(shape[1:], dtype=np.int64))
        data = np.asarray(t.data)
        if not data.flags.c_contiguous:
            raise Error(f"tensor '{t.name}' is not stored contiguously")
        tensors.append((t.name, type_id, rows, cols, data.reshape(-1).view(np.uint8)))

    n_heads = int(_scalar(reader, f"{arch}.attention.head_count"))
    dim = int(_scalar(reader, f"{arch}.embedding_length"))
    tokens = _array(reader, "tokenizer.ggml.tokens", as_str=True)
    if tokens is None:
        raise Error(f"{path.name} has no tokenizer (tokenizer.ggml.tokens)")
    config = {
        "n_layers": int(_scalar(reader, f"{arch}.block_count")),
        "dim": dim,
        "hidden_dim": int(_scalar(reader, f"{arch}.feed_forward_length")),
        "n_heads": n_heads,
        "n_kv_heads": int(_scalar(reader, f"{arch}.attention.head_count_kv", n_heads)),
        "head_dim": int(_scalar(reader, f"{arch}.rope.dimension_count", dim // n_heads)),
        "vocab_size": int(_scalar(reader, f"{arch}.vocab_size", len(tokens))),
        "rope_base": float(_scalar(reader, f"{arch}.rope.freq_base", 10000.0)),
        "norm_eps": float(_scalar(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
    }
    if config["head_dim"] * n_heads != dim:
        raise Error(f"{path.name}: head dim {config['head_dim']} x {n_heads} heads != embedding length {dim}")

    tokenizer = {
        "model": _scalar(reader, "tokenizer.ggml.model"),
        "pre": _scalar(reader, "tokenizer.ggml.pre", "default"),
        "tokens": tokens,
        "token_types": _array(reader, "tokenizer.ggml.token_type", as_str=False) or [1] * len(tokens),
        "merges": _array(reader, "tokenizer.ggml.merges", as_str=True) or [],
        "bos_id": _scalar(reader, "tokenizer.ggml.bos_token_id", -1),
        "eos_id": _scalar(reader, "tokenizer.ggml.eos_token_id", -1),
        "eot_id": _scalar(reader, "tokenizer.ggml.eot_token_id", -1),
        "add_bos": bool(_scalar(reader, "tokenizer.ggml.add_bos_token", False)),
        "chat_template": _scalar(reader, "tokenizer.chat_template", ""),
    }
    metadata = {}
    for key, f in reader.fields.items():
        if key.startswith("tokenizer.ggml.") or key.startswith("GGUF.") or len(f.data) != 1:
            continue
        metadata[key] = _scalar(reader, key)
    return ModelFile(path, arch, config, int(_scalar(reader, f"{arch}.context_length", 2048)),
                     tensors, tokenizer, metadata)
