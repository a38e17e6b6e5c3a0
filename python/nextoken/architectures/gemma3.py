"""Gemma 3 (text): Hugging Face `gemma3_text` / `gemma3` folders, and how they are written as GGUF `gemma3`
(GGUF files are read by csrc/loaders/gguf_models.cpp). Sandwich RMSNorms
(before and after attention and MLP), RMSNorm of each q and k head, GeGLU (tanh GELU), embeddings scaled
by sqrt(hidden), attention scaled by query_pre_attn_scalar^-1/2, and sliding-window layers (own RoPE base)
between full ones.

Gemma's norms multiply by (1 + w). Hugging Face stores w: 1 is added here in float32, as transformers
does; llama.cpp's converter stores 1 + w already."""
from __future__ import annotations

import math

import numpy as np

from .._core import Error
from . import Spec, Weights, base_config, write_gguf_sizes
from .hf import HFConfig
from .llama import tied_head

GGUF_ARCHITECTURES = ("gemma3",)  # what convert writes these folders as
HF_MODEL_TYPES = ("gemma3_text", "gemma3")

# role (also its GGUF name) -> Hugging Face name after "...layers.{i}."
_LAYER = {
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
SWA_PATTERN = 6         # every 6th layer attends globally (llama.cpp's and transformers' default)
LOCAL_ROPE_BASE = 10000.0


def _config(n_layers, dim, n_heads, n_kv_heads, head_dim, hidden_dim, vocab_size, eps, query_scalar, windows,
            local_inv_freq, global_inv_freq, softcap):
    return base_config(
        n_layers=n_layers, dim=dim, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim, hidden_dim=hidden_dim,
        vocab_size=vocab_size, norm_placement="sandwich", norm_eps=eps, activation="gelu_tanh", qk_norm=True,
        attn_scale=float(np.float32(query_scalar ** -0.5)), embed_scale=float(np.float32(math.sqrt(dim))),
        final_softcap=softcap, sliding_window=windows, rope_table=[0 if w else 1 for w in windows],
        rope_inv_freq=[local_inv_freq, global_inv_freq])


def _layers(w: Weights, n_layers: int, prefix: str):
    for i in range(n_layers):
        for role, name in _LAYER.items():
            w.layer(f"blk.{i}.{role}", f"{prefix}layers.{i}.{name}", norm_offset=1.0)


def from_hf(folder) -> Spec:
    values, prefix = folder.config, "model."
    if values.get("model_type") == "gemma3":  # the multimodal wrapper: its text model only
        values, prefix = values.get("text_config") or {}, "model.language_model."  # HFConfig checks it is an object
    c = HFConfig(values, folder.config_source)
    if c.get("attn_logit_softcapping"):
        raise Error(f"{c.source}: attn_logit_softcapping is not supported")
    n_layers, dim, n_heads = c.int("num_hidden_layers"), c.int("hidden_size"), c.int("num_attention_heads")
    head_dim = c.int("head_dim", 256)
    pattern = c.int("sliding_window_pattern", SWA_PATTERN)
    types = c.layer_types(n_layers, ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                     for i in range(n_layers)])
    if values.get("rope_parameters") is None:  # transformers 4: rope_local_base_freq for the sliding layers
        local = dict(rope_type="default", rope_theta=c.get("rope_local_base_freq", LOCAL_ROPE_BASE))
        values = dict(values, rope_parameters={"sliding_attention": local,
                                               "full_attention": c.rope_parameters()})
        c = HFConfig(values, folder.config_source)
    config = _config(
        n_layers, dim, n_heads, c.int("num_key_value_heads", n_heads), head_dim, c.int("intermediate_size"),
        c.int("vocab_size"), c.float("rms_norm_eps", 1e-6), c.float("query_pre_attn_scalar", head_dim),
        c.sliding_windows(types), c.rope_inv_freq(head_dim, "sliding_attention"),
        c.rope_inv_freq(head_dim, "full_attention"), c.float("final_logit_softcapping") if c.get("final_logit_softcapping") else 0.0)
    if c.activation("hidden_activation") != "gelu_tanh":
        raise Error(f"{c.source}: Gemma 3 with hidden_activation '{c.get('hidden_activation')}' is not supported")
    w = Weights(folder.tensors, folder.source)
    w.matrix("token_embd", prefix + "embed_tokens.weight")
    w.vector("output_norm", prefix + "norm.weight", offset=1.0)
    tied_head(w, HFConfig(folder.config, folder.config_source))
    _layers(w, n_layers, prefix)
    w.check_all_taken(f" (a gemma3 model of {n_layers} layers)")
    return Spec("gemma3", config, w.roles, c.get("max_position_embeddings", 0),
                [c.rope_parameters("sliding_attention"), c.rope_parameters("full_attention")])


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
