"""Plain numpy versions of every kernel and of the whole Llama forward pass: the test oracle.

Written for clarity, not speed, and independently of the C++ (the GGUF block layouts are decoded here
from the format's definition). Matrix products and softmax run in float64, so the reference error is
far below the fp32 rounding of the code under test.
"""
from __future__ import annotations

import numpy as np

F32, F16, Q4_0, Q4_1, Q8_0 = 0, 1, 2, 3, 8
QK = 32
BLOCK_BYTES = {Q4_0: 18, Q4_1: 20, Q8_0: 34}


# ---- weights ------------------------------------------------------------------------------------------
def dequantize(data: np.ndarray, w_type: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32 from the raw bytes of a GGUF tensor."""
    raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    if w_type == F32:
        return raw.view(np.float32).reshape(rows, cols).copy()
    if w_type == F16:
        return raw.view(np.float16).astype(np.float32).reshape(rows, cols)
    blocks = raw.reshape(rows * cols // QK, BLOCK_BYTES[w_type])
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)          # (n_blocks, 1)
    if w_type == Q8_0:
        q = blocks[:, 2:].view(np.int8).astype(np.float32)
        return (q * d).reshape(rows, cols)
    qs = blocks[:, 4:] if w_type == Q4_1 else blocks[:, 2:]
    # byte j: weight j in the low nibble, weight j + 16 in the high nibble
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    if w_type == Q4_0:
        return ((q - 8.0) * d).reshape(rows, cols)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    return (q * d + m).reshape(rows, cols)


def quantize(w: np.ndarray, w_type: int) -> np.ndarray:
    """Raw GGUF bytes of w (rows, cols), quantized as ggml's reference quantizers do."""
    w = np.asarray(w, dtype=np.float32)
    if w_type == F32:
        return w.reshape(-1).view(np.uint8).copy()
    if w_type == F16:
        return w.astype(np.float16).reshape(-1).view(np.uint8).copy()
    blocks = w.reshape(-1, QK)
    if w_type == Q8_0:
        amax = np.abs(blocks).max(axis=1, keepdims=True)
        d = amax / 127.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        q = np.round(blocks * inv).astype(np.int8)
        return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)
    if w_type == Q4_0:
        idx = np.abs(blocks).argmax(axis=1)
        vmax = blocks[np.arange(len(blocks)), idx][:, None]
        d = vmax / -8.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        q = np.clip(np.trunc(blocks * inv + 8.5), 0, 15).astype(np.uint8)
        head = d.astype(np.float16).view(np.uint8)
    else:  # Q4_1
        lo, hi = blocks.min(axis=1, keepdims=True), blocks.max(axis=1, keepdims=True)
        d = (hi - lo) / 15.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        q = np.clip(np.trunc((blocks - lo) * inv + 0.5), 0, 15).astype(np.uint8)
        head = np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8)], axis=1)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([head, packed], axis=1).reshape(-1)


# ---- kernels --------------------------------------------------------------------------------------------
def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (T, K) @ w (N, K)^T in float64, as float32."""
    return (x.astype(np.float64) @ w.astype(np.float64).T).astype(np.float32)


def quantize_activations(x):
    """int8 codes, scales and code sums per 32-block of x (T, K): dx = max|x| / 127, xq = round(x / dx)."""
    T, K = x.shape
    blocks = x.reshape(T, K // QK, QK)
    amax = np.abs(blocks).max(axis=2)
    dx = (amax / np.float32(127)).astype(np.float32)
    inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0).astype(np.float32)
    xq = np.rint(blocks * inv[:, :, None]).astype(np.int8)
    return xq.reshape(T, K), dx, xq.astype(np.int32).sum(axis=2)


def matmul_int8(x, w):
    """x (T, K) @ w (N, K)^T with x replaced by its int8 quantization (compute_type "int8")."""
    xq, dx, _ = quantize_activations(x)
    T, K = x.shape
    x_deq = (xq.reshape(T, K // QK, QK).astype(np.float64) * dx[:, :, None]).reshape(T, K)
    return (x_deq @ w.astype(np.float64).T).astype(np.float32)


def rmsnorm(x, weight, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + eps) * weight).astype(np.float32)


def rope_table(n_pos: int, head_dim: int, base: float):
    """cos, sin (n_pos, head_dim/2) following Hugging Face's LlamaRotaryEmbedding: inv_freq = 1 / base^(2i/D)
    and angle = p * inv_freq in fp32 (the power is taken in float64 and rounded once)."""
    exponent = (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)).astype(np.float32)
    inv_freq = (np.float32(1.0) / np.power(np.float64(np.float32(base)), exponent.astype(np.float64)).astype(np.float32))
    angle = np.arange(n_pos, dtype=np.float32)[:, None] * inv_freq[None, :]
    return np.cos(angle.astype(np.float64)).astype(np.float32), np.sin(angle.astype(np.float64)).astype(np.float32)


def rope(x, cos, sin):
    """x (T, H, D): pairs (x[2i], x[2i+1]) rotated by angle (t, i)."""
    x0, x1 = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty(x.shape, dtype=np.float64)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out.astype(np.float32)


def swiglu(gate, up):
    g = gate.astype(np.float64)
    return (g / (1.0 + np.exp(-g)) * up).astype(np.float32)


def attention(q, k, v, pos0=0):
    """Causal attention, the plain way: softmax(q k^T / sqrt(D) + mask) v, per head.

    q (T, H, D); k, v (H_kv, S, D); query t at position pos0 + t sees keys 0 .. pos0 + t.
    """
    T, H, D = q.shape
    group = H // k.shape[0]
    out = np.empty((T, H, D), dtype=np.float64)
    n_keys = pos0 + T
    mask = np.arange(n_keys)[None, :] > (pos0 + np.arange(T))[:, None]
    for h in range(H):
        kh, vh = k[h // group, :n_keys].astype(np.float64), v[h // group, :n_keys].astype(np.float64)
        scores = q[:, h].astype(np.float64) @ kh.T / np.sqrt(D)
        scores[mask] = -np.inf
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ vh
    return out.astype(np.float32)


def allowed_tokens(logits, temperature, top_k, top_p):
    """The set a top-k / top-p draw may return (Hugging Face's rules: top-k first, then the smallest
    most-probable head whose mass reaches top_p)."""
    order = np.lexsort((np.arange(len(logits)), -logits))  # by logit descending, ties by index
    if top_k:
        order = order[:top_k]
    z = logits[order].astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    before = np.concatenate([[0.0], np.cumsum(p)[:-1]])
    return set(order[before < top_p].tolist())


# ---- the whole model ----------------------------------------------------------------------------------------
def llama_forward(config: dict, weights: dict, ids, int8: bool = False) -> np.ndarray:
    """Logits (T, vocab) of a Llama model; weights: GGUF tensor name -> dequantized float32 array.
    int8: every matrix product quantizes its input as compute_type "int8" does."""
    matmul_ = matmul_int8 if int8 else matmul
    H, H_kv, D = config["n_heads"], config["n_kv_heads"], config["head_dim"]
    eps, T = config["norm_eps"], len(ids)
    cos, sin = rope_table(T, D, config["rope_base"])
    x = weights["token_embd.weight"][np.asarray(ids)]
    for i in range(config["n_layers"]):
        p = f"blk.{i}."
        xn = rmsnorm(x, weights[p + "attn_norm.weight"].reshape(-1), eps)
        q = rope(matmul_(xn, weights[p + "attn_q.weight"]).reshape(T, H, D), cos, sin)
        k = rope(matmul_(xn, weights[p + "attn_k.weight"]).reshape(T, H_kv, D), cos, sin)
        v = matmul_(xn, weights[p + "attn_v.weight"]).reshape(T, H_kv, D)
        att = attention(q, k.transpose(1, 0, 2), v.transpose(1, 0, 2)).reshape(T, H * D)
        x = x + matmul_(att, weights[p + "attn_output.weight"])
        xn = rmsnorm(x, weights[p + "ffn_norm.weight"].reshape(-1), eps)
        h = swiglu(matmul_(xn, weights[p + "ffn_gate.weight"]), matmul_(xn, weights[p + "ffn_up.weight"]))
        x = x + matmul_(h, weights[p + "ffn_down.weight"])
    xn = rmsnorm(x, weights["output_norm.weight"].reshape(-1), eps)
    return matmul_(xn, weights.get("output.weight", weights["token_embd.weight"]))
