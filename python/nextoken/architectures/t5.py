"""T5 (Hugging Face `t5` folders: T5 v1.0 with ReLU, v1.1 / flan with gated GELU): an encoder and a decoder
with cross-attention, RMS norms without mean or bias, no 1/sqrt(d) attention scale, and relative-position
buckets instead of positions: each layer adds to its attention scores a learned bias per head and bucket
of (key position - query position), bidirectional in the encoder, causal in the decoder, computed by the
first layer and shared by all. The bucket table is expanded here into a bias per relative distance
(role attn_rel_bias), as transformers computes the buckets. A tied head rescales the decoder's output by
d_model^-0.5."""
from __future__ import annotations

import math

import numpy as np

from .._core import Error
from . import F32, Spec, Weights, as_float32, base_config, split_roles
from .hf import HFConfig

HF_MODEL_TYPES = ("t5",)
TAKES_N_CTX = True  # the relative-bias table spans the longest sequence
FEED_FORWARD = {"relu": ("relu", False), "gated-gelu": ("gelu_tanh", True), "gated-silu": ("silu", True),
                "gated-relu": ("relu", True)}


def relative_buckets(relative: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
    """transformers' T5Attention._relative_position_bucket, step for step: the log in float32 (computed in
    float64 and rounded once), then float32 division and product, truncated toward zero."""
    buckets = np.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).astype(relative.dtype) * num_buckets
        relative = np.abs(relative)
    else:
        relative = -np.minimum(relative, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        logs = np.log((relative.astype(np.float32) / np.float32(max_exact)).astype(np.float64)).astype(np.float32)
    scaled = (logs / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = max_exact + np.where(np.isfinite(scaled), scaled, 0).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(relative < max_exact, relative, large)


def bias_table(bucket_bias: np.ndarray, span: int, bidirectional: bool, num_buckets: int, max_distance: int):
    """(H, 2 span - 1) float32: the bias of relative distance d = key - query at column d + span - 1."""
    distances = np.arange(-(span - 1), span, dtype=np.int64)
    return np.ascontiguousarray(bucket_bias[relative_buckets(distances, bidirectional, num_buckets, max_distance)].T)


def from_hf(folder, span: int) -> Spec:
    c = HFConfig(folder.config, folder.config_source)
    proj = c.get("feed_forward_proj", "relu")
    if not isinstance(proj, str) or proj not in FEED_FORWARD:
        raise Error(f"{c.source}: feed_forward_proj '{proj}' is not supported ({', '.join(FEED_FORWARD)})")
    activation, gated = FEED_FORWARD[proj]
    dim, n_heads, d_kv = c.int("d_model"), c.int("num_heads"), c.int("d_kv")
    n_buckets, max_distance = c.int("relative_attention_num_buckets", 32), c.int("relative_attention_max_distance", 128)
    tied = bool(c.get("tie_word_embeddings", True))
    sizes = dict(dim=dim, n_heads=n_heads, n_kv_heads=n_heads, head_dim=d_kv, hidden_dim=c.int("d_ff"),
                 vocab_size=c.int("vocab_size"), norm="rms", norm_eps=c.float("layer_norm_epsilon", 1e-6),
                 activation=activation, gated=gated, positions="none", attn_scale=1.0, relative_span=span)
    n_enc, n_dec = c.int("num_layers"), c.int("num_decoder_layers", c.get("num_layers"))
    encoder = base_config(n_layers=n_enc, causal=False, **sizes)
    decoder = base_config(n_layers=n_dec, cross_attention=True,
                          head_scale=dim ** -0.5 if c.get("scale_decoder_outputs", tied) else 1.0, **sizes)
    w = Weights(folder.tensors, folder.source)
    shared = w.take("shared.weight")
    for stack in ("encoder", "decoder"):  # copies of shared.weight in some files
        w.take(f"{stack}.embed_tokens.weight", required=False)
    ffn = (("ffn_gate", "DenseReluDense.wi_0"), ("ffn_up", "DenseReluDense.wi_1")) if gated else \
        (("ffn_up", "DenseReluDense.wi"),)
    for stack, n_layers, prefix in (("encoder", n_enc, "enc."), ("decoder", n_dec, "")):
        w.matrix(prefix + "token_embd", "", tensor=shared)
        w.vector(prefix + "output_norm", f"{stack}.final_layer_norm.weight")
        bucket_bias = as_float32(w.take(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        if bucket_bias.shape != (n_buckets, n_heads):
            raise Error(f"{folder.source}: {stack}'s relative_attention_bias is {bucket_bias.shape}, expected "
                        f"({n_buckets}, {n_heads})")
        table = bias_table(bucket_bias, span, stack == "encoder", n_buckets, max_distance)
        w.roles.append((prefix + "attn_rel_bias", F32, 1, table.size, table.reshape(-1).view(np.uint8)))
        for i in range(n_layers):
            h, b = f"{stack}.block.{i}.layer.", f"{prefix}blk.{i}."
            w.vector(b + "attn_norm", h + "0.layer_norm.weight")
            for role, name in (("attn_q", "q"), ("attn_k", "k"), ("attn_v", "v"), ("attn_output", "o")):
                w.matrix(b + role, f"{h}0.SelfAttention.{name}.weight")
            f = 1
            if stack == "decoder":
                w.vector(b + "cross_attn_norm", h + "1.layer_norm.weight")
                for role, name in (("cross_attn_q", "q"), ("cross_attn_k", "k"), ("cross_attn_v", "v"),
                                   ("cross_attn_output", "o")):
                    w.matrix(b + role, f"{h}1.EncDecAttention.{name}.weight")
                f = 2
            w.vector(b + "ffn_norm", f"{h}{f}.layer_norm.weight")
            for role, name in ffn:
                w.matrix(b + role, f"{h}{f}.{name}.weight")
            w.matrix(b + "ffn_down", f"{h}{f}.DenseReluDense.wo.weight")
    if not tied:
        w.matrix("output", "lm_head.weight")
    else:
        w.take("lm_head.weight", required=False)  # a copy of shared.weight
    w.check_all_taken(f" (a t5 model of {n_enc} + {n_dec} layers)")
    enc_roles, dec_roles = split_roles(w.roles, "enc.")
    generation = dict(decoder_start_token_id=c.get("decoder_start_token_id", c.get("pad_token_id", 0)))
    return Spec("t5", decoder, dec_roles, encoder=Spec("t5-encoder", encoder, enc_roles), generation=generation)
