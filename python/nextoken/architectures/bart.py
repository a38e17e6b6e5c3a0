"""BART, mBART and Marian (Hugging Face `bart`, `mbart`, `marian` folders): an encoder and a decoder with
cross-attention, LayerNorms with biases, biases on every projection, an ungated MLP, 1/sqrt(d) attention.
They differ in positions (BART / mBART: a learned table whose row is position + 2; Marian: sinusoidal, sin
in the first half and cos in the second, not stored), norm placement (BART / Marian: after each residual;
mBART: before, plus a final norm per stack), a norm of the embeddings (BART / mBART), and embeddings scaled
by sqrt(d_model) when scale_embedding. The head adds final_logits_bias."""
from __future__ import annotations

import math

import numpy as np

from .._core import Error
from . import F32, Spec, Weights, base_config, split_roles
from .hf import HFConfig

HF_MODEL_TYPES = ("bart", "mbart", "marian")


def sinusoidal_positions(n_pos: int, dim: int) -> np.ndarray:
    """Marian's table as transformers builds it: angles pos / 10000^(2 (j // 2) / dim) in float64, sin of the
    even ones in the first half, cos of the odd ones in the second, rounded to float32."""
    j = np.arange(dim)
    angles = np.arange(n_pos, dtype=np.float64)[:, None] / np.power(10000, 2 * (j // 2) / dim)[None, :]
    half = (dim + 1) // 2
    table = np.empty((n_pos, dim), np.float32)
    table[:, :half] = np.sin(angles[:, 0::2])
    table[:, half:] = np.cos(angles[:, 1::2])
    return table


def from_hf(folder) -> Spec:
    c = HFConfig(folder.config, folder.config_source)
    kind = c.require("model_type")
    dim, vocab = c.int("d_model"), c.int("vocab_size")
    if c.get("decoder_vocab_size", vocab) != vocab or c.get("share_encoder_decoder_embeddings", True) is False:
        raise Error(f"{c.source}: separate source and target vocabularies (decoder_vocab_size, "
                    "share_encoder_decoder_embeddings false) are not supported")
    n_pos = c.int("max_position_embeddings")
    pre = kind == "mbart"
    sizes = dict(dim=dim, vocab_size=vocab, norm="layer", norm_placement="pre" if pre else "post", norm_eps=1e-5,
                 activation=c.activation("activation_function"), gated=False, positions="learned",
                 position_offset=0 if kind == "marian" else 2,
                 embed_scale=math.sqrt(dim) if c.get("scale_embedding", False) else 1.0, embed_norm=kind != "marian")
    n_enc, n_dec = c.int("encoder_layers"), c.int("decoder_layers")
    e_heads, d_heads = c.int("encoder_attention_heads"), c.int("decoder_attention_heads")
    if dim % e_heads or dim % d_heads:
        raise Error(f"{c.source}: d_model must be a multiple of the head counts")
    encoder = base_config(n_layers=n_enc, causal=False, n_heads=e_heads, n_kv_heads=e_heads, head_dim=dim // e_heads,
                          hidden_dim=c.int("encoder_ffn_dim"), **sizes)
    decoder = base_config(n_layers=n_dec, cross_attention=True, n_heads=d_heads, n_kv_heads=d_heads,
                          head_dim=dim // d_heads, hidden_dim=c.int("decoder_ffn_dim"), **sizes)
    w = Weights(folder.tensors, folder.source)
    p = "model." if w.has("model.shared.weight") or w.has("model.encoder.embed_tokens.weight") else ""
    shared = w.take(p + "shared.weight", required=False)
    for stack, n_layers, prefix in (("encoder", n_enc, "enc."), ("decoder", n_dec, "")):
        s = f"{p}{stack}."
        embed = w.take(s + "embed_tokens.weight", required=shared is None)
        w.matrix(prefix + "token_embd", "", tensor=shared if shared is not None else embed)
        if kind == "marian":
            w.take(s + "embed_positions.weight", required=False)  # the sinusoids, when a file stores them
            table = sinusoidal_positions(n_pos, dim)
            w.roles.append((prefix + "pos_embd", F32, n_pos, dim, table.reshape(-1).view(np.uint8)))
        else:
            w.matrix(prefix + "pos_embd", s + "embed_positions.weight")
            w.layer(prefix + "embd_norm", s + "layernorm_embedding")
            w.vector(prefix + "embd_norm.bias", s + "layernorm_embedding.bias")
        if pre:
            w.layer(prefix + "output_norm", s + "layer_norm")
            w.vector(prefix + "output_norm.bias", s + "layer_norm.bias")
        for i in range(n_layers):
            h, b = f"{s}layers.{i}.", f"{prefix}blk.{i}."
            sublayers = [("attn", "self_attn")] + ([("cross_attn", "encoder_attn")] if stack == "decoder" else [])
            for role, name in sublayers:
                w.layer(b + role + "_norm", h + name + "_layer_norm")
                w.vector(b + role + "_norm.bias", h + name + "_layer_norm.bias")
                for part, proj in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("output", "out_proj")):
                    w.layer(f"{b}{role}_{part}", f"{h}{name}.{proj}")
            w.layer(b + "ffn_norm", h + "final_layer_norm")
            w.vector(b + "ffn_norm.bias", h + "final_layer_norm.bias")
            w.layer(b + "ffn_up", h + "fc1")
            w.layer(b + "ffn_down", h + "fc2")
    head = w.take("lm_head.weight", required=False)
    if head is not None and not c.get("tie_word_embeddings", True):
        w.matrix("output", "", tensor=head)
    bias = w.take(p + "final_logits_bias", required=False) or w.take("final_logits_bias", required=False)
    if bias is not None:
        w.vector("output.bias", "", tensor=bias)
    w.check_all_taken(f" (a {kind} model of {n_enc} + {n_dec} layers)")
    enc_roles, dec_roles = split_roles(w.roles, "enc.")
    g = folder.generation_config or {}
    generation = dict(decoder_start_token_id=g.get("decoder_start_token_id", c.get("decoder_start_token_id")),
                      forced_bos_token_id=g.get("forced_bos_token_id", c.get("forced_bos_token_id")),
                      bad_words_ids=g.get("bad_words_ids", c.get("bad_words_ids")),
                      renormalize_logits=g.get("renormalize_logits", False))
    if generation["decoder_start_token_id"] is None:
        raise Error(f"{c.source} sets no decoder_start_token_id")
    return Spec(kind, decoder, dec_roles, n_pos, encoder=Spec(kind + "-encoder", encoder, enc_roles),
                generation=generation)
