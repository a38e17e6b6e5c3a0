"""Model files as the one transformer of csrc/model/config.h: its config and the weights by role
(csrc/model/weights.h). GGUF files and Hugging Face folders are mapped in C++ (csrc/loaders/gguf_models.cpp,
hf_models.cpp), which the C API shares; loaders/gguf.py and from_hf below return their Spec. Here: the
Spec, quantization at load, and, in llama.py and gemma3.py, how nextoken convert writes a spec as GGUF.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .._core import Error

F32, F16, BF16 = 0, 1, 30


@dataclass
class Tensor:
    """A weight as stored: `rows` x `cols` elements (rows contiguous) of ggml type `type`, as bytes."""
    type: int
    rows: int
    cols: int
    data: np.ndarray  # uint8


@dataclass
class Spec:
    architecture: str
    config: dict                                   # what _core.Transformer takes
    tensors: list = field(default_factory=list)    # (role, ggml type, rows, cols, uint8 array)
    context_length: int = 0                        # what the model was trained for (0: unknown)
    rope_parameters: list = field(default_factory=list)  # per RoPE table, the rope_theta / scaling it came
                                                          # from (folders; what a GGUF writer needs)
    encoder: "Spec | None" = None                  # encoder-decoder models: the encoder (this spec: the decoder)
    generation: dict = field(default_factory=dict)  # decoder_start_token_id, forced_bos_token_id, eos_token_ids,
                                                    # bad_words_ids: what the folder's configs set
    vision: dict = field(default_factory=dict)      # image encoders: patch embedding and preprocessing


def as_float32(t: Tensor) -> np.ndarray:
    """A F32 / F16 / BF16 tensor as a float32 array (rows, cols); other types are matrices only."""
    if t.type == F32:
        return t.data.view(np.float32).reshape(t.rows, t.cols)
    if t.type == F16:
        return t.data.view(np.float16).astype(np.float32).reshape(t.rows, t.cols)
    if t.type == BF16:
        return (t.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(t.rows, t.cols)
    raise Error(f"a norm weight or bias must be F32, F16 or BF16, got ggml type {t.type}")


def write_gguf_sizes(writer, spec: Spec, default_context: int):
    """The size keys every GGUF architecture shares (nextoken convert)."""
    c = spec.config
    writer.add_block_count(c["n_layers"])
    writer.add_context_length(spec.context_length or default_context)
    writer.add_embedding_length(c["dim"])
    writer.add_feed_forward_length(c["hidden_dim"])
    writer.add_head_count(c["n_heads"])
    writer.add_head_count_kv(c["n_kv_heads"])
    writer.add_key_length(c["head_dim"])
    writer.add_value_length(c["head_dim"])
    writer.add_layer_norm_rms_eps(c["norm_eps"])
    writer.add_vocab_size(c["vocab_size"])


# ---- RoPE inverse frequencies, in float32 as transformers' modeling_rope_utils computes them -----------------
def rope_inv_freq(base: float, dim: int) -> np.ndarray:
    """1 / base^(2i / dim): the exponent in float32, the power rounded to float32 once."""
    exponent = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float32)
    power = np.power(np.float64(base), exponent.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / power).astype(np.float32)


# ---- the registry ------------------------------------------------------------------------------------------
def _modules():
    from . import gemma3, llama
    return (llama, gemma3)


def module_for(architecture: str):
    """The module that writes a spec of `architecture` as GGUF (llama.py for "mistral"), or None."""
    for m in _modules():
        if architecture in getattr(m, "CONVERTS", ()):
            return m
    return None


def from_hf(folder, n_ctx: int = 2048) -> Spec:
    """The Spec of a Hugging Face folder (loaders.safetensors.HFFolder), mapped by the core. n_ctx: the longest
    sequence (T5's relative-position table spans it)."""
    f = _core.spec_from_hf(folder.config, folder.generation_config,
                           {name: (t.type, t.rows, t.cols, t.data) for name, t in folder.tensors.items()},
                           folder.source, n_ctx)
    e = f["encoder"]
    encoder = Spec(e["architecture"], e["config"], e["tensors"], e["context_length"]) if e is not None else None
    vision = dict(f["vision"], processor=folder.preprocessor_config) if f["vision"] else {}
    return Spec(f["architecture"], f["config"], f["tensors"], f["context_length"], f["rope_parameters"],
                encoder=encoder, generation=f["generation"], vision=vision)


# ---- quantization at load -----------------------------------------------------------------------------------
QUANTIZE_TO = {"q8_0": 8, "q4_0": 2, "q4_k": 12}
_MATRIX_ROLES = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                 "cross_attn_q", "cross_attn_k", "cross_attn_v", "cross_attn_output")


def is_matrix_role(role: str) -> bool:
    return role.rsplit(".", 1)[-1] in _MATRIX_ROLES


def quantize_roles(spec: Spec, weights: str, quantize, n_threads: int) -> Spec:
    """The spec with every F32 / F16 / BF16 weight matrix quantized to `weights` (q8_0, q4_0, q4_k) by
    `quantize(float32 (rows, cols), ggml type, n_threads) -> bytes`. Norms, biases and learned positions stay
    float32. A matrix whose rows are not whole blocks of the type (Q4_K: 256 weights) is quantized to Q8_0
    instead, or kept as it is if not even that fits, as llama.cpp's quantizer falls back."""
    if not isinstance(weights, str) or weights not in QUANTIZE_TO:
        raise Error(f"weights must be one of {', '.join(QUANTIZE_TO)} (or None: as stored), got {weights!r}")
    target = QUANTIZE_TO[weights]
    roles = []
    for role, type_id, rows, cols, data in spec.tensors:
        if is_matrix_role(role) and type_id in (F32, F16, BF16):
            to = target if cols % (256 if target == 12 else 32) == 0 else 8 if cols % 32 == 0 else None
            if to is not None:
                x = np.ascontiguousarray(as_float32(Tensor(type_id, rows, cols, data)))
                data, type_id = quantize(x, to, n_threads), to
        roles.append((role, type_id, rows, cols, data))
    encoder = quantize_roles(spec.encoder, weights, quantize, n_threads) if spec.encoder is not None else None
    return dataclasses.replace(spec, tensors=roles, encoder=encoder)
