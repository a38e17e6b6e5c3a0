"""End-to-end speed of nextoken beside its peers, on the same GGUF, thread count and token ids.

    python benchmarks/bench_generate.py [--model smollm2|PATH] [--threads 2] [--repeats 5] [--engines ...]

Each engine runs in its own worker process (so load time and peak RSS are its own) and the driver
asks the workers for one measurement at a time, round-robin, so that a noisy neighbour slows every
engine alike. Figures: prefill tok/s for 128- and 512-token prompts, decode tok/s for 128 new tokens
after a 128- and a 2048-token prompt (greedy, EOS ignored), the aggregate decode tok/s of 8 sequences run
as one batch (8 different 128-token prompts, 64 new tokens each; the time of 64 new tokens minus the time
of 1, so prefill is not counted; engines that cannot batch show "-"), load time, peak RSS, and the achieved decode
bandwidth (weight bytes read per token x tok/s, as gpt-fast reports it) beside the machine's read
bandwidth measured in the same run (numpy, the same thread count), which bounds decode. Medians and min-max over the
repeats after one warm-up; ratios are to llama-cpp-python (flash attention on) when it is installed.

Engines: nextoken (compute_type float32, the default), nextoken-int8, nextoken-int8-kvf16 / -kvq8 (kv_cache "f16" / "q8_0"), llama.cpp (llama-cpp-python, flash attention on and default), ctranslate2 (int8,
converted from the GGUF through transformers on first use, cached), hf-fp32 / hf-bf16 (transformers with
torch). Engines whose package is missing are skipped. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

FIGURES = [  # name, kind, prompt tokens, new tokens
    ("prefill_128", "prefill", 128, 0),
    ("prefill_512", "prefill", 512, 0),
    ("decode_128", "decode", 128, 128),
    ("decode_2048", "decode", 2048, 128),
    ("batch8_decode", "batch", 128, 64),  # 8 prompts of 128 tokens, 64 new each: aggregate decode tok/s
]
BATCH = 8
N_CTX = 2048 + 128 + 8
TEXT = ("The history of the city begins in a small fishing village on the river. Over the centuries it grew into "
        "a trading port, then an industrial centre, and today it is known for its universities, its museums and "
        "its food. Visitors walk along the old harbour, climb the hill to the cathedral, and eat in the markets. ")


def prompt_ids(model_path: Path, n: int) -> list[int]:
    from nextoken.loaders import gguf
    ids = gguf.read(model_path).tokenizer.encode(TEXT * (n // 40 + 2), True, True)
    return ids[:n]


# ==== workers: one engine per process ======================================================================
class NextokenEngine:
    def __init__(self, path, threads, compute_type, kv_cache="f32", packed_cache=True):
        import nextoken
        self.model = nextoken.load(path, n_ctx=N_CTX, n_threads=threads, compute_type=compute_type, kv_cache=kv_cache,
                                   packed_cache=packed_cache)

    def _run_whole(self, prompts):
        """The session keeps the last finished sequence's cache for a prompt that starts with the same tokens
        (a chat's next turn reuses it); a timed prompt must run whole, as llama.cpp's after reset() does. A
        one-token sequence whose token starts none of the prompts takes that place, untimed."""
        token = min(set(range(len(prompts) + 1)) - {p[0] for p in prompts})
        self.model.generate([token], max_new_tokens=1)

    def prefill(self, ids):
        self._run_whole([ids])
        t = time.perf_counter()
        self.model.generate(ids, max_new_tokens=1)
        return time.perf_counter() - t

    def batch(self, prompts, n_new):
        def run(n):
            self._run_whole(prompts)
            t = time.perf_counter()
            self.model.generate(prompts, max_new_tokens=n, min_new_tokens=n)
            return time.perf_counter() - t
        return run(n_new) - run(1)

    def decode(self, ids, n_new):
        stream = self.model.stream(ids, max_new_tokens=n_new + 1, min_new_tokens=n_new + 1)
        next(stream)  # prefill and the first token
        t = time.perf_counter()
        for _ in stream:
            pass
        return time.perf_counter() - t


class LlamaCppEngine:
    def __init__(self, path, threads, flash_attn):
        from llama_cpp import Llama
        self.llm = Llama(model_path=str(path), n_ctx=N_CTX, n_batch=512, n_ubatch=512, n_threads=threads,
                         n_threads_batch=threads, flash_attn=flash_attn, verbose=False)

    def prefill(self, ids):
        self.llm.reset()
        t = time.perf_counter()
        self.llm.eval(ids)
        return time.perf_counter() - t

    def decode(self, ids, n_new):
        gen = self.llm.generate(ids, temp=0.0, reset=True)
        next(gen)
        t = time.perf_counter()
        for i, _ in enumerate(gen):
            if i + 1 == n_new:
                break
        return time.perf_counter() - t


class HFEngine:
    def __init__(self, path, threads, dtype):
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                          dtype=getattr(torch, dtype)).eval()

    def _step(self, ids, cache):
        with self.torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].argmax().view(1, 1), out.past_key_values

    def prefill(self, ids):
        from transformers import DynamicCache
        x = self.torch.tensor([ids])
        t = time.perf_counter()
        self._step(x, DynamicCache())
        return time.perf_counter() - t

    def decode(self, ids, n_new):
        from transformers import DynamicCache
        tok, cache = self._step(self.torch.tensor([ids]), DynamicCache())
        t = time.perf_counter()
        for _ in range(n_new):
            tok, cache = self._step(tok, cache)
        return time.perf_counter() - t


class CTranslate2Engine:
    def __init__(self, path, threads):
        import ctranslate2
        self.tokens = _vocab(path)
        self.generator = ctranslate2.Generator(str(_ct2_model(path)), device="cpu", compute_type="int8",
                                               intra_threads=threads, inter_threads=1)

    def prefill(self, ids):
        toks = [self.tokens[i] for i in ids]
        t = time.perf_counter()
        self.generator.generate_batch([toks], max_length=1, sampling_topk=1, include_prompt_in_result=False)
        return time.perf_counter() - t

    def batch(self, prompts, n_new):
        batch = [[self.tokens[i] for i in ids] for ids in prompts]

        def run(n):
            t = time.perf_counter()
            self.generator.generate_batch(batch, max_length=n, min_length=n, sampling_topk=1,
                                          include_prompt_in_result=False)
            return time.perf_counter() - t
        return run(n_new) - run(1)

    def decode(self, ids, n_new):
        # generate_tokens streams: the clock starts at the first token, after the prompt is processed.
        toks = [self.tokens[i] for i in ids]
        steps = self.generator.generate_tokens(toks, max_length=n_new + 1, min_length=n_new + 1, sampling_topk=1)
        next(steps)
        t = time.perf_counter()
        for _ in steps:
            pass
        return time.perf_counter() - t


def _vocab(path):
    from nextoken.loaders import gguf
    return gguf.read(path).metadata["tokenizer.ggml.tokens"]


def _ct2_model(path: Path) -> Path:
    """The GGUF converted to a CTranslate2 int8 model (once; cached next to the GGUF)."""
    out = path.parent / (path.stem + ".ct2-int8")
    if (out / "model.bin").exists():
        return out
    import tempfile
    import ctranslate2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        # transformers will not save a model loaded from GGUF: copy its (dequantized) weights into a plain one
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        plain = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(config), dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(tmp)
        ctranslate2.converters.TransformersConverter(tmp).convert(str(out), quantization="int8", force=True)
    return out


ENGINES = {
    "nextoken": (lambda p, t: NextokenEngine(p, t, "float32"), "nextoken"),
    "nextoken-int8": (lambda p, t: NextokenEngine(p, t, "int8"), "nextoken"),  # packed weights read from the cache
    "nextoken-int8-repack": (lambda p, t: NextokenEngine(p, t, "int8", packed_cache=False), "nextoken"),
    "nextoken-int8-kvf16": (lambda p, t: NextokenEngine(p, t, "int8", "f16"), "nextoken"),
    "nextoken-int8-kvq8": (lambda p, t: NextokenEngine(p, t, "int8", "q8_0"), "nextoken"),
    "llama.cpp-fa": (lambda p, t: LlamaCppEngine(p, t, True), "llama_cpp"),
    "llama.cpp": (lambda p, t: LlamaCppEngine(p, t, False), "llama_cpp"),
    "ctranslate2-int8": (lambda p, t: CTranslate2Engine(p, t), "ctranslate2"),
    "hf-fp32": (lambda p, t: HFEngine(p, t, "float32"), "transformers"),
    "hf-bf16": (lambda p, t: HFEngine(p, t, "bfloat16"), "transformers"),
}


def peak_rss_mib() -> float:
    """This process's peak resident set. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss
    over fork and exec, so a worker would report the driver's peak when that is higher."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(engine: str, path: Path, threads: int):
    """Answers JSON requests on stdin, one per line, with JSON on stdout. The first line holds the prompts'
    token ids, tokenized by the driver: a tokenizer here (Gemma 3's has 262k entries) would count in
    every engine's peak RSS."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library chatter off the protocol
    t = time.perf_counter()
    eng = ENGINES[engine][0](path, threads)
    load_s = time.perf_counter() - t
    prompts = {int(n): ids for n, ids in json.loads(sys.stdin.readline()).items()}
    long_prompt = prompts[max(prompts)]
    out.write(json.dumps({"load_s": load_s, "peak_rss_mib": peak_rss_mib()}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        ids = prompts[req["prompt"]]
        if req["op"] == "prefill":
            reply = {"tok_s": len(ids) / eng.prefill(ids)}
        elif req["op"] == "batch":
            batch = [long_prompt[k:k + req["prompt"]] for k in range(BATCH)]  # windows a token apart
            reply = {"tok_s": BATCH * req["new"] / eng.batch(batch, req["new"]) if hasattr(eng, "batch") else None}
        else:
            reply = {"tok_s": req["new"] / eng.decode(ids, req["new"])}
        reply["peak_rss_mib"] = peak_rss_mib()
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ==== driver ==============================================================================================
def available(engine: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(ENGINES[engine][1]) is not None


def decode_bytes_per_token(path: Path) -> int:
    """Bytes of weights a decode step reads: every matrix once (norm vectors too; the embedding table
    once more only for the tied output projection, where all of it is read)."""
    from nextoken.loaders import gguf
    tensors = {role: data for role, _, _, _, data in gguf.read(path).spec.tensors}  # the weights by role
    total = 0
    for role, data in tensors.items():
        if role == "token_embd" and "output" in tensors:
            continue  # untied: only one row of the embedding is read
        total += data.nbytes
    return total


def read_bandwidth(threads: int) -> float:
    """The machine's sustained read bandwidth in GB/s, measured now: `threads` threads each take the max of
    its share of a 1 GiB array (numpy's reductions release the GIL; max was the fastest of sum, max and
    bitwise-or here, so the least compute-bound), best of 5. A decode step that reads B bytes of weights
    cannot beat bandwidth / B tokens/s."""
    import threading

    import numpy as np
    data = np.ones(2**28, np.float32)  # written once, so every page exists before timing
    parts = np.array_split(data, threads)
    best = 0.0
    for _ in range(5):
        workers = [threading.Thread(target=np.maximum.reduce, args=(part,)) for part in parts]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def machine() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    figure_names = [f[0] for f in FIGURES]
    ap.add_argument("--engines", nargs="*", default=list(ENGINES), choices=list(ENGINES), metavar="ENGINE",
                    help=f"some of: {', '.join(ENGINES)}")
    # "decode128" is accepted for "decode_128": the names are easy to misspell that way
    ap.add_argument("--figures", nargs="*", default=figure_names, metavar="FIGURE",
                    type=lambda name: next((f for f in figure_names if f.replace("_", "") == name.replace("_", "")), name),
                    help=f"some of: {', '.join(figure_names)}")
    ap.add_argument("--json", default="benchmarks/results/bench_generate.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    unknown = [f for f in args.figures if f not in figure_names]
    if unknown:
        ap.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(figure_names)}")
    if args.worker:  # the driver passes the resolved path
        return worker(args.worker, Path(args.model), args.threads)
    import nextoken
    path = nextoken.hub.resolve(args.model).resolve()

    engines = [e for e in args.engines if available(e)]
    skipped = [e for e in args.engines if e not in engines]
    figures = [f for f in FIGURES if f[0] in args.figures]
    if "ctranslate2-int8" in engines:
        _ct2_model(path)  # convert before timing anything: load time is the converted model's
    if any(e.startswith("nextoken-int8") and e != "nextoken-int8-repack" for e in engines):
        nextoken.load(path, n_ctx=16, compute_type="int8", packed_cache=True)  # the same: the packed cache written
    prompts = json.dumps({n: prompt_ids(path, n) for _, _, n, _ in FIGURES})
    procs, results = {}, {}
    for e in engines:
        p = subprocess.Popen([sys.executable, __file__, "--worker", e, "--model", str(path), "--threads", str(args.threads)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write(prompts + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if not line:
            print(f"{e}: worker failed to start, skipped", file=sys.stderr)
            continue
        procs[e] = p
        hello = json.loads(line)
        results[e] = {"load_s": hello["load_s"], "peak_rss_mib": hello["peak_rss_mib"], **{f[0]: [] for f in figures}}

    def ask(e, req):
        procs[e].stdin.write(json.dumps(req) + "\n")
        procs[e].stdin.flush()
        return json.loads(procs[e].stdout.readline())

    for rep in range(args.repeats + 1):  # round 0 is the warm-up
        for name, kind, n_prompt, n_new in figures:
            for e in list(procs):
                reply = ask(e, {"op": kind, "prompt": n_prompt, "new": n_new})
                results[e]["peak_rss_mib"] = reply["peak_rss_mib"]
                if rep and reply["tok_s"] is not None:
                    results[e][name].append(reply["tok_s"])
        print(f"round {rep}/{args.repeats} done", file=sys.stderr)
    for e, p in procs.items():
        p.stdin.write(json.dumps({"op": "quit"}) + "\n")
        p.stdin.close()
        p.wait()

    weight_bytes = decode_bytes_per_token(path)
    bandwidth = read_bandwidth(args.threads)
    base = "llama.cpp-fa" if "llama.cpp-fa" in results else None
    print(f"\n{path.name} | {machine()} | {args.threads} threads | median (min-max) of {args.repeats} | "
          f"decode reads {weight_bytes / 1e6:.1f} MB/token | read bandwidth {bandwidth:.1f} GB/s, so decode "
          f"<= {bandwidth * 1e9 / weight_bytes:.0f} tok/s" + (f" | skipped (not installed): {', '.join(skipped)}" if skipped else ""))
    header = ["engine"] + [f"{f[0]} tok/s" for f in figures] + ["decode_128 GB/s (% of bound)", "load s", "peak RSS MiB"]
    rows = []
    for e, r in results.items():
        row = [e]
        for name, *_ in figures:
            if not r[name]:  # the engine cannot do it
                row.append("-")
                continue
            med = statistics.median(r[name])
            cell = f"{med:.1f} ({min(r[name]):.0f}-{max(r[name]):.0f})"
            if base and e != base and results[base][name]:
                cell += f" {med / statistics.median(results[base][name]):.2f}x"
            row.append(cell)
        if r.get("decode_128"):
            achieved = statistics.median(r["decode_128"]) * weight_bytes / 1e9
            row.append(f"{achieved:.1f} ({100 * achieved / bandwidth:.0f} %)")
        else:
            row.append("-")
        row.append(f"{r['load_s']:.2f}")
        row.append(f"{r['peak_rss_mib']:.0f}")
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths]] + rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    if base:
        print(f"(ratios: median / {base} median)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"model": str(path), "cpu": machine(), "threads": args.threads,
                                           "repeats": args.repeats, "decode_bytes_per_token": weight_bytes,
                                           "read_bandwidth_gb_s": bandwidth,
                                           "results": results}, indent=1))


if __name__ == "__main__":
    main()
