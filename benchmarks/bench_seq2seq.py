"""Encoder + decoder speed on a t5-small-shaped random model (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048,
vocab 32128, ReLU), beside CTranslate2 and transformers, on the same ids and thread count.

    python benchmarks/bench_seq2seq.py [--threads 2] [--repeats 5] [--source 128] [--new 64]

Needs torch (the CPU wheel, pinned as in benchmarks/README.md), transformers and ctranslate2: the model is
made once with random weights (seeded) and saved under $NEXTOKEN_HOME/t5-small-random (a Hugging Face folder
with a placeholder tokenizer of 32128 pieces, so CTranslate2's converter can read it), and converted for
CTranslate2 beside it. Each engine runs greedy decoding of `new` tokens (EOS masked) from one source of
`source` tokens; figures: encoder + first token (ms), decoder tok/s after it, and the whole call (ms).
Medians (min-max) over the repeats after a warm-up, the machine named. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

CONFIG = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="relu",
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tie_word_embeddings=True)


def make_model(folder: Path):
    """A random t5-small-shaped folder (once)."""
    if (folder / "model.safetensors").is_file():
        return
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5Config, T5ForConditionalGeneration, T5TokenizerFast
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**CONFIG)).eval()
    model.save_pretrained(folder)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581p{i}", -float(i)) for i in range(32125)]
    tk = Tokenizer(models.Unigram(pieces, unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    T5TokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                    extra_ids=0).save_pretrained(folder)


def machine() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--source", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    args = ap.parse_args()
    home = Path(os.environ.get("NEXTOKEN_HOME", Path.home() / ".cache" / "nextoken"))
    folder = home / "t5-small-random"
    make_model(folder)
    import numpy as np
    source = np.random.default_rng(1).integers(3, 32000, args.source).tolist() + [1]
    engines = {}

    import nextoken
    for name, kw in (("nextoken fp32", {}), ("nextoken int8 (q8_0)", dict(weights="q8_0", compute_type="int8"))):
        m = nextoken.load(folder, n_ctx=512, n_threads=args.threads, **kw)

        def run(m=m):
            t = time.perf_counter()
            stream = m.stream(source, max_new_tokens=args.new, min_new_tokens=args.new)
            next(stream)
            first = time.perf_counter()
            for _ in stream:
                pass
            return first - t, time.perf_counter() - first
        engines[name] = run
    try:
        import ctranslate2
        ct2_dir = home / "t5-small-random.ct2"
        if not (ct2_dir / "model.bin").is_file():
            ctranslate2.converters.TransformersConverter(str(folder)).convert(str(ct2_dir), force=True)
        from transformers import AutoTokenizer
        tokens = AutoTokenizer.from_pretrained(folder).convert_ids_to_tokens(source)
        for compute in ("float32", "int8"):
            tr = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type=compute, intra_threads=args.threads)

            def run(tr=tr):
                t = time.perf_counter()
                tr.translate_batch([tokens], max_decoding_length=1, min_decoding_length=1, beam_size=1)
                first = time.perf_counter()
                tr.translate_batch([tokens], max_decoding_length=args.new, min_decoding_length=args.new, beam_size=1)
                return first - t, time.perf_counter() - first - (first - t)  # the decoder after the first token
            engines[f"ctranslate2 {compute}"] = run
    except ImportError:
        pass
    try:
        import torch
        from transformers import T5ForConditionalGeneration
        torch.set_num_threads(args.threads)
        hf = T5ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        ids = torch.tensor([source])

        def run():
            with torch.inference_mode():
                t = time.perf_counter()
                hf.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False, num_beams=1)
                first = time.perf_counter()
                hf.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, num_beams=1)
                return first - t, time.perf_counter() - first - (first - t)
        engines["transformers fp32"] = run
    except ImportError:
        pass

    results = {name: ([], []) for name in engines}
    for rep in range(args.repeats + 1):
        for name, run in engines.items():
            first, rest = run()
            if rep:
                results[name][0].append(first * 1000)
                results[name][1].append((args.new - 1) / rest)
    print(f"t5-small-shaped random model | {machine()} | {args.threads} threads | source {args.source + 1} tokens, "
          f"{args.new} new (greedy) | median (min-max) of {args.repeats}")
    print("engine | encoder + first token ms | decoder tok/s")
    for name, (first, rate) in results.items():
        print(f"{name} | {statistics.median(first):.1f} ({min(first):.1f}-{max(first):.1f}) | "
              f"{statistics.median(rate):.1f} ({min(rate):.1f}-{max(rate):.1f})")


if __name__ == "__main__":
    main()
