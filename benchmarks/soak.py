"""Soak test: long runs must not leak. Generates a large number of tokens through every API path on one
loaded model, then loads and frees a model many times, sampling the resident memory (VmRSS, RssAnon,
VmHWM from /proc/self/status) as it goes. Not part of pytest: it runs for minutes to an hour.

    python benchmarks/soak.py [--model smollm2] [--tokens 100000] [--loads 100] [--n-ctx 256]
                              [--compute-type int8] [--kv-cache f32] [--threads 2] [--every 2000] [--quick]
    python benchmarks/soak.py --model tiny --tokens 1000000

--model takes a name, a .gguf path, or `tiny`: a tiny random Llama written by tests/conftest.py
write_tiny_llama (same code paths, thousands of tok/s on two cores, so a million tokens take minutes
where SmolLM2 int8 needs hours). --quick: 20k tokens and 20 loads, a smoke run.

Phases, each with its own RSS samples so that a leak names its path:
  stream   one stream(max_new_tokens=None, context_shift=True, repetition_penalty=1.1) running for 40% of the
           tokens (hundreds of context shifts), sampled every --every tokens
  generate restarts: generate() calls of 16, 64 and 3 x n_ctx tokens (context_shift), text and id prompts
  batch    generate() on lists of 4 prompts (sampling, logprobs every other call)
  step     add_sequence x 4, step() for 1.5 x n_ctx steps, fork_sequence half-way, free_sequence all
  load     load(), 64 tokens, del + gc.collect(), --loads times
For each: VmRSS and RssAnon at start and end, peak (VmHWM, for the whole process so far), and the
least-squares slope of RssAnon over the second half of the samples (the first half is warm-up: allocator
arenas, the retained prefix cache, Python caches), "flat" when below the thresholds argued at
TOKEN_THRESHOLD / LOAD_THRESHOLD. The slope is of RssAnon, not VmRSS: a leak is anonymous memory, while
VmRSS also counts pages of the memory-mapped weights, which come and go with the page cache (a neighbour's
memory pressure once evicted them mid-run here, a VmRSS "slope" of -136 MiB per 100k tokens).

--model also takes a Hugging Face folder. Its text goes through the `tokenizers` library, whose BPE cache keeps
up to 10,000 words: the generate phase's prompts ("... {i}", a new word each) fill it, +2.7 MiB over 1.2M
tokens of tests/fixtures/hf/llama (tokenize() alone on 40,000 such prompts: +3.3 MiB up to the 10,000th, then
+0), a bounded cache, not a leak.

An endless stream keeps only the tokens still in its context (a context shift drops the others from the
sequence too; before that, "stream" grew by 4 bytes per token): +0.0 KiB per 100k tokens over 400k.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import nextoken

# ---- thresholds ---------------------------------------------------------------------------------------
# Generation: 256 KiB per 100k tokens, i.e. ~2.6 bytes per token: under one int32 per token, the least a
# sequence can keep per generated token, so even a token id retained per step shows. Anything leaked once per
# call is far bigger: a KV cache is 128 KiB (tiny model, n_ctx 256) to 11.25 MiB (SmolLM2, n_ctx 256, f32;
# the threshold is 1/45 of it), and the phases make hundreds of calls per 100k tokens. Noise: phases that
# keep nothing measure within +-20 KiB per 100k over a 1M-token run; short runs (--quick) extrapolate single
# allocator steps and can cross it.
TOKEN_THRESHOLD = 256  # KiB per 100k tokens
# Loads: 64 KiB per load. A leaked model keeps its tokenizer, workspace, KV cache pages written and weights
# (file pages, or the repacked int8 copy): measured by holding 10 models after 64 tokens each, ~0.9 MiB
# per tiny model and ~116 MiB per SmolLM2 int8 one. 64 KiB is 1/15 of the smallest; above the noise of
# Python's 1 MiB arenas spread over the 50 loads of the second half.
LOAD_THRESHOLD = 64  # KiB per load

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "In a small village",
           "Water boils at", "The quick brown fox"]


def memory() -> dict:
    """VmRSS, VmHWM and RssAnon of this process in KiB."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM", "RssAnon")}


def trimmed() -> str:
    """RssAnon before and after glibc's malloc_trim(0), which returns freed heap memory to the system: what
    it drops was not leaked, only kept by the allocator (e.g. the peak of KV caches alive at once)."""
    before = memory()["RssAnon"]
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except AttributeError:  # not glibc
        return "malloc_trim: not available"
    return f"RssAnon {before / 1024:.1f} -> {memory()['RssAnon'] / 1024:.1f} MiB after malloc_trim(0)"


# ---- the workloads: generators yielding the tokens each piece of work made ------------------------------
def one_stream(model, n_ctx):
    ids = model.tokenize(PROMPTS[0])
    for _ in model.stream(ids, max_new_tokens=None, min_new_tokens=10**9, context_shift=True, temperature=0.8,
                          repetition_penalty=1.1, seed=0):
        yield 1


def restarts(model, n_ctx):
    for i in itertools.count():
        n = (16, 64, 3 * n_ctx)[i % 3]
        prompt = f"{PROMPTS[i % len(PROMPTS)]} {i}"
        model.generate(prompt if i % 2 else model.tokenize(prompt), max_new_tokens=n, min_new_tokens=n,
                       context_shift=True, temperature=0.8, top_p=0.9, seed=i)
        yield n


def batches(model, n_ctx):
    for i in itertools.count():
        n = (64, 2 * n_ctx)[i % 2]
        prompts = [model.tokenize(f"{p} {i}") for p in PROMPTS[:4]]
        model.generate(prompts, max_new_tokens=n, min_new_tokens=n, context_shift=True, temperature=0.8, seed=i,
                       logprobs=2 if i % 2 else None)
        yield 4 * n


def steps(model, n_ctx):
    """One yield per round, after its sequences are freed, like the other phases' per call: sampled
    mid-round, memory would rise and fall with the round's caches (freed caches go back to the system)."""
    for i in itertools.count():
        seqs = [model.add_sequence(model.tokenize(f"{p} {i}"), max_new_tokens=None, min_new_tokens=10**9,
                                   context_shift=True, temperature=0.8, seed=i) for p in PROMPTS[:4]]
        n_steps = 3 * n_ctx // 2
        tokens = 0
        try:
            for k in range(n_steps):
                if k == n_steps // 2:
                    seqs.append(model.fork_sequence(seqs[0], seed=i + 1))
                tokens += len(model.step())
        finally:
            for s in seqs:
                model.free_sequence(s)
        yield tokens


def loads(path, args, n):
    for _ in range(n):
        model = nextoken.load(path, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type,
                              kv_cache=args.kv_cache)
        model.generate(model.tokenize(PROMPTS[1]), max_new_tokens=64, min_new_tokens=64)
        del model
        gc.collect()
        yield 1


# ---- measuring ------------------------------------------------------------------------------------------
def soak(name, work, budget, every, unit):
    """Runs `work` until it has made `budget` units; memory() samples every `every` units; the slope of
    RssAnon over the second half of them, per `unit` units. The last sample, taken after the work has
    ended (its sequences freed: the stream's whole KV cache), is the end figure, not part of the fit."""
    gc.collect()
    samples, start, next_at, done = [(0, memory())], time.perf_counter(), every, 0
    for n in work:
        done += n
        if done >= next_at or done >= budget:
            samples.append((done, memory()))
            next_at = done + every
        if done >= budget:
            break
    seconds = time.perf_counter() - start
    fit = samples[len(samples) // 2:]
    x = np.array([units for units, _ in fit], dtype=np.float64)
    y = np.array([m["RssAnon"] for _, m in fit], dtype=np.float64)
    slope = np.polyfit(x, y, 1)[0] * unit if len(x) > 2 and np.ptp(x) > 0 else float("nan")
    work.close()  # an unfinished stream / generate ends here: its sequence is freed
    gc.collect()
    samples.append((done, memory()))
    first, last = samples[0][1], samples[-1][1]
    row = dict(phase=name, units=done, rss0=first["VmRSS"], rss1=last["VmRSS"], anon0=first["RssAnon"],
               anon1=last["RssAnon"], hwm=last["VmHWM"], slope=slope, seconds=seconds, samples=samples)
    print(f"  {name}: {done} in {seconds:.0f} s, VmRSS {row['rss0'] / 1024:.1f} -> {row['rss1'] / 1024:.1f} MiB, "
          f"RssAnon {row['anon0'] / 1024:.1f} -> {row['anon1'] / 1024:.1f} MiB, slope {slope:+.1f} KiB per "
          f"{'100k tokens' if unit > 1 else 'load'}", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="a name, a .gguf path, or 'tiny' (a random tiny Llama)")
    ap.add_argument("--tokens", type=int, default=100_000, help="tokens generated in all (split over the phases)")
    ap.add_argument("--loads", type=int, default=100)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--kv-cache", default="f32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--every", type=int, default=None, help="tokens between RSS samples (default: tokens / 200)")
    ap.add_argument("--quick", action="store_true", help="20k tokens, 20 loads")
    ap.add_argument("--json", default="benchmarks/results/soak.json", help="every sample, for plotting")
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.loads = 20_000, 20
    every = args.every or max(1, args.tokens // 200)

    # the prompts are plain text on purpose: the soak is about memory, not answers
    warnings.filterwarnings("ignore", message="this model has a chat template")
    tmp = tempfile.TemporaryDirectory()
    if args.model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import write_tiny_llama
        path = Path(tmp.name) / "tiny-llama.gguf"
        write_tiny_llama(path)
    else:
        path = nextoken.hub.resolve(args.model)
    model = nextoken.load(path, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type,
                          kv_cache=args.kv_cache)
    print(f"{args.model} ({path.name}) | n_ctx {args.n_ctx} | {args.compute_type} | kv {args.kv_cache} | "
          f"{model.n_threads} threads | {nextoken.cpu_isa()} | {args.tokens} tokens, {args.loads} loads", flush=True)

    rows = []
    for name, work, share in [("stream", one_stream, 0.4), ("generate", restarts, 0.2), ("batch", batches, 0.2),
                              ("step", steps, 0.2)]:
        rows.append(soak(name, work(model, args.n_ctx), int(args.tokens * share), every, 100_000))
    total = dict(rows[0], phase="all generation", units=sum(r["units"] for r in rows), rss1=rows[-1]["rss1"],
                 anon1=rows[-1]["anon1"], hwm=rows[-1]["hwm"], slope=float("nan"), samples=[],
                 seconds=sum(r["seconds"] for r in rows))
    print(f"  after generation: {trimmed()}")
    del model
    gc.collect()
    rows.append(total)
    rows.append(soak("load/free", loads(path, args, args.loads), args.loads, 1, 1))
    print(f"  after the loads: {trimmed()}")

    print("\n| phase | tokens / loads | tok/s | VmRSS MiB start -> end | RssAnon MiB start -> end | VmHWM MiB | "
          "RssAnon slope (2nd half) | verdict |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        is_load = r["phase"] == "load/free"
        limit = LOAD_THRESHOLD if is_load else TOKEN_THRESHOLD
        if np.isnan(r["slope"]):
            slope, verdict = "", "" if r["phase"] == "all generation" else "too few samples"
        else:
            slope = f"{r['slope']:+.0f} KiB/{'load' if is_load else '100k tok'}"
            verdict = f"{'flat' if r['slope'] < limit else 'GROWS'} (< {limit})"
        speed = "" if is_load else f"{r['units'] / r['seconds']:.0f}"
        print(f"| {r['phase']} | {r['units']} | {speed} | {r['rss0'] / 1024:.1f} -> {r['rss1'] / 1024:.1f} | "
              f"{r['anon0'] / 1024:.1f} -> {r['anon1'] / 1024:.1f} | {r['hwm'] / 1024:.1f} | {slope} | {verdict} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(dict(args=vars(args), phases=rows)))
    print(f"samples: {args.json}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
