"""Record how transformers renders and tokenizes SmolLM2's chat template (the one stored in its GGUF).

Run by hand, never in CI:

    /tmp/refenv/bin/python tests/make_reference_chat.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes tests/fixtures/chat_reference.json: per conversation, the messages, transformers'
apply_chat_template(..., add_generation_prompt=True) text, and its token ids (tokenize=True).
"""
import json
import os
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about 42 cats.\nKeep it short."}],
    [{"role": "user", "content": "Café, naïve, 東京 and emoji 🙂 — all fine?"}],
]


def main():
    home = Path(os.environ.get("NEXTOKEN_HOME", Path.home() / ".cache" / "nextoken"))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else home / "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    records = []
    for messages in CONVERSATIONS:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        records.append({"messages": messages, "text": text, "ids": list(ids)})
    out = Path(__file__).parent / "fixtures" / "chat_reference.json"
    out.write_text(json.dumps({"model": path.name, "transformers": transformers.__version__,
                               "conversations": records}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
