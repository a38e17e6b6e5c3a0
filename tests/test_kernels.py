"""Every kernel against the plain numpy reference (nextoken.reference) on random inputs.

Tolerance rule: fp32 kernels against a float64 reference are held to ~1e-5 relative to the scale of
the output (fp32 rounding of sums of a few thousand terms stays well inside it); quantized matmuls are
compared with dequantize-then-fp32, so they are held to the same bound.
"""
import numpy as np
import pytest

import nextoken
from nextoken import ops
from nextoken import reference as ref

from conftest import DEVICES

RTOL = 1e-5
TYPES = [ref.F32, ref.F16, ref.BF16, ref.Q4_0, ref.Q4_1, ref.Q8_0]
# Kernels with a CUDA twin (csrc/kernels/*.cu) run on each of DEVICES against the same references: the twins
# decode weights with the CPU's code and sum in float32 in another fixed order, so the same tolerances hold.


def close(actual, expected, rtol=RTOL):
    """|actual - expected| <= rtol * max|expected| elementwise (scale-relative: sums cancel)."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = float(np.abs(actual.astype(np.float64) - expected).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} x scale {scale:.3g}"


def random_weight(rng, w_type, rows, cols):
    """Raw bytes of a random (rows, cols) weight of type w_type, with every nibble / byte value used."""
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    return ref.quantize(w, w_type)


def test_isa_is_known():
    assert nextoken.cpu_isa() in ("avx512", "avx2", "generic")


@pytest.mark.parametrize("w_type", TYPES)
@pytest.mark.parametrize("rows,cols", [(1, 32), (7, 64), (33, 96), (64, 576)])
def test_dequantize_matches_reference(w_type, rows, cols):
    rng = np.random.default_rng(rows * cols + w_type)
    raw = random_weight(rng, w_type, rows, cols)
    np.testing.assert_array_equal(ops.dequantize(raw, w_type, rows, cols), ref.dequantize(raw, w_type, rows, cols))


def test_reference_dequantize_decodes_known_blocks():
    # One Q4_1 block written by hand: d = 0.5, m = -1, byte j = (j % 16) | ((15 - j % 16) << 4).
    d, m = np.array([0.5], np.float16).view(np.uint8), np.array([-1.0], np.float16).view(np.uint8)
    qs = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], dtype=np.uint8)
    block = np.concatenate([d, m, qs])
    expected = np.concatenate([np.arange(16) * 0.5 - 1, (15 - np.arange(16)) * 0.5 - 1]).astype(np.float32)
    np.testing.assert_array_equal(ref.dequantize(block, ref.Q4_1, 1, 32)[0], expected)
    # One Q8_0 block: d = 2, q = -16 .. 15.
    block = np.concatenate([np.array([2.0], np.float16).view(np.uint8), np.arange(-16, 16, dtype=np.int8).view(np.uint8)])
    np.testing.assert_array_equal(ref.dequantize(block, ref.Q8_0, 1, 32)[0], np.arange(-16, 16) * 2.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w_type", TYPES)
@pytest.mark.parametrize("T,K,N", [(1, 32, 1), (1, 64, 7), (3, 96, 5), (5, 128, 33), (17, 576, 70), (70, 256, 9)])
def test_matmul_matches_dequantize_then_fp32(w_type, T, K, N, device):
    rng = np.random.default_rng(T * 1000 + K + N)
    raw = random_weight(rng, w_type, N, K)
    x = rng.standard_normal((T, K)).astype(np.float32)
    expected = ref.matmul(x, ref.dequantize(raw, w_type, N, K))
    close(ops.matmul(x, raw, w_type, N, 2, device=device), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w_type", [ref.F32, ref.F16, ref.BF16])
@pytest.mark.parametrize("K", [1, 15, 17, 33, 47, 100])
def test_matmul_unblocked_types_take_any_row_length(w_type, K, device):
    rng = np.random.default_rng(K)
    raw = random_weight(rng, w_type, 6, K)
    x = rng.standard_normal((5, K)).astype(np.float32)
    close(ops.matmul(x, raw, w_type, 6, 2, device=device), ref.matmul(x, ref.dequantize(raw, w_type, 6, K)))


@pytest.mark.parametrize("w_type", TYPES)
def test_matmul_rows_do_not_depend_on_batch_or_threads(w_type):
    """Row t of a batched product is bitwise the product of row t alone (decode == prefill)."""
    rng = np.random.default_rng(1)
    raw = random_weight(rng, w_type, 37, 160)
    x = rng.standard_normal((11, 160)).astype(np.float32)
    full = ops.matmul(x, raw, w_type, 37, 1)
    np.testing.assert_array_equal(ops.matmul(x, raw, w_type, 37, 2), full)
    np.testing.assert_array_equal(ops.matmul(x, raw, w_type, 37, 3), full)
    for t in (0, 5, 10):
        np.testing.assert_array_equal(ops.matmul(x[t:t + 1], raw, w_type, 37, 2)[0], full[t])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matmul_multi_equals_separate_products(threads):
    """Outputs of odd sizes and mixed types share one pass over the threads without changing a bit."""
    rng = np.random.default_rng(threads)
    specs = [(ref.Q4_1, 9), (ref.Q8_0, 5), (ref.F16, 1), (ref.Q4_0, 14)]
    weights = [(random_weight(rng, ty, n, 64), ty, n) for ty, n in specs]
    x = rng.standard_normal((6, 64)).astype(np.float32)
    for y, (raw, ty, n) in zip(ops.matmul_multi(x, weights, threads), weights):
        np.testing.assert_array_equal(y, ops.matmul(x, raw, ty, n, 1))
        close(y, ref.matmul(x, ref.dequantize(raw, ty, n, 64)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,C", [(1, 8), (3, 576), (5, 37)])
def test_rmsnorm(T, C, device):
    rng = np.random.default_rng(C)
    x = rng.standard_normal((T, C)).astype(np.float32) * 3
    w = rng.standard_normal(C).astype(np.float32)
    close(ops.rmsnorm(x, w, 1e-5, device=device), ref.rmsnorm(x, w, 1e-5))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,C", [(1, 8), (3, 576), (5, 37)])
def test_layernorm(T, C, device):
    rng = np.random.default_rng(C)
    x = (rng.standard_normal((T, C)) * 3 + 5).astype(np.float32)  # an offset mean: centring matters
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    close(ops.layernorm(x, w, b, 1e-5, device=device), ref.layernorm(x, w, b, 1e-5))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("D,base", [(16, 10000.0), (64, 100000.0), (128, 500000.0)])
@pytest.mark.parametrize("half_layout", [False, True])
def test_rope_table_and_rotation(D, base, half_layout, device):
    inv_freq = ref.rope_inv_freq(base, D)
    cos, sin = ops.rope_table(300, inv_freq)
    rcos, rsin = ref.rope_table(300, inv_freq)
    # The same fp32 angle p * inv_freq on both sides; only the cosine's final rounding may differ (1 ulp).
    assert np.all(np.abs(cos - rcos) <= np.spacing(np.abs(rcos)))
    assert np.all(np.abs(sin - rsin) <= np.spacing(np.abs(rsin)))
    rng = np.random.default_rng(D)
    x = rng.standard_normal((7, 3, D)).astype(np.float32)
    close(ops.rope(x, cos[100:107], sin[100:107], half_layout, device=device),
          ref.rope(x, rcos[100:107], rsin[100:107], half_layout))


def test_rope_layouts_pair_different_elements():
    """The two layouts rotate different pairs: the same input gives different outputs."""
    cos, sin = ops.rope_table(4, ref.rope_inv_freq(10000.0, 16))
    x = np.arange(3 * 16, dtype=np.float32).reshape(1, 3, 16) / 10
    adjacent, half = ops.rope(x, cos[3:], sin[3:], False), ops.rope(x, cos[3:], sin[3:], True)
    assert np.abs(adjacent - half).max() > 0.1


ACTIVATIONS = ["silu", "gelu_tanh", "gelu", "relu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1536 * 3 + 5])
def test_activations_and_add(kind, n, device):
    rng = np.random.default_rng(n)
    g = (rng.standard_normal(n) * 6).astype(np.float32)
    u = rng.standard_normal(n).astype(np.float32)
    # the vector exp has ~2 ulp error, and x / (1 + e) adds two roundings: a few ulp of the output
    np.testing.assert_allclose(ops.activation(g, kind, device=device), ref.activation(g, kind), rtol=RTOL, atol=1e-7)
    gated = (ref.activation(g, kind).astype(np.float64) * u).astype(np.float32)
    np.testing.assert_allclose(ops.activation(g, kind, u, device=device), gated, rtol=RTOL, atol=1e-7)
    np.testing.assert_array_equal(ops.add(g, u, device=device), g + u)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activations_extreme_inputs(kind, device):
    g = np.array([-200, -90, -88, -87.5, -20, 0, 20, 88, 89, 200] * 2, dtype=np.float32)
    out = ops.activation(g, kind, device=device)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref.activation(g, kind), rtol=RTOL, atol=1e-30)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w_type", [ref.F32, ref.F16, ref.BF16, ref.Q8_0, ref.Q4_1, ref.Q4_K, ref.Q6_K])
def test_embedding(w_type, device):
    rng = np.random.default_rng(w_type)
    # 40 blocks of 32: more than a warp has lanes; the float types also end in a partial block
    C = 1260 if w_type in (ref.F32, ref.F16, ref.BF16) else 1280
    raw = ref.random_blocks(rng, w_type, 50, C) if w_type in BLOCK_TYPES else random_weight(rng, w_type, 50, C)
    ids = np.array([0, 49, 7, 7, 3], dtype=np.int32)
    np.testing.assert_array_equal(ops.embedding(ids, raw, w_type, 50, C, device=device),
                                  ref.dequantize(raw, w_type, 50, C)[ids])


ATTENTION_CASES = [  # T, pos0, H, H_kv, D
    (1, 0, 1, 1, 16), (5, 0, 2, 1, 16), (33, 0, 9, 3, 64), (70, 0, 4, 4, 32),
    (13, 20, 4, 2, 64), (3, 61, 8, 2, 128), (100, 31, 2, 2, 80), (37, 6, 4, 1, 256),
    (9, 4, 4, 2, 8), (40, 0, 3, 3, 12), (6, 35, 2, 1, 24),  # head dims off the vector width: the scalar path
    # keys in several 256-key segments, merged; decode splits them over the threads (split-K); groups of
    # 9 and 20 query heads per key/value head (more than the 16 that share one pass)
    (3, 600, 9, 3, 64), (2, 520, 20, 1, 32), (4, 300, 2, 1, 24),
    # CUDA: prefill with one warp per (row, head) doing both segments, decode split over them (split-K)
    (40, 300, 8, 2, 64),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,pos0,H,H_kv,D", ATTENTION_CASES)
def test_attention_prefill_matches_softmax_reference(T, pos0, H, H_kv, D, device):
    rng = np.random.default_rng(T + pos0 + D)
    S = pos0 + T + 5  # cache longer than what is filled
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((H_kv, S, D)).astype(np.float32)
    v = rng.standard_normal((H_kv, S, D)).astype(np.float32)
    close(ops.attention_prefill(q, k, v, pos0, n_threads=2, device=device), ref.attention(q, k, v, pos0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window, pos0", [(1, 9), (5, 9), (16, 9), (300, 500)])
def test_attention_sliding_window(window, pos0, device):
    rng = np.random.default_rng(window)
    T, H, H_kv, D = 23, 4, 2, 32
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((H_kv, pos0 + T, D)).astype(np.float32)
    v = rng.standard_normal((H_kv, pos0 + T, D)).astype(np.float32)
    prefill = ops.attention_prefill(q, k, v, pos0, window, n_threads=2, device=device)
    close(prefill, ref.attention(q, k, v, pos0, window))
    assert np.abs(prefill - ref.attention(q, k, v, pos0)).max() > 1e-3  # the window changes the result
    for t in (0, T - 1):
        decoded = ops.attention_decode(q[t], k, v, pos0 + t + 1, window, n_threads=2, device=device)
        np.testing.assert_array_equal(decoded, prefill[t])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,pos0,H,H_kv,D", ATTENTION_CASES)
def test_attention_decode_equals_prefill_rows(T, pos0, H, H_kv, D, device):
    rng = np.random.default_rng(T * 7 + D)
    S = pos0 + T
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((H_kv, S, D)).astype(np.float32)
    v = rng.standard_normal((H_kv, S, D)).astype(np.float32)
    prefill = ops.attention_prefill(q, k, v, pos0, n_threads=2, device=device)
    for t in {0, T // 2, T - 1}:
        np.testing.assert_array_equal(ops.attention_decode(q[t], k, v, pos0 + t + 1, n_threads=2, device=device), prefill[t])
    np.testing.assert_array_equal(ops.attention_prefill(q, k, v, pos0, n_threads=1, device=device), prefill)


@pytest.mark.parametrize("D", [16, 64, 256])
def test_attention_head_alone_equals_head_in_a_group(D):
    # Query heads of a GQA group go through the kernel two at a time and a head left over alone: a head's
    # output must not depend on which heads share its pass (the claim of attend_segment), bit for bit.
    rng = np.random.default_rng(D)
    T, H = 37, 5
    q = rng.standard_normal((T, H, D)).astype(np.float32)
    k = rng.standard_normal((1, T, D)).astype(np.float32)
    v = rng.standard_normal((1, T, D)).astype(np.float32)
    together = ops.attention_prefill(q, k, v, 0, n_threads=1)
    for h in range(H):
        np.testing.assert_array_equal(ops.attention_prefill(q[:, h:h + 1], k, v, 0, n_threads=1)[:, 0], together[:, h])


@pytest.mark.parametrize("device", DEVICES)
def test_attention_large_scores_stay_finite(device):
    rng = np.random.default_rng(3)
    q = (rng.standard_normal((40, 2, 32)) * 30).astype(np.float32)
    k = (rng.standard_normal((1, 40, 32)) * 30).astype(np.float32)
    v = rng.standard_normal((1, 40, 32)).astype(np.float32)
    out = ops.attention_prefill(q, k, v, 0, n_threads=2, device=device)
    assert np.all(np.isfinite(out))
    close(out, ref.attention(q, k, v), rtol=1e-4)  # scores ~1e4: fp32 rounding of the scores is ~1e-3 absolute


def test_argmax_takes_first_maximum():
    logits = np.array([0.0, 3.0, 1.0, 3.0], dtype=np.float32)
    assert ops.sample(logits, 0.0, 0, 1.0, 0.5) == 1


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (1, 1.0), (5, 1.0), (0, 0.5), (0, 0.9), (10, 0.8), (0, 1e-6)])
def test_sampling_stays_in_allowed_set(top_k, top_p):
    rng = np.random.default_rng(top_k + int(top_p * 100))
    logits = (rng.standard_normal(1000) * 3).astype(np.float32)
    allowed = ref.allowed_tokens(logits, 0.7, top_k, top_p)
    seen = {ops.sample(logits, 0.7, top_k, top_p, u) for u in np.linspace(0, 1, 400, endpoint=False)}
    assert seen <= allowed
    if top_k == 1 or top_p == 1e-6:
        assert seen == {int(np.argmax(logits))}


def test_sampling_follows_the_distribution():
    """Draws on an even grid of u reproduce the softmax probabilities (inverse CDF)."""
    logits = np.log(np.array([0.5, 0.25, 0.125, 0.125], dtype=np.float32))
    us = (np.arange(8000) + 0.5) / 8000
    counts = np.bincount([ops.sample(logits, 1.0, 0, 1.0, u) for u in us], minlength=4) / len(us)
    np.testing.assert_allclose(counts, [0.5, 0.25, 0.125, 0.125], atol=1e-3)
    # temperature 2 flattens: p ~ sqrt(p)
    flat = np.sqrt([0.5, 0.25, 0.125, 0.125])
    counts = np.bincount([ops.sample(logits, 2.0, 0, 1.0, u) for u in us], minlength=4) / len(us)
    np.testing.assert_allclose(counts, flat / flat.sum(), atol=1e-3)


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1),
                                 dict(temperature=float("nan"))])
def test_sampling_rejects_bad_parameters(bad):
    args = dict(temperature=1.0, top_k=0, top_p=1.0, u=0.5) | bad
    with pytest.raises(ValueError):
        ops.sample(np.zeros(10, dtype=np.float32), **args)


def test_ops_reject_bad_shapes():
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="bytes"):
        ops.matmul(x, np.zeros(10, dtype=np.uint8), ref.Q4_1, 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        ops.matmul(np.zeros((2, 40), dtype=np.float32), np.zeros(100, dtype=np.uint8), ref.Q8_0, 2)
    with pytest.raises(ValueError, match="unsupported weight type"):
        ops.matmul(x, np.zeros(64, dtype=np.uint8), 10, 1)  # Q2_K
    with pytest.raises(ValueError, match="head dim"):
        ops.attention_prefill(np.zeros((2, 2, 264), np.float32), np.zeros((1, 2, 264), np.float32),
                              np.zeros((1, 2, 264), np.float32))
    with pytest.raises(ValueError, match="multiple"):
        ops.attention_prefill(np.zeros((2, 3, 16), np.float32), np.zeros((2, 2, 16), np.float32),
                              np.zeros((2, 2, 16), np.float32))
    with pytest.raises(ValueError, match="outside"):
        ops.embedding(np.array([50], np.int32), np.zeros(50 * 34 * 2, np.uint8), ref.Q8_0, 50, 64)


# ---- int8 compute: quantized activations x packed weights ----------------------------------------------
def test_quantize_activations_matches_reference():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7, 96)) * rng.uniform(0.01, 10, (7, 1))).astype(np.float32)
    x[3, 32:64] = 0.0  # an all-zero block: scale 0, codes 0
    x[5, 0:32] = np.concatenate([[127.0], np.arange(31) - 14.5])  # 127 / max|x| = 1: every other code a tie,
    # -14.5 .. 15.5, which both sides must round to even (as np.rint does), whatever the ISA
    for ours, theirs in zip(ops.quantize_activations(x), ref.quantize_activations(x)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("w_type", [ref.Q4_0, ref.Q4_1, ref.Q5_0, ref.Q8_0])
@pytest.mark.parametrize("T,K,N", [(1, 32, 1), (1, 64, 17), (5, 576, 37), (9, 96, 16), (70, 128, 33)])
def test_matmul_int8_matches_reference(w_type, T, K, N):
    """The integer path equals the float64 product of the dequantized int8 activations and weights;
    the fp32 sums of its block terms round at ~1e-7, inside the usual 1e-5 bound."""
    rng = np.random.default_rng(T + K + N + w_type)
    raw = ref.random_blocks(rng, w_type, N, K) if w_type == ref.Q5_0 else random_weight(rng, w_type, N, K)
    x = rng.standard_normal((T, K)).astype(np.float32)
    packed = ops.pack_weight(raw, w_type, N, K)
    expected = ref.matmul_int8(x, ref.dequantize(raw, w_type, N, K))
    close(ops.matmul_int8(x, packed, w_type, N, 2), expected)


@pytest.mark.parametrize("w_type", [ref.Q4_K, ref.Q5_K])
@pytest.mark.parametrize("T,K,N", [(1, 256, 17), (5, 512, 37), (9, 256, 16)])
def test_matmul_int8_k_quants_match_reference(w_type, T, K, N):
    """Q4_K and Q5_K are packed with their per-32 scale d * sc and offset dmin * m rounded to f16
    (reference.packed_weights); from there the sums are as exact as the other types', inside 1e-5. The
    rounding itself moves each weight by up to 2^-11 relative (f16 has 11 significant bits), far outside
    1e-5, so a packing that rounded differently (or not at all) fails here."""
    rng = np.random.default_rng(T + K + N + w_type)
    raw = ref.random_blocks(rng, w_type, N, K)
    x = rng.standard_normal((T, K)).astype(np.float32)
    ours = ops.matmul_int8(x, ops.pack_weight(raw, w_type, N, K), w_type, N, 2)
    close(ours, ref.matmul_int8(x, ref.packed_weights(raw, w_type, N, K)))
    unrounded = ref.matmul_int8(x, ref.dequantize(raw, w_type, N, K))
    assert np.abs(ours - unrounded).max() > 1e-5 * np.abs(unrounded).max()  # the rounding is visible


@pytest.mark.parametrize("T,K,N", [(1, 256, 17), (5, 512, 37), (9, 256, 16)])
def test_matmul_int8_q6_k_matches_reference(T, K, N):
    """Q6_K's packing is exact (d and the int8 scale per 16 weights as stored, w = d sc (u - 32) taken into
    the integer sum), so the int8 product is the float64 product of the dequantized weights and the int8
    activations, inside the usual 1e-5."""
    rng = np.random.default_rng(T + K + N)
    raw = ref.random_blocks(rng, ref.Q6_K, N, K)
    x = rng.standard_normal((T, K)).astype(np.float32)
    close(ops.matmul_int8(x, ops.pack_weight(raw, ref.Q6_K, N, K), ref.Q6_K, N, 2),
          ref.matmul_int8(x, ref.dequantize(raw, ref.Q6_K, N, K)))


def test_matmul_int8_q6_k_largest_codes_and_scales():
    """The extremes of Q6_K's integer path: every code 63 (u - 32 = 31) or 0 (-32), scales +127 and -128,
    activations at +-127. AVX2 adds 2 groups' vpmaddubsw in 16 bits (2 * 2 * 63 * 127 = 32004 < 32767) and
    multiplies each sub-block's 32-bit sum by its scale (|a| <= 2 * 128 * 16 * 32 * 127 ~ 1.7e7 < 2^31); an
    overflow or saturation anywhere would miss the reference by far more than 1e-5."""
    N, K = 19, 256
    blocks = np.zeros((N * K // 256, 210), dtype=np.uint8)
    blocks[0::2, 0:192] = 0xFF  # ql, qh: every code 63 in even blocks, 0 in odd ones
    blocks[:, 192:208] = np.where(np.arange(16) % 2, 0x80, 0x7F)  # scales +127, -128 alternately
    blocks[:, 208:210] = np.array([0.01], dtype=np.float16).view(np.uint8)  # d
    raw = blocks.reshape(-1)
    x = np.where(np.arange(K) % 3, 5.0, -5.0).astype(np.float32)[None].repeat(3, axis=0)
    x[1] = 5.0
    x[2] = -5.0
    close(ops.matmul_int8(x, ops.pack_weight(raw, ref.Q6_K, N, K), ref.Q6_K, N, 1),
          ref.matmul_int8(x, ref.dequantize(raw, ref.Q6_K, N, K)))


def test_pack_weight_refuses_k_quant_scales_past_f16():
    """d * sc of a Q4_K sub-block above 65504 has no f16 form: an Error, not infinities in the packed
    weights (a model load says the same and names compute_type 'float32')."""
    raw = ref.random_blocks(np.random.default_rng(0), ref.Q4_K, 16, 256).reshape(16, 144)
    raw[3, 0:2] = np.array([60000.0], dtype=np.float16).view(np.uint8)  # d
    raw[3, 4] = 63                                                      # sc of sub-block 0
    with pytest.raises(nextoken.Error, match="too large"):
        ops.pack_weight(raw.reshape(-1), ref.Q4_K, 16, 256)


@pytest.mark.parametrize("w_type", [ref.Q4_1, ref.Q8_0])
def test_matmul_int8_rows_do_not_depend_on_batch_or_threads(w_type):
    rng = np.random.default_rng(2)
    raw = random_weight(rng, w_type, 45, 160)
    packed = ops.pack_weight(raw, w_type, 45, 160)
    x = rng.standard_normal((11, 160)).astype(np.float32)
    full = ops.matmul_int8(x, packed, w_type, 45, 1)
    np.testing.assert_array_equal(ops.matmul_int8(x, packed, w_type, 45, 3), full)
    for t in (0, 6, 10):
        np.testing.assert_array_equal(ops.matmul_int8(x[t:t + 1], packed, w_type, 45, 2)[0], full[t])


@pytest.mark.parametrize("w_type", [ref.Q4_0, ref.Q4_1, ref.Q5_0, ref.Q8_0])
def test_matmul_int8_largest_codes_do_not_saturate(w_type):
    """The largest integer sums the SIMD paths can meet: every weight code at its top (15, 31, or 255 and 0
    for 8-bit codes) against activations at +-127. The AVX2 path adds vpmaddubsw results in 16 bits: a
    block's 8 for 4-bit codes (8 * 2 * 15 * 127 = 30480 < 32767), 4 at a time for 5-bit codes (4 * 2 * 31
    * 127 = 31496; 8 would overflow); a saturating or overflowing step would show here as a wrong sum, far
    outside the 1e-5 bound."""
    N, K = 19, 128
    nbytes = ref.BLOCK_BYTES.get(w_type) or ref.OTHER_BLOCKS[w_type][1]
    blocks = np.zeros((N * K // 32, nbytes), dtype=np.uint8)
    scales = np.full(len(blocks), 0.01, dtype=np.float16).view(np.uint8).reshape(-1, 2)
    blocks[:, 0:2] = scales
    if w_type == ref.Q4_1:
        blocks[:, 2:4] = scales  # m
        blocks[:, 4:] = 0xFF     # every code 15
    elif w_type in (ref.Q4_0, ref.Q5_0):
        blocks[:, 2:] = 0xFF     # every code 15 (Q5_0: qh and qs, every code 31)
    else:
        blocks[:, 2:] = np.where(np.arange(nbytes - 2) % 2, 0x7F, 0x80)  # codes +127 and -128 (u = 255 and 0)
    raw = blocks.reshape(-1)
    x = np.where(np.arange(K) % 3, 5.0, -5.0).astype(np.float32)[None].repeat(3, axis=0)
    x[1] = 5.0   # every activation code +127
    x[2] = -5.0  # every activation code -127
    packed = ops.pack_weight(raw, w_type, N, K)
    close(ops.matmul_int8(x, packed, w_type, N, 1), ref.matmul_int8(x, ref.dequantize(raw, w_type, N, K)))


@pytest.mark.parametrize("w_type,packed_bytes_per_weight", [(ref.Q4_0, 18 / 32), (ref.Q4_1, 20 / 32), (ref.Q5_0, 22 / 32),
                                                             (ref.Q8_0, 34 / 32), (ref.Q4_K, 20 / 32), (ref.Q5_K, 24 / 32),
                                                             (ref.Q6_K, 28 / 32)])
def test_packed_weights_are_no_larger_than_the_files_blocks(w_type, packed_bytes_per_weight):
    """Decode reads every packed byte once per token, so the layout's size is its speed: the 32-weight types
    pack into exactly their file size (the offset m stored only for Q4_1, 5-bit codes as 4 bits plus a bit
    plane); the K-quants spend more on their scales, one f16 scale and offset per 32 weights (4.5 -> 5 and
    5.5 -> 6 bits per weight) or, for Q6_K, an f16 d per 32 weights beside the int8 scales (6.5625 -> 7)."""
    rng = np.random.default_rng(1)
    N, K = 32, 256
    raw = ref.random_blocks(rng, w_type, N, K) if w_type in ref.OTHER_BLOCKS else random_weight(rng, w_type, N, K)
    assert ops.pack_weight(raw, w_type, N, K).nbytes == N * K * packed_bytes_per_weight


def test_matmul_int8_error_against_fp32_is_the_quantization_error():
    """Rounding x to 255 levels per 32 values costs |dx/2| per element: the product's relative error
    is about 1/(127 sqrt(12)) ~ 0.2% of the typical magnitude, far from fp32 rounding and far below 1%."""
    rng = np.random.default_rng(9)
    raw = random_weight(rng, ref.Q4_1, 64, 576)
    x = rng.standard_normal((8, 576)).astype(np.float32)
    exact = ref.matmul(x, ref.dequantize(raw, ref.Q4_1, 64, 576))
    ours = ops.matmul_int8(x, ops.pack_weight(raw, ref.Q4_1, 64, 576), ref.Q4_1, 64)
    rel_rms = np.sqrt(np.mean((ours - exact) ** 2) / np.mean(exact ** 2))
    assert 1e-4 < rel_rms < 1e-2


def test_int8_matmul_gives_the_same_bits_on_every_isa():
    """The integer sums are exact and the float steps identical, so the AVX2 and baseline variants must
    reproduce this CPU's result bit for bit (each runs in a subprocess with NEXTOKEN_ISA forced)."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np, sys; from nextoken import ops, reference as ref\n"
            "rng = np.random.default_rng(0)\n"
            "for ty, K in ((ref.Q4_0, 96), (ref.Q4_1, 96), (ref.Q8_0, 96), (ref.Q5_0, 96), (ref.Q4_K, 256), (ref.Q5_K, 256),\n"
            "              (ref.Q6_K, 256)):\n"
            "    raw = ref.random_blocks(rng, ty, 37, K) if ty in ref.OTHER_BLOCKS else "
            "ref.quantize(rng.standard_normal((37, K)).astype(np.float32), ty)\n"
            "    x = rng.standard_normal((5, K)).astype(np.float32)\n"
            "    sys.stdout.buffer.write(ops.matmul_int8(x, ops.pack_weight(raw, ty, 37, K), ty, 37, 2).tobytes())\n")
    outputs = {}
    for isa in ("native", "avx2", "generic"):
        env = dict(os.environ)
        if isa != "native":
            env["NEXTOKEN_ISA"] = isa
        outputs[isa] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True).stdout
    assert outputs["avx2"] == outputs["native"] and outputs["generic"] == outputs["native"]


# ---- Q5_0 and the K-quants (GGUF files such as Gemma 3 Q4_K_M) -------------------------------------------
BLOCK_TYPES = [ref.Q5_0, ref.Q4_K, ref.Q5_K, ref.Q6_K]


@pytest.mark.parametrize("w_type", BLOCK_TYPES)
def test_block_types_dequantize_as_gguf_does(w_type):
    """Ours and the reference against llama.cpp's own Python decoder (gguf.quants), bit for bit."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize
    rng = np.random.default_rng(w_type)
    rows, cols = 3, 768
    raw = ref.random_blocks(rng, w_type, rows, cols)
    theirs = gguf_dequantize(raw.reshape(rows, -1), GGMLQuantizationType(w_type)).reshape(rows, cols)
    np.testing.assert_array_equal(ref.dequantize(raw, w_type, rows, cols), theirs)
    np.testing.assert_array_equal(ops.dequantize(raw, w_type, rows, cols), theirs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w_type", BLOCK_TYPES)
@pytest.mark.parametrize("T,N", [(1, 7), (5, 33), (9, 16)])
def test_block_types_matmul_matches_dequantize_then_fp32(w_type, T, N, device):
    rng = np.random.default_rng(T * N + w_type)
    K = 512
    raw = ref.random_blocks(rng, w_type, N, K)
    x = rng.standard_normal((T, K)).astype(np.float32)
    y = ops.matmul(x, raw, w_type, N, 2, device=device)
    close(y, ref.matmul(x, ref.dequantize(raw, w_type, N, K)))
    # decode row == prefill row
    np.testing.assert_array_equal(ops.matmul(x[-1:], raw, w_type, N, 1, device=device), y[-1:])


@pytest.mark.parametrize("w_type", BLOCK_TYPES)
def test_block_types_rows_do_not_depend_on_batch_or_threads(w_type):
    """These types go in tiles of 8 tokens x 1 row on AVX2 (then 2, then 1): row t of an 11-token product
    is bitwise the product of row t alone, whichever tile it fell in (decode == prefill)."""
    rng = np.random.default_rng(4)
    raw = ref.random_blocks(rng, w_type, 19, 256)
    x = rng.standard_normal((11, 256)).astype(np.float32)
    full = ops.matmul(x, raw, w_type, 19, 1)
    np.testing.assert_array_equal(ops.matmul(x, raw, w_type, 19, 3), full)
    for t in (0, 7, 8, 10):
        np.testing.assert_array_equal(ops.matmul(x[t:t + 1], raw, w_type, 19, 2)[0], full[t])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("w_type", [ref.F16, ref.BF16, ref.Q4_0, ref.Q4_1, ref.Q8_0] + BLOCK_TYPES)
def test_matmul_decodes_every_weight_exactly(w_type, device):
    """x = identity makes y = W^T with one non-zero product per sum: the matmul's own weight decoding
    (vectorised per ISA) must give the reference dequantization bit for bit. K = 512: two K-quant
    superblocks, whose 8 blocks the kernel goes through in an unrolled loop per superblock."""
    rng = np.random.default_rng(w_type)
    K, N = 512, 5
    raw = ref.random_blocks(rng, w_type, N, K) if w_type in BLOCK_TYPES else random_weight(rng, w_type, N, K)
    y = ops.matmul(np.eye(K, dtype=np.float32), raw, w_type, N, 2, device=device)
    np.testing.assert_array_equal(y.T, ref.dequantize(raw, w_type, N, K))


def test_device_argument_is_checked():
    """A device other than cpu / cuda, or cuda where this build or machine has none, is a clear Error."""
    x, w = np.ones((2, 32), np.float32), np.ones(32, np.float32)
    with pytest.raises(nextoken.Error, match="device must be 'cpu' or 'cuda'"):
        ops.rmsnorm(x, w, 1e-5, device="gpu")
    if not nextoken.cuda_devices():
        raw = ref.quantize(np.ones((3, 32), np.float32), ref.Q8_0)
        with pytest.raises(nextoken.Error, match="device='cuda'"):
            ops.matmul(x, raw, ref.Q8_0, 3, device="cuda")
