"""Record Hugging Face transformers' output on Gemma 3 270M Q4_K_M as the test oracle.

Run by hand, never in CI (it needs torch). It loads the same GGUF file nextoken uses into
transformers in fp32 (transformers dequantizes every tensor to fp32, so both engines see the
same weights; it also subtracts the +1 that llama.cpp's converter adds to every Gemma norm
weight) with eager attention, and writes, for each prompt: the prompt token ids (tokenized with
add_special_tokens=True, so <bos> is prepended as the GGUF's add_bos_token says), the greedy
continuation (up to 32 tokens, stopping at any EOS id of the generation config exactly as
`generate()` does) and the last-position logits. The generation config transformers builds from
this GGUF has eos_token_id 1 (<eos>) only; <end_of_turn> (106) is not an EOS there. The GGUF has
no chat template, so the chat prompt is written with Gemma's markers by hand. A run takes about
2.5 minutes on 2 threads and 2.7 GB of RAM.

    python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 transformers accelerate gguf tokenizers sentencepiece
    /tmp/refenv/bin/python tests/make_reference_gemma3.py [path/to/model.gguf]

Output: tests/fixtures/gemma3_reference.json (ids, text) and gemma3_reference_logits.npz.
The vocabulary has 262,144 entries, so the full last-position logits of all prompts would make
the .npz several MB. It therefore stores, per prompt i, only:
    prompt{i}_top_ids     int64[64]   ids of the 64 largest logits, largest first
    prompt{i}_top_logits  float32[64] those logits
    prompt{i}_argmax      int64[]     argmax over the full vocabulary
Without a path it takes the model from nextoken's cache (`nextoken pull`).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "In a small village",
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "<start_of_turn>user\nWhat is the tallest mountain on Earth?<end_of_turn>\n<start_of_turn>model\n",
    "Once upon a time, there was a robot named 42 who",
    "Le café est très bon, et 東京 est",
]
MAX_NEW_TOKENS = 32
TOP_K = 64


def main():
    if len(sys.argv) > 1:
        gguf_path = Path(sys.argv[1])
    else:
        home = Path(os.environ.get("NEXTOKEN_HOME", Path.home() / ".cache" / "nextoken"))
        gguf_path = home / "gemma-3-270m-q4_k_m.gguf"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
        attn_implementation="eager")
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = sorted(set([eos] if isinstance(eos, int) else list(eos or [])) | {tok.eos_token_id})
    print(f"loaded; eos ids {eos_ids}")

    records, logits = [], {}
    for i, prompt in enumerate(PROMPTS):
        ids = tok(prompt, add_special_tokens=True).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            last = model(x).logits[0, -1].float().numpy()
            out = model.generate(x, attention_mask=torch.ones_like(x),
                                 max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 eos_token_id=eos_ids, pad_token_id=tok.pad_token_id)
        new = out[0, len(ids):].tolist()
        records.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": new,
                        "greedy_text": tok.decode(new)})
        top = np.argsort(-last, kind="stable")[:TOP_K]
        logits[f"prompt{i}_top_ids"] = top.astype(np.int64)
        logits[f"prompt{i}_top_logits"] = last[top].astype(np.float32)
        logits[f"prompt{i}_argmax"] = np.int64(np.argmax(last))
        print(f"{prompt!r} {ids} -> {tok.decode(new)!r}")

    fixtures = Path(__file__).parent / "fixtures"
    fixtures.mkdir(exist_ok=True)
    meta = {"model": gguf_path.name, "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": "float32", "attn_implementation": "eager",
            "add_special_tokens": True, "eos_token_ids": eos_ids,
            "max_new_tokens": MAX_NEW_TOKENS, "logits_top_k": TOP_K, "prompts": records}
    (fixtures / "gemma3_reference.json").write_text(
        json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    np.savez_compressed(fixtures / "gemma3_reference_logits.npz", **logits)
    print("done")


if __name__ == "__main__":
    main()
