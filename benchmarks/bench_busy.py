"""Decode speed when other processes take the cores: the engine must degrade gracefully, never fall
far below one thread's speed (threads that spin at barriers while the OS runs a neighbour on their core
stall everyone).

    python benchmarks/bench_busy.py [--model smollm2] [--tokens 64] [--repeats 3] [--neighbours 0 1 2]

For each number of busy neighbours (processes spinning in a loop, lowest priority not requested) it times
greedy decoding with n_threads = every core and with n_threads = 1, each in a fresh process, and prints
median (min-max) tok/s. Nothing is asserted: this is a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = """
import json, sys, time, nextoken
model = nextoken.load(sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), compute_type=sys.argv[3])
ids = model.tokenize("In a small village")
model.generate(ids, max_new_tokens=4)
t = time.perf_counter()
model.generate(ids, max_new_tokens=int(sys.argv[4]), min_new_tokens=int(sys.argv[4]))
print(json.dumps(int(sys.argv[4]) / (time.perf_counter() - t)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--neighbours", type=int, nargs="*", default=[0, 1, 2])
    args = ap.parse_args()
    import nextoken
    path = str(nextoken.hub.resolve(args.model))
    cores = len(os.sched_getaffinity(0))
    print(f"{args.model} | {args.compute_type} | {cores} cores | {nextoken.cpu_isa()} | median (min-max) of "
          f"{args.repeats}")
    print("busy neighbours | threads | decode tok/s")
    for n in args.neighbours:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
        try:
            for threads in (cores, 1):
                runs = [json.loads(subprocess.run(
                    [sys.executable, "-c", WORKER, path, str(threads), args.compute_type, str(args.tokens)],
                    capture_output=True, text=True, check=True).stdout) for _ in range(args.repeats)]
                print(f"{n:15d} | {threads:7d} | {statistics.median(runs):.1f} ({min(runs):.1f}-{max(runs):.1f})")
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main()
