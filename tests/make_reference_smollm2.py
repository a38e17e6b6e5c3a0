"""Record Hugging Face transformers' output on SmolLM2-135M-Instruct Q4_1 as the test oracle.

Run by hand, never in CI (it needs torch). It loads the same GGUF file nextoken uses into
transformers in fp32 (transformers dequantizes every tensor to fp32, so both engines see the
same weights) and writes, for each prompt: the prompt token ids, the greedy continuation
(up to 32 tokens, stopping at EOS exactly as `generate()` does) and the last-position logits.

    python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 transformers accelerate gguf tokenizers
    /tmp/refenv/bin/python tests/make_reference_smollm2.py [path/to/model.gguf]

Output: tests/fixtures/smollm2_reference.json (ids) and smollm2_reference_logits.npz (logits).
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
    "Photosynthesis is the process by which",
    "Once upon a time, there was a robot named 42 who",
    "<|im_start|>user\nWhat is the tallest mountain on Earth?<|im_end|>\n<|im_start|>assistant\n",
]
MAX_NEW_TOKENS = 32


def main():
    if len(sys.argv) > 1:
        gguf_path = Path(sys.argv[1])
    else:
        home = Path(os.environ.get("NEXTOKEN_HOME", Path.home() / ".cache" / "nextoken"))
        gguf_path = home / "SmolLM2-135M-Instruct.Q4_1.gguf"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    model.eval()

    records, logits = [], {}
    for i, prompt in enumerate(PROMPTS):
        ids = tok(prompt, add_special_tokens=False).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            last = model(x).logits[0, -1].float().numpy()
            out = model.generate(x, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        new = out[0, len(ids):].tolist()
        records.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": new,
                        "greedy_text": tok.decode(new)})
        logits[f"prompt{i}"] = last.astype(np.float32)
        print(f"{prompt!r} -> {tok.decode(new)!r}")

    fixtures = Path(__file__).parent / "fixtures"
    fixtures.mkdir(exist_ok=True)
    meta = {"model": gguf_path.name, "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": "float32", "eos_token_id": tok.eos_token_id,
            "max_new_tokens": MAX_NEW_TOKENS, "prompts": records}
    (fixtures / "smollm2_reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(fixtures / "smollm2_reference_logits.npz", **logits)


if __name__ == "__main__":
    main()
