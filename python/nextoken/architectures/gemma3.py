"""Gemma 3 (text; Hugging Face `gemma3_text` / `gemma3` folders, mapped by csrc/loaders/hf_models.cpp)
written as GGUF `gemma3` by nextoken convert.

Gemma's norms multiply by (1 + w). Hugging Face stores w: the loader adds 1 in float32, as transformers
does, and llama.cpp's converter stores 1 + w as well."""
from __future__ import annotations

from .._core import Error
from . import Spec, write_gguf_sizes

GGUF_ARCHITECTURES = ("gemma3",)  # what convert writes these folders as
CONVERTS = ("gemma3",)  # the spec architectures it writes


# ---- writing GGUF (nextoken convert) --------------------------------------------------------------------------
def to_gguf(spec: Spec, writer):
    """Metadata of a Gemma 3 folder's spec as GGUF `gemma3`. The norms are written as 1 + w (already
    added at load), as llama.cpp's converter writes them. No rows need reordering (GGUF's gemma3 rotates
    halves, as Hugging Face does)."""
    c = spec.config
    if abs(c["attn_scale"] - c["head_dim"] ** -0.5) > 1e-7 * c["attn_scale"]:
        raise Error("convert: GGUF gemma3 has no key for query_pre_attn_scalar != head_dim (llama.cpp assumes "
                    "head_dim); this model cannot be written so that llama.cpp reads it right")
    local, full = spec.rope_parameters
    for params in (local, full):
        if params.get("rope_type", "default") != "default":
            raise Error(f"convert: Gemma 3 RoPE scaling '{params.get('rope_type')}' is not written yet")
    windows = [w for w in c["sliding_window"] if w]
    write_gguf_sizes(writer, spec, default_context=32768)
    writer.add_rope_freq_base(float(full["rope_theta"]))
    writer.add_rope_freq_base_swa(float(local["rope_theta"]))
    if windows:
        writer.add_sliding_window(windows[0])
        writer.add_sliding_window_pattern([bool(w) for w in c["sliding_window"]])
    return None
