"""The `nextoken` command: generate text, chat, write a Hugging Face folder as GGUF, fetch a named model."""
from __future__ import annotations

import argparse
import sys

from . import hub


def _generate(args) -> int:
    from .model import load
    prompt = args.prompt
    if prompt is None or prompt == "-":
        if prompt is None and sys.stdin.isatty():
            print("nextoken: error: give a prompt, or '-' to read it from standard input", file=sys.stderr)
            return 2
        prompt = sys.stdin.read()
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    for piece in model.stream(prompt, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              stop=args.stop or None):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _chat(args) -> int:
    """A conversation in the terminal: each line of input is a user turn; the reply streams back. The
    history is kept and rendered again each turn (through the model's chat template); the model reuses the
    cached keys of what it already ran, so a turn computes only its new tokens."""
    from .model import load
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write("> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        reply = []
        for piece in model.stream_chat(messages, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                       top_p=args.top_p, seed=args.seed):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})


def _convert(args) -> int:
    from .convert import convert
    print(convert(args.folder, args.out, weights=args.weights, lora=args.lora, n_threads=args.threads or 1))
    return 0


def _pull(args) -> int:
    print(hub.pull(args.name))
    return 0


def _translate(args) -> int:
    """Encoder-decoder text-to-text: the source from the argument or stdin, the result on stdout."""
    from .model import load
    source = args.text if args.text not in (None, "-") else sys.stdin.read()
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    if not model.is_encoder_decoder:
        raise ValueError(f"{args.model} is not an encoder-decoder model (translate needs T5, Marian, BART ...)")
    beams = {"num_beams": args.num_beams} if args.num_beams > 1 else {}
    print(model.generate(source.strip(), max_new_tokens=args.max_new_tokens, **beams))
    return 0


def _caption(args) -> int:
    """Image-to-text: the caption of an image file on stdout."""
    from .model import load
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    if not model.vision:
        raise ValueError(f"{args.model} is not an image-to-text model (caption needs a vision-encoder-decoder folder)")
    beams = {"num_beams": args.num_beams} if args.num_beams > 1 else {}
    print(model.generate(image=args.image, max_new_tokens=args.max_new_tokens, **beams))
    return 0


def _serve(args) -> int:
    try:
        from .server import serve
    except ImportError:
        print('nextoken: error: serving needs the `serve` extra: pip install "nextoken[serve]"', file=sys.stderr)
        return 2
    from .model import load
    model = load(args.model, n_ctx=args.n_ctx, n_threads=args.threads, compute_type=args.compute_type)
    serve(model, args.name or str(args.model), host=args.host, port=args.port, max_batch=args.max_batch,
          max_queue=args.max_queue)
    return 0


def _version() -> str:
    from . import __version__
    return __version__


def main(argv=None) -> int:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="nextoken", description="Run auto-regressive transformer models on the CPU.",
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"nextoken {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", formatter_class=formatter,
                       help="continue a prompt, streaming the new text to stdout (the prompt is not echoed)",
                       description="Continue a prompt and stream the new text to stdout. The prompt itself is not "
                                   "printed, only what the model adds.")
    g.add_argument("prompt", nargs="?", default=None,
                   help="the text to continue; '-' (or none, with stdin not a terminal) reads it from stdin")
    g.add_argument("--model", default=hub.DEFAULT_MODEL,
                   help=f"a known name ({', '.join(hub.MODELS)}), a .gguf file or a Hugging Face folder")
    g.add_argument("--max-new-tokens", type=int, default=128, help="the most tokens to add")
    g.add_argument("--min-new-tokens", type=int, default=0, help="EOS is ignored until this many tokens exist")
    g.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    g.add_argument("--top-k", type=int, default=0, help="0: no limit")
    g.add_argument("--top-p", type=float, default=1.0, help="1.0: no limit")
    g.add_argument("--seed", type=int, default=None, help="none: a random seed")
    g.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop before this text (may be given several times)")
    g.add_argument("--n-ctx", type=int, default=2048, help="the most tokens, prompt and new, the sequence may hold")
    g.add_argument("--threads", type=int, default=None, help="none: all cores")
    g.add_argument("--compute-type", choices=["float32", "int8"], default="float32",
                   help="float32 is exact; int8 is faster (see README)")
    g.set_defaults(run=_generate)

    h = sub.add_parser("chat", formatter_class=formatter,
                       help="talk with an instruct model: each input line is a turn (its chat template is applied)")
    h.add_argument("--model", default=hub.DEFAULT_MODEL,
                   help=f"a known name ({', '.join(hub.MODELS)}), a .gguf file or a Hugging Face folder")
    h.add_argument("--system", default=None, help="a system message to start with")
    h.add_argument("--max-new-tokens", type=int, default=512, help="the most tokens per reply")
    h.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    h.add_argument("--top-p", type=float, default=1.0, help="1.0: no limit")
    h.add_argument("--seed", type=int, default=None, help="none: a random seed")
    h.add_argument("--n-ctx", type=int, default=4096, help="the most tokens the whole conversation may hold")
    h.add_argument("--threads", type=int, default=None, help="none: all cores")
    h.add_argument("--compute-type", choices=["float32", "int8"], default="float32")
    h.set_defaults(run=_chat)

    v = sub.add_parser("serve", formatter_class=formatter,
                       help="an OpenAI-compatible HTTP server (needs the `serve` extra)",
                       description="Serve MODEL over the OpenAI API (/v1/completions, /v1/chat/completions, "
                                   "/v1/models, /health), concurrent requests stepped together in one batch.")
    v.add_argument("model", nargs="?", default=hub.DEFAULT_MODEL,
                   help=f"a known name ({', '.join(hub.MODELS)}), a .gguf file or a Hugging Face folder")
    v.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--name", default=None, help="the model name clients use (none: MODEL as given)")
    v.add_argument("--max-batch", type=int, default=16, help="requests (choices) stepped together at most")
    v.add_argument("--max-queue", type=int, default=64, help="requests waiting at most; more get HTTP 429")
    v.add_argument("--n-ctx", type=int, default=4096, help="the most tokens, prompt and new, one request may hold")
    v.add_argument("--threads", type=int, default=None, help="none: all cores")
    v.add_argument("--compute-type", choices=["float32", "int8"], default="float32")
    v.set_defaults(run=_serve)

    for name, helptext, run in (("translate", "translate (or summarise...) a text with an encoder-decoder model", _translate),
                                ("caption", "describe an image with a vision-encoder-decoder model", _caption)):
        t = sub.add_parser(name, formatter_class=formatter, help=helptext)
        if name == "translate":
            t.add_argument("text", nargs="?", default=None, help="the source text; '-' or none reads stdin")
        else:
            t.add_argument("image", help="an image file (PNG, JPEG, ...)")
        t.add_argument("--model", required=True, help="a Hugging Face folder")
        t.add_argument("--max-new-tokens", type=int, default=128)
        t.add_argument("--num-beams", type=int, default=1, help="beam search when > 1 (greedy otherwise)")
        t.add_argument("--n-ctx", type=int, default=512, help="the longest source or output, in tokens")
        t.add_argument("--threads", type=int, default=None, help="none: all cores")
        t.add_argument("--compute-type", choices=["float32", "int8"], default="float32")
        t.set_defaults(run=run)

    c = sub.add_parser("convert", formatter_class=formatter,
                       help="write a Hugging Face folder as a GGUF file (needs the `convert` extra)")
    c.add_argument("folder", help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
    c.add_argument("out", help="the .gguf file to write")
    c.add_argument("--weights", choices=["q8_0", "q4_0", "q4_k"], default=None,
                   help="quantize the weight matrices (none: keep their stored type)")
    c.add_argument("--lora", default=None, help="a PEFT LoRA adapter folder to merge first")
    c.add_argument("--threads", type=int, default=None, help="threads for quantizing (none: 1)")
    c.set_defaults(run=_convert)

    p = sub.add_parser("pull", formatter_class=formatter,
                       help="fetch a named model into the cache ($NEXTOKEN_HOME, default ~/.cache/nextoken)")
    p.add_argument("name", nargs="?", default=hub.DEFAULT_MODEL, choices=sorted(hub.MODELS))
    p.set_defaults(run=_pull)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as e:  # nextoken.Error is a ValueError
        print(f"nextoken: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a clean line and the shell's usual status, no traceback
        sys.stdout.write("\n")
        sys.stdout.flush()
        return 130


if __name__ == "__main__":
    sys.exit(main())
