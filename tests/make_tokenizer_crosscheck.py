"""Record llama.cpp's and Hugging Face transformers' token ids for a fixed set of texts, as a test oracle.

Makes tests/fixtures/tokenizer_crosscheck.json: for each of the two GGUF models nextoken tests with,
SmolLM2-135M-Instruct.Q4_1.gguf (byte-level BPE) and gemma-3-270m-q4_k_m.gguf (SentencePiece), and
for each text in TEXTS below (all written for this file), three id lists:

    llamacpp_special  llama-cpp-python  Llama.tokenize(text.encode(), add_bos=False, special=True)
    llamacpp_plain    llama-cpp-python  Llama.tokenize(text.encode(), add_bos=False, special=False)
    transformers      transformers      AutoTokenizer(...)(text, add_special_tokens=False).input_ids

No BOS is added by either library, so the lists can be compared directly with nextoken's encoding
without special tokens. The texts cover prose, code, numbers, many scripts, emoji, whitespace runs,
text that spells special tokens, control and combining characters; see TEXTS.

Run by hand, never in CI: llama-cpp-python and transformers live in two separate virtual
environments, so this one script has two halves.

    # both engines (each half runs in its own interpreter via subprocess), then merge:
    python tests/make_tokenizer_crosscheck.py \
        [--llamacpp-python /work/peers/bin/python] [--transformers-python /work/refenv/bin/python] \
        [--model-dir ~/.cache/nextoken] [--out tests/fixtures/tokenizer_crosscheck.json]

    # one engine only, writing a partial JSON (what the default mode runs):
    /work/peers/bin/python  tests/make_tokenizer_crosscheck.py --engine llamacpp     --out /tmp/lc.json
    /work/refenv/bin/python tests/make_tokenizer_crosscheck.py --engine transformers --out /tmp/tf.json

The interpreters can also be given as $LLAMACPP_PYTHON and $TRANSFORMERS_PYTHON, the model folder as
$NEXTOKEN_HOME. The default mode needs only the standard library. Loading the Gemma tokenizer in
transformers takes about a minute. The default mode ends by printing, per model, how many texts
agree between llama.cpp (special=True) and transformers, and each disagreement.

Known differences between the two libraries on Gemma (SentencePiece) include runs of more than 31
spaces, a literal U+2581 in the text, and special-token text when special=False.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}

# Every text here was written for this fixture. Keep the order stable: tests may refer to indices.
TEXTS = [
    # --- English prose
    "The quick silver fox leapt over a sleeping hound near the old mill.",
    "She said, \"It's not what you think!\" -- and then she left; nobody followed.",
    "Tokenizers split text into pieces; models only ever see the pieces' numbers.",
    "Hello",
    " Hello",
    "hello world",
    "HELLO WORLD, this Is MiXeD CaSe.",
    "don't won't can't I'm you're they've we'd",
    # --- code
    "def area(radius):\n    return 3.14159 * radius ** 2\n\n\nclass Box:\n    def __init__(self, w, h):\n        self.w, self.h = w, h\n",
    "def walk(tree):\n\tfor node in tree:\n\t\tif node.leaf:\n\t\t\tyield node\n\t\telse:\n\t\t\tyield from walk(node)\n",
    "#include <stdio.h>\n\nint main(void) {\n    int counts[16] = {0};\n    printf(\"%d\\n\", counts[3]);\n    return 0;\n}\n",
    "{\"name\": \"lamp\", \"watts\": 40, \"tags\": [\"desk\", \"led\"], \"on\": false, \"ratio\": -0.125e3}",
    "#!/bin/sh\nset -eu\nfor f in *.log; do\n  grep -c ERROR \"$f\" || true\ndone | sort -n > /tmp/out.txt 2>&1\n",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "SELECT id, COUNT(*) AS n FROM orders WHERE total >= 99.50 GROUP BY id HAVING n > 2;",
    "x+=1;y-=2;z*=3;w/=4;a&&b||!c;p->q;r::s;t<=u>=v!=w==x",
    # --- numbers and dates
    "1 12 123 1234 12345 123456 1234567",
    "Call 555-0199 before 2031-07-04T09:30:00Z or on 4/7/31.",
    "3.14159265358979 and 2,718,281 and 1e-9 and 0x1F and 0b1011",
    "abc123def 42nd 7th 1st 2x4 v3.2.1 A1B2C3",
    "The year 1999 ended; the year 2000 began. In 10000 years...",
    # --- scripts
    "Où est la bibliothèque ? Déjà vu, naïve façade, cœur, Ærø.",
    "Größenänderung: Straße, Mädchen, Übermäßig, weiß.",
    "Γειά σου κόσμε· η αλεπού πηδά πάνω από τον σκύλο.",
    "Привет, мир! Съешь же ещё этих мягких булок.",
    "مرحبا بالعالم، هذا نص عربي قصير.",
    "שלום עולם, זהו משפט קצר בעברית.",
    "नमस्ते दुनिया, यह एक छोटा वाक्य है।",
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "こんにちは世界。カタカナとひらがなと漢字を混ぜます。",
    "안녕하세요 세계! 한국어 문장입니다.",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "mixed: café 東京 Москва 서울 القاهرة ok",
    # --- emoji
    "I love pizza 🍕 and cats 🐈‍⬛!",
    "family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵🇧🇷 and skin tone 👋🏽",
    "🙂🙃😉😊😇🥲 \u2764\ufe0f 1\ufe0f\u20e3 \U0001F469\u200d\U0001F4BB",
    # --- whitespace
    "a  b   c    d     e",
    "x" + " " * 8 + "y" + " " * 16 + "z" + " " * 31 + "w" + " " * 32 + "v" + " " * 40 + "u",
    " " * 40,
    "col1\tcol2\t\tcol3\t\t\tend",
    "line one\nline two\n\nline four\n\n\n",
    "windows\r\nline\r\nendings\r\n",
    " \t \n\t\n  \r\n \t\t  x \n ",
    "   leading and trailing spaces   ",
    "",
    " ",
    "\n",
    # --- punctuation and URLs
    "Wait... what?!?! ---- ==== **** #### !!!!!! ???",
    "(((nested))) [[[lists]]] {{{maps}}} <<<angles>>> ``code``",
    "https://example.org/path/to/page?query=1&other=two#frag and mailto:someone@example.net",
    "C:\\Users\\me\\Documents\\notes.txt and ~/src/app/main.py:42",
    # --- text that spells special tokens
    "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n",
    "Here is <|endoftext|> in the middle of a sentence.",
    "<start_of_turn>user\nName a color.<end_of_turn>\n<start_of_turn>model\n",
    "<bos>Hello</s> and <eos> and <pad> and <unk>",
    # --- long words
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 120,
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen",
    "=" * 70 + " " + "-" * 33,
    # --- control and combining characters, a literal U+2581
    "bell\x07here and nul\x00there",
    "cafe\u0301 vs caf\u00e9; n\u0303 and a\u0308",
    "under\u2581score and \u2581leading",
]


def model_dir(args):
    if args.model_dir:
        return Path(args.model_dir).expanduser()
    return Path(os.environ.get("NEXTOKEN_HOME", Path.home() / ".cache" / "nextoken"))


def run_llamacpp(mdir):
    import llama_cpp
    from llama_cpp import Llama
    out = {"versions": {"llama_cpp_python": llama_cpp.__version__}, "models": {}}
    for key, name in MODELS.items():
        llm = Llama(model_path=str(mdir / name), vocab_only=True, verbose=False)
        ids = []
        for text in TEXTS:
            b = text.encode("utf-8")
            ids.append({
                "llamacpp_special": list(llm.tokenize(b, add_bos=False, special=True)),
                "llamacpp_plain": list(llm.tokenize(b, add_bos=False, special=False)),
            })
        out["models"][key] = {"ids": ids}
        del llm
    return out


def run_transformers(mdir):
    import tokenizers
    import transformers
    from transformers import AutoTokenizer
    out = {"versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
           "models": {}}
    for key, name in MODELS.items():
        tok = AutoTokenizer.from_pretrained(str(mdir), gguf_file=name)
        ids = [{"transformers": list(tok(text, add_special_tokens=False).input_ids)} for text in TEXTS]
        out["models"][key] = {"ids": ids}
        del tok
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def merge(mdir, parts):
    versions = {}
    for p in parts:
        versions.update(p["versions"])
    models = {}
    for key, name in MODELS.items():
        recs = []
        for i, text in enumerate(TEXTS):
            rec = {"text": text}
            for p in parts:
                rec.update(p["models"][key]["ids"][i])
            recs.append({k: rec[k] for k in ("text", "llamacpp_special", "llamacpp_plain", "transformers")})
        models[key] = {"file": name, "sha256": sha256(mdir / name), "ids": recs}
    return {"versions": versions, "models": models}


def summarize(data):
    for key, m in data["models"].items():
        recs = m["ids"]
        bad = [(i, r) for i, r in enumerate(recs) if r["llamacpp_special"] != r["transformers"]]
        print(f"{key}: {len(recs) - len(bad)}/{len(recs)} texts agree (llama.cpp special=True vs transformers)")
        for i, r in bad:
            a, b = r["llamacpp_special"], r["transformers"]
            pos = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            print(f"  [{i}] {r['text'][:40]!r}: lengths {len(a)}/{len(b)}, first difference at {pos}: "
                  f"llama.cpp {a[pos:pos + 4]} transformers {b[pos:pos + 4]}")
        plain = sum(r["llamacpp_plain"] != r["llamacpp_special"] for r in recs)
        print(f"  llama.cpp special=False differs from special=True on {plain} texts")


def dump(obj, path):
    # One record per line keeps the file reviewable in diffs; ensure_ascii=False keeps the texts readable
    # (control characters are still escaped).
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if "models" in obj and all("file" in m for m in obj["models"].values()):
            f.write("{\"versions\": " + json.dumps(obj["versions"]) + ",\n \"models\": {\n")
            keys = list(obj["models"])
            for n, key in enumerate(keys):
                m = obj["models"][key]
                f.write(f"  {json.dumps(key)}: {{\"file\": {json.dumps(m['file'])}, "
                        f"\"sha256\": {json.dumps(m['sha256'])}, \"ids\": [\n")
                f.write(",\n".join("   " + json.dumps(r, ensure_ascii=False) for r in m["ids"]))
                f.write("\n  ]}" + ("," if n + 1 < len(keys) else "") + "\n")
            f.write(" }\n}\n")
        else:
            json.dump(obj, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=["llamacpp", "transformers"],
                    help="run one engine in this interpreter and write its partial JSON")
    ap.add_argument("--model-dir", help="folder holding the two GGUF files (default $NEXTOKEN_HOME or "
                                        "~/.cache/nextoken)")
    ap.add_argument("--out", help="output path (default tests/fixtures/tokenizer_crosscheck.json)")
    ap.add_argument("--llamacpp-python", default=os.environ.get("LLAMACPP_PYTHON", "/work/peers/bin/python"))
    ap.add_argument("--transformers-python",
                    default=os.environ.get("TRANSFORMERS_PYTHON", "/work/refenv/bin/python"))
    args = ap.parse_args()
    mdir = model_dir(args)

    if args.engine:
        if not args.out:
            ap.error("--engine needs --out")
        dump((run_llamacpp if args.engine == "llamacpp" else run_transformers)(mdir), args.out)
        return

    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "fixtures" / "tokenizer_crosscheck.json"
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine, python in (("llamacpp", args.llamacpp_python), ("transformers", args.transformers_python)):
            part = Path(tmp) / f"{engine}.json"
            cmd = [python, str(Path(__file__).resolve()), "--engine", engine, "--model-dir", str(mdir),
                   "--out", str(part)]
            print("running:", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            with open(part, encoding="utf-8") as f:
                parts.append(json.load(f))
    data = merge(mdir, parts)
    dump(data, out)
    with open(out, encoding="utf-8") as f:
        assert json.load(f) == data
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    summarize(data)


if __name__ == "__main__":
    sys.exit(main())
