"""The Llama family (Hugging Face `llama`, `mistral` and `qwen2` folders, mapped by
csrc/loaders/hf_models.cpp) written as GGUF `llama` by nextoken convert. Pre-norm RMSNorm, SwiGLU, RoPE;
Mistral adds a sliding window, Qwen2 q/k/v biases.

GGUF stores q and k rows permuted for RoPE on adjacent pairs (llama.cpp's converter does this); Hugging
Face rotates the halves of each head."""
from __future__ import annotations

import numpy as np

from .._core import Error
from . import Spec, rope_inv_freq, write_gguf_sizes

GGUF_ARCHITECTURES = ("llama",)  # what convert writes these folders as
CONVERTS = ("llama", "mistral", "qwen2")  # the spec architectures it writes

# ---- writing GGUF (nextoken convert) --------------------------------------------------------------------------
def to_gguf(spec: Spec, writer):
    """Metadata of a llama / mistral / qwen2 folder's spec as GGUF `llama`; returns how to reorder a weight's
    rows: GGUF's llama rotates adjacent pairs, so each head's q and k rows (and biases) are interleaved."""
    c = spec.config
    windows = set(c["sliding_window"])
    if len(windows) > 1:
        raise Error("convert: a model with sliding and full attention layers has no GGUF llama form")
    params = spec.rope_parameters[0]
    kind = params.get("rope_type", "default")
    write_gguf_sizes(writer, spec, default_context=4096)
    writer.add_rope_dimension_count(c["head_dim"])
    writer.add_rope_freq_base(float(params["rope_theta"]))
    if windows != {0}:
        writer.add_sliding_window(windows.pop())
    if kind == "linear":
        import gguf
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
    elif kind not in ("default", "llama3"):
        raise Error(f"convert: RoPE scaling '{kind}' has no GGUF llama form")
    D = c["head_dim"]
    order = np.stack([np.arange(D // 2), np.arange(D // 2) + D // 2], axis=1).reshape(-1)  # half -> adjacent

    def reorder(role, raw):  # raw: (rows, bytes per row) of the stored type
        if role.endswith(("attn_q", "attn_k")):
            return raw.reshape(-1, D, raw.shape[1])[:, order].reshape(raw.shape)
        if role.endswith(("attn_q.bias", "attn_k.bias")):
            return raw.view(np.float32).reshape(-1, D)[:, order].reshape(-1).view(np.uint8).reshape(raw.shape)
        return raw
    return reorder


def gguf_extra_tensors(spec: Spec) -> dict:
    """Llama 3 RoPE scaling as llama.cpp stores it: per-frequency divisors of the default frequencies."""
    params = spec.rope_parameters[0]
    if params.get("rope_type", "default") != "llama3":
        return {}
    default = rope_inv_freq(float(params["rope_theta"]), spec.config["head_dim"])
    return {"rope_freqs.weight": (default / np.asarray(spec.config["rope_inv_freq"][0], np.float32)).astype(np.float32)}
