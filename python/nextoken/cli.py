"""The `nextoken` command: generate text, fetch the default model."""
from __future__ import annotations

import argparse
import sys

from . import hub


def _generate(args) -> int:
    from .model import load
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    for piece in model.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _pull(args) -> int:
    print(hub.pull(args.name))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nextoken", description="Run auto-regressive transformer models on the CPU.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="continue a prompt, streaming the text to stdout")
    g.add_argument("prompt")
    g.add_argument("--model", default=hub.DEFAULT_MODEL, help=f"model name or .gguf path (default: {hub.DEFAULT_MODEL})")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 (default): no limit")
    g.add_argument("--top-p", type=float, default=1.0, help="1.0 (default): no limit")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--n-ctx", type=int, default=2048)
    g.add_argument("--threads", type=int, default=None, help="default: all cores")
    g.add_argument("--compute-type", choices=["float32", "int8"], default="float32",
                   help="float32 (default, exact) or int8 (faster; see README)")
    g.set_defaults(run=_generate)

    p = sub.add_parser("pull", help="fetch a named model into the cache ($NEXTOKEN_HOME, default ~/.cache/nextoken)")
    p.add_argument("name", nargs="?", default=hub.DEFAULT_MODEL, choices=sorted(hub.MODELS))
    p.set_defaults(run=_pull)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as e:  # nextoken.Error is a ValueError
        print(f"nextoken: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
