"""Per-kernel speed at the model's real shapes, as a fraction of what this machine can do.

    python benchmarks/bench_kernels.py [--threads 2] [--repeats 7] [--quick]

The machine is measured first: read bandwidth (every thread summing its share of a 1 GiB array with
numpy, which releases the GIL) and fp32 matmul throughput (numpy's BLAS, a 2048^3 product). Then per
kernel: median microseconds over the repeats, and GB/s (weights or KV cache read: what bounds
decode) or GFLOP/s (what bounds prefill), with the fraction of the machine figure.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

import nextoken
from nextoken import ops
from nextoken import reference as ref

TYPES = {"Q4_1": ref.Q4_1, "Q4_0": ref.Q4_0, "Q8_0": ref.Q8_0, "F16": ref.F16, "F32": ref.F32}
SHAPES = [  # name, K (in), N (out)
    ("smollm2 q/o 576x576", 576, 576),
    ("smollm2 gate/up 576->1536", 576, 1536),
    ("smollm2 down 1536->576", 1536, 576),
    ("smollm2 lm_head 576->49152", 576, 49152),
    ("llama3-8b up 4096->14336", 4096, 14336),
    ("llama3-8b down 14336->4096", 14336, 4096),
]


def timeit(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine_bandwidth(threads, repeats):
    data = np.ones(1 << 28, dtype=np.float32)  # 1 GiB
    parts = np.array_split(data, threads)

    def run():
        ts = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return data.nbytes / timeit(run, repeats) / 1e9


def machine_gflops(repeats):
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    return 2 * 2048 ** 3 / timeit(lambda: a @ a, repeats) / 1e9


def random_weight(w_type, rows, cols, rng):
    """Valid GGUF bytes without the cost of quantizing: random quants, small random scales."""
    if w_type in (ref.F32, ref.F16):
        return ref.quantize(rng.standard_normal((rows, cols), dtype=np.float32), w_type)
    size = ref.BLOCK_BYTES[w_type]
    blocks = rng.integers(0, 256, (rows * cols // 32, size), dtype=np.uint8)
    n_halves = 2 if w_type == ref.Q4_1 else 1
    scales = (rng.random((len(blocks), n_halves), dtype=np.float32) * 0.01).astype(np.float16)
    blocks[:, :2 * n_halves] = scales.view(np.uint8)
    return blocks.reshape(-1)


def weight_copies(w_type, N, K, rng, total=128 << 20):
    """Copies of a random (N, K) weight, as many as make `total` bytes (at least 1, at most 512)."""
    one = random_weight(w_type, N, K, rng)
    n = int(min(512, max(1, total // one.nbytes)))
    tall = random_weight(w_type, N * n, K, rng) if n > 1 else one
    return [tall[i * one.nbytes:(i + 1) * one.nbytes] for i in range(n)]


def cycling(fn, items):
    """A no-argument function that calls fn on the next item each time."""
    state = {"i": 0}

    def call():
        fn(items[state["i"] % len(items)])
        state["i"] += 1
    return call


def figures(nbytes, gemv_s, gemm_flops, gemm_s, bw, peak):
    return [f"{gemv_s * 1e6:.0f}", f"{nbytes / gemv_s / 1e9:.1f}", f"{nbytes / gemv_s / 1e9 / bw:.0%}",
            f"{gemm_s * 1e6:.0f}", f"{gemm_flops / gemm_s / 1e9:.0f}", f"{gemm_flops / gemm_s / 1e9 / peak:.0%}"]


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths]] + rows:
        print(" | ".join(str(x).rjust(w) for x, w in zip(row, widths)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="SmolLM2 shapes and short sequences only")
    args = ap.parse_args()
    nt, rng = args.threads, np.random.default_rng(0)

    bw = machine_bandwidth(nt, args.repeats)
    peak = machine_gflops(args.repeats)
    print(f"nextoken ISA: {nextoken.cpu_isa()} | {nt} threads | machine: {bw:.1f} GB/s read, "
          f"{peak:.0f} GFLOP/s fp32 (numpy BLAS)")

    rows = []
    shapes = [s for s in SHAPES if not (args.quick and s[0].startswith("llama3"))]
    for type_name, w_type in TYPES.items():
        for name, K, N in shapes:
            # GEMV reads a different copy of the weight each call, 128 MiB in all, so that small
            # matrices are read from memory as in a real decode step, not from the cache.
            copies = weight_copies(w_type, N, K, rng)
            x1 = rng.standard_normal((1, K), dtype=np.float32)
            x128 = rng.standard_normal((128, K), dtype=np.float32)
            gemv = timeit(cycling(lambda w: ops.matmul(x1, w, w_type, N, nt), copies), args.repeats * len(copies))
            gemm = timeit(lambda: ops.matmul(x128, copies[0], w_type, N, nt), max(3, args.repeats // 2))
            row = [type_name, name] + figures(copies[0].nbytes, gemv, 2 * 128 * K * N, gemm, bw, peak)
            if w_type in (ref.Q4_0, ref.Q4_1, ref.Q8_0):
                packed = [ops.pack_weight(w, w_type, N, K) for w in copies]
                gemv8 = timeit(cycling(lambda w: ops.matmul_int8(x1, w, w_type, N, nt), packed), args.repeats * len(packed))
                gemm8 = timeit(lambda: ops.matmul_int8(x128, packed[0], w_type, N, nt), max(3, args.repeats // 2))
                row += figures(packed[0].nbytes, gemv8, 2 * 128 * K * N, gemm8, bw, peak)
            else:
                row += ["-"] * 6
            rows.append(row)
    table("matmul: GEMV (T=1, decode) and GEMM (T=128, prefill); compute_type float32, then int8 (weights packed, "
          "activations quantized in the call)",
          ["type", "shape", "GEMV us", "GB/s", "of bw", "GEMM us", "GFLOP/s", "of peak",
           "int8 GEMV us", "GB/s", "of bw", "int8 GEMM us", "GOP/s", "of fp32 peak"], rows)

    H, H_kv, D = 9, 3, 64  # SmolLM2's attention
    rows = []
    for T in ([128, 512] if args.quick else [128, 512, 1024, 2048, 4096]):
        q = rng.standard_normal((T, H, D), dtype=np.float32)
        k = rng.standard_normal((H_kv, T, D), dtype=np.float32)
        v = rng.standard_normal((H_kv, T, D), dtype=np.float32)
        s = timeit(lambda: ops.attention_prefill(q, k, v, 0, n_threads=nt), max(3, args.repeats // 2))
        flops = 4 * H * D * T * (T + 1) / 2  # q.k and p.v over the causal half
        rows.append([T, f"{s * 1e6:.0f}", f"{flops / s / 1e9:.1f}", f"{flops / s / 1e9 / peak:.0%}"])
    table(f"attention_prefill (H={H}, H_kv={H_kv}, D={D})", ["T", "us", "GFLOP/s", "of peak"], rows)

    rows = []
    for n in ([128, 2048] if args.quick else [128, 512, 2048, 8192]):
        q = rng.standard_normal((H, D), dtype=np.float32)
        k = rng.standard_normal((H_kv, n, D), dtype=np.float32)
        v = rng.standard_normal((H_kv, n, D), dtype=np.float32)
        s = timeit(lambda: ops.attention_decode(q, k, v, n, n_threads=nt), args.repeats)
        nbytes = k.nbytes + v.nbytes
        rows.append([n, f"{s * 1e6:.1f}", f"{nbytes / s / 1e9:.1f}", f"{nbytes / s / 1e9 / bw:.0%}"])
    table(f"attention_decode (H={H}, H_kv={H_kv}, D={D})", ["cache length", "us", "GB/s", "of bw"], rows)


if __name__ == "__main__":
    main()
