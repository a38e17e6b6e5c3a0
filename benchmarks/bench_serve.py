"""Load on an OpenAI-compatible server, localhost only: requests/s and generated tokens/s at 1, 4 and 16
concurrent clients, for `nextoken serve` and, when llama-cpp-python[server] is installed, llama.cpp's server
on the same GGUF and thread count.

    python benchmarks/bench_serve.py [--model smollm2] [--threads 2] [--requests 32] [--max-tokens 32]
                                     [--clients 1 4 16] [--servers nextoken llama.cpp] [--compute-type int8]

Each server runs in its own process on a free 127.0.0.1 port. Every client sends its share of the requests
one after another (POST /v1/completions, a different prompt each, temperature 0.8, seeded, max_tokens new
tokens); the clock runs from the first request to the last answer. One warm-up request first. Nothing is
asserted: this is a measurement.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server: str, model_path: str, threads: int, port: int, max_batch: int, compute_type: str) -> subprocess.Popen:
    if server == "nextoken":
        cmd = [sys.executable, "-m", "nextoken", "serve", model_path, "--port", str(port), "--threads", str(threads),
               "--max-batch", str(max_batch), "--max-queue", "256", "--n-ctx", "1024", "--name", "m",
               "--compute-type", compute_type]
    else:  # llama-cpp-python's server: one sequence at a time
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--port", str(port),
               "--n_threads", str(threads), "--n_ctx", "1024", "--model_alias", "m", "--flash_attn", "true"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready(url: str, proc: subprocess.Popen):
    import httpx
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                if (await client.get(url + "/v1/models")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


async def load(url: str, n_clients: int, n_requests: int, max_tokens: int) -> tuple[float, float]:
    import httpx
    tokens = 0

    async def client(k: int):
        nonlocal tokens
        async with httpx.AsyncClient(timeout=600) as http:
            for r in range(k, n_requests, n_clients):
                body = {"model": "m", "prompt": f"Request {r}: once upon a time", "max_tokens": max_tokens,
                        "temperature": 0.8, "seed": r}
                reply = (await http.post(url + "/v1/completions", json=body)).json()
                tokens += reply["usage"]["completion_tokens"]
    t = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(n_clients)))
    elapsed = time.perf_counter() - t
    return n_requests / elapsed, tokens / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16])
    ap.add_argument("--servers", nargs="*", default=["nextoken", "llama.cpp"])
    ap.add_argument("--compute-type", default="int8", choices=["float32", "int8"], help="nextoken's")
    args = ap.parse_args()
    import importlib.util
    import nextoken
    path = str(nextoken.hub.resolve(args.model))
    servers = [s for s in args.servers if s == "nextoken" or importlib.util.find_spec("llama_cpp.server")]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{os.path.basename(path)} | {cpu} | {args.threads} threads | {args.requests} requests of {args.max_tokens} "
          f"new tokens | completions, temperature 0.8")
    print("server | clients | requests/s | generated tokens/s")
    for server in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(server, path, args.threads, port, max(args.clients), args.compute_type)
        try:
            asyncio.run(wait_ready(url, proc))
            asyncio.run(load(url, 1, 1, 4))  # warm-up
            for n in args.clients:
                rps, tps = asyncio.run(load(url, n, args.requests, args.max_tokens))
                name = f"nextoken ({args.compute_type})" if server == "nextoken" else server
                print(f"{name} | {n} | {rps:.2f} | {tps:.1f}", flush=True)
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
