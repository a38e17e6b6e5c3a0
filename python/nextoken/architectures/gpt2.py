"""GPT-2 (Hugging Face `gpt2` folders): learned absolute positions, pre-norm LayerNorm with biases, an
ungated MLP with gelu_new, biases everywhere, a tied head. Its Conv1D layers store weights [in, out]:
they are transposed at load (a copy), and the fused c_attn is split into q, k and v."""
from __future__ import annotations

from .._core import Error
from . import Spec, Tensor, Weights, base_config, transposed
from .hf import HFConfig
from .llama import tied_head

HF_MODEL_TYPES = ("gpt2",)


def _rows(t: Tensor, first: int, count: int) -> Tensor:
    row = t.data.size // t.rows
    return Tensor(t.type, count, t.cols, t.data[first * row:(first + count) * row])


def from_hf(folder) -> Spec:
    c = HFConfig(folder.config, folder.config_source)
    n_layers, dim, n_heads = c.int("n_layer"), c.int("n_embd"), c.int("n_head")
    if c.get("scale_attn_by_inverse_layer_idx", False):
        raise Error(f"{c.source}: scale_attn_by_inverse_layer_idx is not supported")
    config = base_config(
        n_layers=n_layers, dim=dim, n_heads=n_heads, n_kv_heads=n_heads, head_dim=dim // n_heads,
        hidden_dim=c.int("n_inner", 4 * dim), vocab_size=c.int("vocab_size"),
        norm="layer", norm_eps=c.float("layer_norm_epsilon", 1e-5), activation=c.activation("activation_function"),
        gated=False, positions="learned", attn_scale=1.0 if not c.get("scale_attn_weights", True) else 0.0)
    w = Weights(folder.tensors, folder.source)
    p = "transformer." if w.has("transformer.wte.weight") else ""
    w.matrix("token_embd", p + "wte.weight")
    w.matrix("pos_embd", p + "wpe.weight")
    w.vector("output_norm", p + "ln_f.weight")
    w.vector("output_norm.bias", p + "ln_f.bias")
    tied_head(w, c)
    for i in range(n_layers):
        h, b = f"{p}h.{i}.", f"blk.{i}."
        for role, name in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
            w.vector(b + role, h + name + ".weight")
            w.vector(b + role + ".bias", h + name + ".bias")
        qkv = transposed(w.take(h + "attn.c_attn.weight"))
        if qkv.rows != 3 * dim:
            raise Error(f"{folder.source}: '{h}attn.c_attn.weight' has {qkv.rows} outputs, expected {3 * dim}")
        qkv_bias = w.take(h + "attn.c_attn.bias")
        if qkv_bias.rows * qkv_bias.cols != 3 * dim:  # split in three below: q, k and v biases of dim each
            raise Error(f"{folder.source}: '{h}attn.c_attn.bias' has {qkv_bias.rows * qkv_bias.cols} values, "
                        f"expected {3 * dim}")
        for j, role in enumerate(("attn_q", "attn_k", "attn_v")):
            w.matrix(b + role, "", tensor=_rows(qkv, j * dim, dim))
            w.vector(b + role + ".bias", h + "attn.c_attn.bias", tensor=Tensor(
                qkv_bias.type, 1, dim, qkv_bias.data[j * qkv_bias.data.size // 3:(j + 1) * qkv_bias.data.size // 3]))
        for role, name in (("attn_output", "attn.c_proj"), ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")):
            w.matrix(b + role, "", tensor=transposed(w.take(h + name + ".weight")))
            w.vector(b + role + ".bias", h + name + ".bias")
        for buffer in ("attn.bias", "attn.masked_bias"):  # causal-mask buffers of old checkpoints: not weights
            w.take(h + buffer, required=False)
    w.check_all_taken(f" (a gpt2 model of {n_layers} layers)")
    return Spec("gpt2", config, w.roles, c.get("n_positions", 0))
