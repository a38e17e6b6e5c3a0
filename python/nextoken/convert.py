"""`nextoken convert FOLDER OUT.gguf`: a Hugging Face folder written as a GGUF file that llama.cpp (and
nextoken) reads, optionally with a LoRA adapter merged and the matrices quantized (weights=q8_0, q4_0,
q4_k) exactly as load() would do them.

The architecture module (architectures/llama.py, gemma3.py) writes its metadata and says how a weight's
rows must be reordered for the file; this module writes the tokenizer and the tensors with gguf's
GGUFWriter (llama.cpp's own writer, installed with the `convert` extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _core, architectures
from . import lora as lora_adapters
from ._core import Error
from .loaders import safetensors

CONTROL, USER_DEFINED, UNUSED = 3, 4, 5  # GGUF token types


def convert(folder, out, weights: str | None = None, lora=None, n_threads: int = 1) -> Path:
    """Writes the model in `folder` to the GGUF file `out`; returns its path."""
    try:
        import gguf
    except ImportError:
        raise Error("nextoken convert writes GGUF with the `gguf` package: pip install 'nextoken[convert]'") from None
    folder, out = Path(folder), Path(out)
    if not safetensors.is_folder(folder):
        raise Error(f"{folder} is not a folder: convert reads Hugging Face folders")
    hf = safetensors.read(folder)
    if lora is not None:
        lora_adapters.merge(hf, lora)
    spec = architectures.from_hf(hf)
    if weights is not None:
        spec = architectures.quantize_roles(spec, weights, _core.ops.quantize, n_threads)
    module = architectures.module_for(spec.architecture)
    if module is None:
        raise Error(f"convert does not write {spec.architecture} models yet")
    writer = gguf.GGUFWriter(str(out), module.GGUF_ARCHITECTURES[0])
    try:
        reorder = module.to_gguf(spec, writer)
        _write_tokenizer(hf, spec, writer)
        for role, type_id, rows, cols, data in spec.tensors:
            name = role if role.endswith(".bias") else role + ".weight"
            raw = np.asarray(data).reshape(rows, -1)
            raw = reorder(role, raw) if reorder else raw
            writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType(type_id))
        for name, array in getattr(module, "gguf_extra_tensors", lambda s: {})(spec).items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return out


def _write_tokenizer(hf, spec, writer):
    """tokenizer.json as a GGUF byte-level BPE vocabulary (tokenizer.ggml.model = gpt2)."""
    import json

    path = hf.path / "tokenizer.json"
    if not path.is_file():
        raise Error(f"{hf.path} has no tokenizer.json")
    tj = json.loads(path.read_text(encoding="utf-8"))
    model, pre = tj.get("model") or {}, tj.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or \
            not pre.get("use_regex", True) or tj.get("normalizer"):
        raise Error(f"{path}: convert writes plain byte-level BPE tokenizers only (a ByteLevel pre-tokenizer with "
                    "GPT-2's regex and no prefix space, no normalizer)")
    vocab_size = spec.config["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [UNUSED] * vocab_size
    for token, i in model.get("vocab", {}).items():
        if i < vocab_size:
            tokens[i], types[i] = token, 1
    for added in tj.get("added_tokens", []):
        if added["id"] < vocab_size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = hf.generation_config.get("eos_token_id", hf.config.get("eos_token_id"))
    eos = eos if isinstance(eos, list) else [eos]
    if eos and isinstance(eos[0], int):
        writer.add_eos_token_id(eos[0])
        if len(eos) > 1:
            writer.add_eot_token_id(eos[1])
    bos = hf.config.get("bos_token_id")
    if isinstance(bos, int):
        writer.add_bos_token_id(bos)
    writer.add_add_bos_token(False)  # tokenizer.json's own post-processor decides; byte-level BPEs add none
