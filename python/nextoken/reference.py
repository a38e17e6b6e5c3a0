"""Plain numpy versions of every kernel and of the whole Llama forward pass: the test oracle.

Written for clarity, not speed, and independently of the C++ (the GGUF block layouts are decoded here
from the format's definition). Matrix products and softmax run in float64, so the reference error is
far below the fp32 rounding of the code under test.
"""
from __future__ import annotations

import numpy as np

F32, F16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 3, 6, 8, 12, 13, 14, 30
QK = 32      # weights per block (Q4_0, Q4_1, Q5_0, Q8_0) and per K-quant sub-block
QK_K = 256   # weights per K-quant super-block
BLOCK_BYTES = {Q4_0: 18, Q4_1: 20, Q8_0: 34}
# Q5_0 and the K-quants, decoded below as ggml computes them in float32 (every product is exact in
# float32: an f16 significand has 11 bits and the integer factors are small):
#   Q5_0  y = (q - 16) * d;  Q4_K / Q5_K  y = (d * sc) * q - dmin * m per 32;  Q6_K  y = (d * sc) * (q - 32) per 16
OTHER_BLOCKS = {Q5_0: (QK, 22), Q4_K: (QK_K, 144), Q5_K: (QK_K, 176), Q6_K: (QK_K, 210)}


# ---- weights ------------------------------------------------------------------------------------------
def dequantize(data: np.ndarray, w_type: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32 from the raw bytes of a GGUF tensor."""
    raw = np.asarray(data, dtype=np.uint8).reshape(-1)
    if w_type == F32:
        return raw.view(np.float32).reshape(rows, cols).copy()
    if w_type == F16:
        return raw.view(np.float16).astype(np.float32).reshape(rows, cols)
    if w_type == BF16:  # the top 16 bits of a float32
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(rows, cols)
    if w_type in OTHER_BLOCKS:
        elems, nbytes = OTHER_BLOCKS[w_type]
        blocks = raw.reshape(rows * cols // elems, nbytes)
        decode = {Q5_0: _dequantize_q5_0, Q4_K: _dequantize_q4_k, Q5_K: _dequantize_q5_k, Q6_K: _dequantize_q6_k}
        return decode[w_type](blocks).reshape(rows, cols)
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


def packed_weights(data: np.ndarray, w_type: int, rows: int, cols: int) -> np.ndarray:
    """The weights compute_type "int8" multiplies: dequantize()'s, except Q4_K's and Q5_K's, whose per-32
    scale d * sc and offset dmin * m the packed layout keeps as f16 (rounded to nearest even)."""
    if w_type not in (Q4_K, Q5_K):
        return dequantize(data, w_type, rows, cols)
    blocks = np.asarray(data, dtype=np.uint8).reshape(rows * cols // QK_K, OTHER_BLOCKS[w_type][1])
    decode = _dequantize_q4_k if w_type == Q4_K else _dequantize_q5_k
    return decode(blocks, f16_affine=True).reshape(rows, cols)


def _f16(b: np.ndarray) -> np.ndarray:
    """(n, 2) little-endian bytes -> (n, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


# ---- Q5_0: d f16 @0, qh u32 @2 (bit j = 5th bit of weight j), qs[16] @6 -------------------------------------
def _dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    d = _f16(blocks[:, 0:2])                                                    # (n, 1)
    qh = np.ascontiguousarray(blocks[:, 2:6]).view("<u4")                      # (n, 1)
    qs = blocks[:, 6:22]                                                        # (n, 16)
    # byte j: weight j in the low nibble, weight j + 16 in the high nibble
    low4 = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)        # (n, 32)
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)      # bit j of qh -> weight j
    q = (low4 | (high << 4)) - 16                                               # -16 .. 15
    return q.astype(np.float32) * d


# ---- Q4_K / Q5_K scales: 12 bytes holding eight 6-bit scales and eight 6-bit mins -------------------------------
def _scale_min_k4(scales: np.ndarray):
    """(n, 12) uint8 -> sc, m (n, 8) uint8, as ggml's get_scale_min_k4(j) for j = 0..7.

    j < 4:  sc = s[j] & 63,                          m = s[j+4] & 63
    j >= 4: sc = (s[j+4] & 0xF) | ((s[j-4] >> 6) << 4),  m = (s[j+4] >> 4) | ((s[j] >> 6) << 4)
    """
    s = scales.astype(np.uint8)
    a, b, c = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([a & 63, (c & 0x0F) | ((a >> 6) << 4)], axis=1)
    m = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=1)
    return sc, m


def _k_affine(blocks: np.ndarray, f16_affine: bool = False):
    """Per 32-sub-block float32 scale d1 = d * sc and offset m1 = dmin * m, each (n, 8, 1); with f16_affine
    each rounded to float16 (packed_weights)."""
    d = _f16(blocks[:, 0:2])
    dmin = _f16(blocks[:, 2:4])
    sc, m = _scale_min_k4(blocks[:, 4:16])
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * m.astype(np.float32))[:, :, None]
    if f16_affine:
        d1, m1 = (v.astype(np.float16).astype(np.float32) for v in (d1, m1))
    return d1, m1


def _nibble_planes(qs: np.ndarray) -> np.ndarray:
    """(n, 128) bytes -> (n, 8, 32) 4-bit codes: 32-byte chunk c gives sub-block 2c (low nibbles)
    and sub-block 2c + 1 (high nibbles)."""
    chunks = qs.reshape(len(qs), 4, 32)
    return np.stack([chunks & 0x0F, chunks >> 4], axis=2).reshape(len(qs), 8, 32)


# ---- Q4_K: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16 ----------------------------------------------
def _dequantize_q4_k(blocks: np.ndarray, f16_affine: bool = False) -> np.ndarray:
    d1, m1 = _k_affine(blocks, f16_affine)
    q = _nibble_planes(blocks[:, 16:144]).astype(np.float32)
    return (d1 * q - m1).reshape(len(blocks), QK_K)


# ---- Q5_K: d f16 @0, dmin f16 @2, scales[12] @4, qh[32] @16, qs[128] @48 -----------------------------------
def _dequantize_q5_k(blocks: np.ndarray, f16_affine: bool = False) -> np.ndarray:
    d1, m1 = _k_affine(blocks, f16_affine)
    low4 = _nibble_planes(blocks[:, 48:176])                                    # (n, 8, 32)
    qh = blocks[:, 16:48]                                                       # (n, 32)
    # bit j of qh[l] is the 5th bit of weight l of sub-block j
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # (n, 8, 32)
    q = (low4 | (high << 4)).astype(np.float32)
    return (d1 * q - m1).reshape(len(blocks), QK_K)


# ---- Q6_K: ql[128] @0, qh[64] @128, scales int8[16] @192, d f16 @208 ---------------------------------------
def _dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    n = len(blocks)
    ql = blocks[:, 0:128].reshape(n, 2, 64)          # per 128-weight half h: 64 bytes
    qh = blocks[:, 128:192].reshape(n, 2, 32)        # per half: 32 bytes
    sc = blocks[:, 192:208].view(np.int8).astype(np.float32)                   # (n, 16), one per 16 weights
    d = _f16(blocks[:, 208:210])
    # In half h, weight 32s + l (s = 0..3, l = 0..31) takes
    #   low 4 bits:  s=0 low nibble of ql[l], s=1 low of ql[l+32], s=2 high of ql[l], s=3 high of ql[l+32]
    #   high 2 bits: bits 2s, 2s+1 of qh[l]
    low4 = np.stack([ql[:, :, :32] & 0x0F, ql[:, :, 32:] & 0x0F, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    high2 = (qh[:, :, None, :] >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3
    q = (low4 | (high2 << 4)).astype(np.int32) - 32                             # (n, 2, 4, 32): -32 .. 31
    ds = (d * sc)[:, :, None]                                                   # (n, 16, 1)
    return (ds * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


# ---- BF16: the top 16 bits of a float32 ------------------------------------------------------------------


def random_blocks(rng, w_type: int, rows: int, cols: int) -> np.ndarray:
    """Raw bytes of a random (rows, cols) Q5_0 / K-quant tensor: random codes and scale bytes, finite f16
    super-block scales (no quantizer needed to exercise every code)."""
    elems, nbytes = OTHER_BLOCKS[w_type]
    blocks = rng.integers(0, 256, (rows * cols // elems, nbytes), dtype=np.uint8)
    scales = (rng.standard_normal((len(blocks), 2)) * 0.01).astype(np.float16).view(np.uint8)
    at = {Q5_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208]}[w_type]
    for i, offset in enumerate(at):
        blocks[:, offset:offset + 2] = scales[:, 2 * i:2 * i + 2]
    return blocks.reshape(-1)


# ---- Q4_K quantization, as ggml-quants.c does it (every step in float32, in its order) -----------------------
def _f16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> IEEE half bits (uint16), round to nearest even, like ggml."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype(np.float16).view(np.uint16)
    bits = x.view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    # ggml emits the canonical quiet NaN with the input's sign
    canon = ((bits >> np.uint32(16)) & np.uint32(0x8000)).astype(np.uint16) | np.uint16(0x7E00)
    return np.where(nan, canon, h)


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: round-half-even via adding 1.5*2^23 (exact for |v| < 2^22)."""
    with np.errstate(over="ignore", invalid="ignore"):
        t = (np.asarray(v, dtype=np.float32) + np.float32(12582912.0)).astype(np.float32, copy=False)
    return (t.view(np.int32) & np.int32(0x007FFFFF)) - np.int32(0x00400000)


def _seq_sum(cols: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Left-to-right float32 sum over axis 0 (like `s = 0; for i: s += a[i]`)."""
    s = np.zeros(cols.shape[1:], dtype=np.float32) if start is None else start
    for c in cols:
        s = s + c
    return s


def _make_qkx2_quants_q4k(X: np.ndarray, W: np.ndarray):
    """make_qkx2_quants(32, 15, x, w, L, &min, Laux, -1.f, 0.1f, 20, false) for many
    sub-blocks at once.  X, W: (32, M) float32 (element index first, so X[i] is contiguous).
    Returns (scale (M,), the_min (M,), L (32, M) uint8)."""
    nmax = 15
    n, M = X.shape
    Xf = X

    mn = X[0].copy()
    mx = X[0].copy()
    sum_w = W[0].copy()
    sum_x = sum_w * X[0]
    for i in range(1, n):
        mn = np.where(X[i] < mn, X[i], mn)
        mx = np.where(X[i] > mx, X[i], mx)
        sum_w = sum_w + W[i]
        sum_x = sum_x + W[i] * X[i]
    mn = np.where(mn > 0, np.float32(0), mn)
    flat = mx == mn                      # handled at the end (L = 0, scale = 0)
    min0 = mn.copy()

    iscale = np.float32(nmax) / (mx - mn)
    scale = np.float32(1) / iscale
    L = np.clip(_nearest_int(iscale * (Xf - mn)), 0, nmax).astype(np.float32)
    diff = (scale * L + mn) - Xf
    best = _seq_sum(W * (diff * diff))

    for step in range(21):
        # (rmin + rdelta*is) + nmax, all float32
        num = (np.float32(-1.0) + np.float32(0.1) * np.float32(step)) + np.float32(nmax)
        iscale = num / (mx - mn)
        Laux = np.clip(_nearest_int(iscale * (Xf - mn)), 0, nmax).astype(np.float32)
        WL = W * Laux
        sum_l = _seq_sum(WL)
        sum_l2 = _seq_sum(WL * Laux)
        sum_xl = _seq_sum(WL * Xf)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
        pos = this_min > 0
        this_min = np.where(pos, np.float32(0), this_min)
        this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
        diff = (this_scale * Laux + this_min) - Xf
        cur = _seq_sum(W * (diff * diff))
        upd = ok & (cur < best) & ~flat
        L = np.where(upd, Laux, L)
        best = np.where(upd, cur, best)
        scale = np.where(upd, this_scale, scale)
        mn = np.where(upd, this_min, mn)

    L = np.where(flat, np.float32(0), L).astype(np.uint8)
    scale = np.where(flat, np.float32(0), scale)
    the_min = -np.where(flat, min0, mn)
    return scale.astype(np.float32), the_min.astype(np.float32), L


def _quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """Q4_K blocks of x as ggml's quantize_row_q4_K_ref writes them (make_qkx2_quants with rmin -1,
    rdelta 0.1, 20 steps, weights rms + |x|; 6-bit scales against f16 d / dmin; codes refitted to them)."""
    xb = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, QK_K)
    nb = xb.shape[0]
    M = nb * 8
    with np.errstate(all="ignore"):
        X = np.ascontiguousarray(xb.reshape(M, 32).T)        # (32, M)

        # importance weights: rms of the sub-block + |x|
        sum_x2 = _seq_sum(X * X)
        av_x = np.sqrt(sum_x2 / np.float32(32))
        W = av_x + np.abs(X)

        scales, mins, L = _make_qkx2_quants_q4k(X, W)
        scales = scales.reshape(nb, 8)
        mins = mins.reshape(nb, 8)
        L = np.ascontiguousarray(L.T).reshape(nb, 8, 32)

        max_scale = np.zeros(nb, dtype=np.float32)
        max_min = np.zeros(nb, dtype=np.float32)
        for j in range(8):
            max_scale = np.where(scales[:, j] > max_scale, scales[:, j], max_scale)
            max_min = np.where(mins[:, j] > max_min, mins[:, j], max_min)

        inv_scale = np.where(max_scale > 0, np.float32(63) / max_scale, np.float32(0)).astype(np.float32)
        inv_min = np.where(max_min > 0, np.float32(63) / max_min, np.float32(0)).astype(np.float32)
        ls = np.minimum(_nearest_int(inv_scale[:, None] * scales) & 0xFF, 63)   # (nb, 8)
        lm = np.minimum(_nearest_int(inv_min[:, None] * mins) & 0xFF, 63)

        sc_bytes = np.zeros((nb, 12), dtype=np.int32)
        sc_bytes[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
        sc_bytes[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
        sc_bytes[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)

        d16 = _f16_bits(max_scale / np.float32(63))
        dmin16 = _f16_bits(max_min / np.float32(63))

        # re-quantise against the values the decoder sees: f16(d)*sc, f16(dmin)*m
        d = d16.view(np.float16).astype(np.float32)[:, None] * ls.astype(np.float32)     # (nb, 8)
        dm = dmin16.view(np.float16).astype(np.float32)[:, None] * lm.astype(np.float32)
        x3 = xb.reshape(nb, 8, 32)
        l = np.clip(_nearest_int((x3 + dm[..., None]) / d[..., None]), 0, 15)
        redo = ~(d == 0)                                         # C: if (!d) continue;
        L = np.where(redo[..., None], l, L.astype(np.int32))

    L = L.reshape(nb, 4, 2, 32)
    qs = (L[:, :, 0, :] | (L[:, :, 1, :] << 4)).reshape(nb, 128)

    out = np.empty((nb, 144), dtype=np.uint8)
    out[:, 0:2] = d16.reshape(nb, 1).view(np.uint8)
    out[:, 2:4] = dmin16.reshape(nb, 1).view(np.uint8)
    out[:, 4:16] = sc_bytes.astype(np.uint8)
    out[:, 16:] = qs.astype(np.uint8)
    return out


def quantize(w: np.ndarray, w_type: int) -> np.ndarray:
    """Raw GGUF bytes of w (rows, cols), quantized as ggml's reference quantizers do."""
    w = np.asarray(w, dtype=np.float32)
    if w_type == Q4_K:
        return _quantize_q4_k(w).reshape(-1)
    if w_type == F32:
        return w.reshape(-1).view(np.uint8).copy()
    if w_type == F16:
        return w.astype(np.float16).reshape(-1).view(np.uint8).copy()
    if w_type == BF16:  # round to nearest even on the top 16 bits (finite inputs)
        bits = w.reshape(-1).view(np.uint32).astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).view(np.uint8)
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


def layernorm(x, weight, bias, eps):
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(axis=-1, keepdims=True)
    return (centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps) * weight + bias).astype(np.float32)


def rope_inv_freq(base: float, head_dim: int):
    """1 / base^(2i/D) as Hugging Face's default RoPE: the exponent in fp32, the power rounded to fp32 once."""
    exponent = (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)).astype(np.float32)
    return (np.float32(1.0) / np.power(np.float64(base), exponent.astype(np.float64)).astype(np.float32))


def rope_table(n_pos: int, inv_freq):
    """cos, sin (n_pos, D/2) with angle = p * inv_freq in fp32 (the cosine taken in float64, rounded once)."""
    angle = np.arange(n_pos, dtype=np.float32)[:, None] * np.asarray(inv_freq, np.float32)[None, :]
    return np.cos(angle.astype(np.float64)).astype(np.float32), np.sin(angle.astype(np.float64)).astype(np.float32)


def rope(x, cos, sin, half_layout=False):
    """x (T, H, D) rotated by angle (t, i): pairs (x[2i], x[2i+1]), or (x[i], x[i + D/2]) in the half layout."""
    D = x.shape[-1]
    first = np.arange(D // 2) if half_layout else np.arange(0, D, 2)
    second = first + (D // 2 if half_layout else 1)
    x0, x1 = x[..., first].astype(np.float64), x[..., second].astype(np.float64)
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty(x.shape, dtype=np.float64)
    out[..., first] = x0 * c - x1 * s
    out[..., second] = x0 * s + x1 * c
    return out.astype(np.float32)


def activation(x, kind):
    """silu, gelu_tanh (GELU with the tanh approximation), gelu (exact, erf) or relu, in float64."""
    from math import erf
    x = x.astype(np.float64)
    if kind == "silu":
        y = x / (1.0 + np.exp(-x))
    elif kind == "gelu_tanh":
        y = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    elif kind == "gelu":
        y = 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))
    else:
        y = np.maximum(x, 0.0)
    return y.astype(np.float32)


def swiglu(gate, up):
    return (activation(gate, "silu").astype(np.float64) * up).astype(np.float32)


def attention(q, k, v, pos0=0, window=0, scale=None):
    """Causal attention, the plain way: softmax(q k^T * scale + mask) v, per head (scale: 1 / sqrt(D)).

    q (T, H, D); k, v (H_kv, S, D); query t at position p = pos0 + t sees keys 0 .. p, or with a window
    W > 0 keys p - W + 1 .. p.
    """
    T, H, D = q.shape
    group = H // k.shape[0]
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    out = np.empty((T, H, D), dtype=np.float64)
    n_keys = pos0 + T
    key, query = np.arange(n_keys)[None, :], (pos0 + np.arange(T))[:, None]
    mask = (key > query) | ((query - key >= window) if window else False)
    for h in range(H):
        kh, vh = k[h // group, :n_keys].astype(np.float64), v[h // group, :n_keys].astype(np.float64)
        scores = q[:, h].astype(np.float64) @ kh.T * scale
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
    cos, sin = rope_table(T, rope_inv_freq(config["rope_base"], D))
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
