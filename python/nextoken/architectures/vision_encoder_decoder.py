"""Image captioning (Hugging Face `vision-encoder-decoder` folders): a ViT encoder and a GPT-2 decoder with
cross-attention. ViT: 16x16-style patches projected by a convolution (done here in numpy: it is one matrix
product per image, see nextoken.vision), a CLS vector first, learned positions, pre-norm LayerNorms,
exact GELU, a final LayerNorm; its pooler is stored but unused for captioning. GPT-2 as gpt2.py reads it,
each block with ln_cross_attn and a cross-attention (q_attn from the decoder, c_attn giving k and v from the
image states, c_proj)."""
from __future__ import annotations

import numpy as np

from .._core import Error
from . import Spec, Tensor, Weights, as_float32, base_config, split_roles, transposed
from .hf import HFConfig

HF_MODEL_TYPES = ("vision-encoder-decoder",)


def _rows(t: Tensor, first: int, count: int) -> Tensor:
    row = t.data.size // t.rows
    return Tensor(t.type, count, t.cols, t.data[first * row:(first + count) * row])


def from_hf(folder) -> Spec:
    top = HFConfig(folder.config, folder.config_source)
    enc = HFConfig(top.require("encoder"), folder.config_source + " (encoder)")
    dec = HFConfig(top.require("decoder"), folder.config_source + " (decoder)")
    if enc.require("model_type") != "vit" or dec.require("model_type") != "gpt2":
        raise Error(f"{folder.config_source}: only a vit encoder with a gpt2 decoder is supported, got "
                    f"{enc.get('model_type')} + {dec.get('model_type')}")
    dim, n_embd = enc.int("hidden_size"), dec.int("n_embd")
    if dim != n_embd:
        raise Error(f"{folder.config_source}: the encoder's width ({dim}) must equal the decoder's ({n_embd})")
    image, patch, channels = enc.int("image_size"), enc.int("patch_size"), enc.int("num_channels", 3)
    n_heads = enc.int("num_attention_heads")
    encoder = base_config(n_layers=enc.int("num_hidden_layers"), dim=dim, n_heads=n_heads, n_kv_heads=n_heads,
                          head_dim=dim // n_heads, hidden_dim=enc.int("intermediate_size"), vocab_size=1, norm="layer",
                          norm_eps=enc.float("layer_norm_eps", 1e-12), activation=enc.activation("hidden_act"),
                          gated=False, positions="learned", causal=False)
    n_dec, d_heads = dec.int("n_layer"), dec.int("n_head")
    decoder = base_config(n_layers=n_dec, dim=n_embd, n_heads=d_heads, n_kv_heads=d_heads, head_dim=n_embd // d_heads,
                          hidden_dim=dec.int("n_inner", 4 * n_embd), vocab_size=dec.int("vocab_size"), norm="layer",
                          norm_eps=dec.float("layer_norm_epsilon", 1e-5),
                          activation=dec.activation("activation_function"), gated=False, positions="learned",
                          cross_attention=True)
    w = Weights(folder.tensors, folder.source)
    # ---- the ViT encoder (prefix "enc."): its token table is a placeholder row, inputs are vectors
    e = "encoder."
    projection = as_float32(w.take(e + "embeddings.patch_embeddings.projection.weight")).reshape(dim, -1)
    if projection.shape[1] != channels * patch * patch:
        raise Error(f"{folder.source}: the patch projection takes {projection.shape[1]} values, expected "
                    f"{channels} x {patch} x {patch}")
    vision = dict(patch_weight=np.ascontiguousarray(projection),
                  patch_bias=as_float32(w.take(e + "embeddings.patch_embeddings.projection.bias")).reshape(-1),
                  cls=as_float32(w.take(e + "embeddings.cls_token")).reshape(-1),
                  image_size=image, patch_size=patch, channels=channels, processor=folder.preprocessor_config)
    w.take(e + "embeddings.mask_token", required=False)
    zero = np.zeros((1, dim), np.float32)
    w.matrix("enc.token_embd", "", tensor=Tensor(0, 1, dim, zero.reshape(-1).view(np.uint8)))
    positions = w.take(e + "embeddings.position_embeddings")
    w.matrix("enc.pos_embd", "", tensor=positions)
    w.layer("enc.output_norm", e + "layernorm")
    w.vector("enc.output_norm.bias", e + "layernorm.bias")
    for name in ("pooler.dense.weight", "pooler.dense.bias"):  # unused by captioning
        w.take(e + name, required=False)
    for i in range(enc.int("num_hidden_layers")):
        h, b = f"{e}encoder.layer.{i}.", f"enc.blk.{i}."
        for role, name in (("attn_norm", "layernorm_before"), ("ffn_norm", "layernorm_after")):
            w.layer(b + role, h + name)
            w.vector(b + role + ".bias", h + name + ".bias")
        for role, name in (("attn_q", "attention.attention.query"), ("attn_k", "attention.attention.key"),
                           ("attn_v", "attention.attention.value"), ("attn_output", "attention.output.dense"),
                           ("ffn_up", "intermediate.dense"), ("ffn_down", "output.dense")):
            w.layer(b + role, h + name)
    # ---- the GPT-2 decoder with cross-attention
    d = "decoder.transformer."
    w.matrix("token_embd", d + "wte.weight")
    w.matrix("pos_embd", d + "wpe.weight")
    w.layer("output_norm", d + "ln_f")
    w.vector("output_norm.bias", d + "ln_f.bias")
    if not w.has("decoder.lm_head.weight") or dec.get("tie_word_embeddings", True):
        w.take("decoder.lm_head.weight", required=False)  # tied to wte
    else:
        w.matrix("output", "decoder.lm_head.weight")
    for i in range(n_dec):
        h, b = f"{d}h.{i}.", f"blk.{i}."
        for role, name in (("attn_norm", "ln_1"), ("cross_attn_norm", "ln_cross_attn"), ("ffn_norm", "ln_2")):
            w.layer(b + role, h + name)
            w.vector(b + role + ".bias", h + name + ".bias")
        qkv = transposed(w.take(h + "attn.c_attn.weight"))
        qkv_bias = as_float32(w.take(h + "attn.c_attn.bias")).reshape(-1)
        for j, role in enumerate(("attn_q", "attn_k", "attn_v")):
            w.matrix(b + role, "", tensor=_rows(qkv, j * n_embd, n_embd))
            w.vector(b + role + ".bias", "", tensor=_vector(qkv_bias[j * n_embd:(j + 1) * n_embd]))
        w.matrix(b + "cross_attn_q", "", tensor=transposed(w.take(h + "crossattention.q_attn.weight")))
        w.vector(b + "cross_attn_q.bias", h + "crossattention.q_attn.bias")
        kv = transposed(w.take(h + "crossattention.c_attn.weight"))
        kv_bias = as_float32(w.take(h + "crossattention.c_attn.bias")).reshape(-1)
        for j, role in enumerate(("cross_attn_k", "cross_attn_v")):
            w.matrix(b + role, "", tensor=_rows(kv, j * n_embd, n_embd))
            w.vector(b + role + ".bias", "", tensor=_vector(kv_bias[j * n_embd:(j + 1) * n_embd]))
        for role, name in (("attn_output", "attn.c_proj"), ("cross_attn_output", "crossattention.c_proj"),
                           ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")):
            w.matrix(b + role, "", tensor=transposed(w.take(h + name + ".weight")))
            w.vector(b + role + ".bias", h + name + ".bias")
        for buffer in ("attn.bias", "attn.masked_bias", "crossattention.bias", "crossattention.masked_bias"):
            w.take(h + buffer, required=False)
    w.check_all_taken(" (a vision-encoder-decoder model)")
    enc_roles, dec_roles = split_roles(w.roles, "enc.")
    start = top.get("decoder_start_token_id", dec.get("decoder_start_token_id", dec.get("bos_token_id")))
    if start is None:
        raise Error(f"{folder.config_source} sets no decoder_start_token_id")
    return Spec("vision-encoder-decoder", decoder, dec_roles, dec.get("n_positions", 0),
                encoder=Spec("vit", encoder, enc_roles), generation=dict(decoder_start_token_id=start), vision=vision)


def _vector(v: np.ndarray) -> Tensor:
    v = np.ascontiguousarray(v, dtype=np.float32)
    return Tensor(0, 1, v.size, v.view(np.uint8))
