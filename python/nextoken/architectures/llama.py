"""The Llama family: Hugging Face `llama`, `mistral` and `qwen2` folders, and how they are written as GGUF
`llama` (nextoken convert; GGUF files are read by csrc/loaders/gguf_models.cpp). Pre-norm RMSNorm,
SwiGLU, RoPE; Mistral adds a sliding window, Qwen2 q/k/v biases.

GGUF stores q and k rows permuted for RoPE on adjacent pairs (llama.cpp's converter does this); Hugging
Face rotates the halves of each head."""
from __future__ import annotations

import numpy as np

from .._core import Error
from . import Spec, Weights, base_config, rope_inv_freq, write_gguf_sizes
from .hf import HFConfig

GGUF_ARCHITECTURES = ("llama",)  # what convert writes these folders as
HF_MODEL_TYPES = ("llama", "mistral", "qwen2")

# Hugging Face name of each layer role, after "model.layers.{i}.".
_HF_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}


def from_hf(folder) -> Spec:
    c = HFConfig(folder.config, folder.config_source)
    model_type = c.require("model_type")
    n_layers, dim, n_heads = c.int("num_hidden_layers"), c.int("hidden_size"), c.int("num_attention_heads")
    head_dim = c.int("head_dim", dim // n_heads)
    if model_type == "mistral":
        default_types = ["sliding_attention" if c.get("sliding_window") else "full_attention"] * n_layers
    elif model_type == "qwen2":
        first = c.int("max_window_layers", n_layers) if c.get("use_sliding_window", False) else n_layers
        default_types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layers)]
    else:
        default_types = ["full_attention"] * n_layers
    config = base_config(
        n_layers=n_layers, dim=dim, n_heads=n_heads, head_dim=head_dim,
        hidden_dim=c.int("intermediate_size"), n_kv_heads=c.int("num_key_value_heads", n_heads),
        vocab_size=c.int("vocab_size"), norm_eps=c.float("rms_norm_eps", 1e-6), activation=c.activation("hidden_act"),
        sliding_window=c.sliding_windows(c.layer_types(n_layers, default_types)),
        rope_inv_freq=[c.rope_inv_freq(head_dim)])
    w = Weights(folder.tensors, folder.source)
    w.matrix("token_embd", "model.embed_tokens.weight")
    w.vector("output_norm", "model.norm.weight")
    tied_head(w, c)
    for i in range(n_layers):
        for role, name in _HF_LAYER.items():
            w.layer(f"blk.{i}.{role}", f"model.layers.{i}.{name}")
    w.check_all_taken(f" (a {model_type} model of {n_layers} layers)")
    return Spec(model_type, config, w.roles, c.get("max_position_embeddings", 0), [c.rope_parameters()])


def tied_head(w: Weights, c: HFConfig, name: str = "lm_head.weight"):
    """The output matrix: its own tensor, or none where the embeddings are tied (transformers 5 stores a tied
    weight once)."""
    if w.has(name):
        w.matrix("output", name)
    elif not c.get("tie_word_embeddings", True):
        raise Error(f"{c.source}: tie_word_embeddings is false but the weights have no '{name}'")


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
