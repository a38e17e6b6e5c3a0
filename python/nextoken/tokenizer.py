"""Text <-> token ids, with Hugging Face `tokenizers` built from the vocabulary stored in the GGUF file.

GGUF keeps the tokenizer as data (tokens, merges, token types, and a pre-tokenizer name); this module
turns that data into a `tokenizers.Tokenizer` the way the original Hugging Face tokenizer.json was set up.
"""
from __future__ import annotations

from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

from ._core import Error

CONTROL = 3       # GGUF token types (llama_token_type)
USER_DEFINED = 4

# Byte-level BPE pre-tokenizers by GGUF's `tokenizer.ggml.pre` name. "smollm" and "starcoder" split
# digits one by one before GPT-2's regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM / STARCODER).
_PRE_TOKENIZERS = {
    "default": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "smollm": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
    "starcoder": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
}


class Tokenizer:
    def __init__(self, spec: dict):
        if spec["model"] != "gpt2":
            raise Error(f"tokenizer model '{spec['model']}' is not supported (supported: gpt2 byte-level BPE)")
        if spec["pre"] not in _PRE_TOKENIZERS:
            raise Error(f"pre-tokenizer '{spec['pre']}' is not supported (supported: {', '.join(_PRE_TOKENIZERS)})")
        tokens = spec["tokens"]
        vocab = {tok: i for i, tok in enumerate(tokens)}
        merges = [tuple(m.split(" ", 1)) for m in spec["merges"]]
        tk = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        tk.pre_tokenizer = _PRE_TOKENIZERS[spec["pre"]]()
        tk.decoder = decoders.ByteLevel()
        types = spec["token_types"]
        tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                               for i, ty in enumerate(types) if ty == CONTROL])
        tk.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                       for i, ty in enumerate(types) if ty == USER_DEFINED])
        self._tk = tk
        self.vocab_size = len(tokens)
        self.bos_id = spec["bos_id"]
        self.add_bos = spec["add_bos"] and self.bos_id >= 0
        self.eos_ids = sorted({i for i in (spec["eos_id"], spec["eot_id"]) if 0 <= i < len(tokens)})
        self.chat_template = spec.get("chat_template", "")

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text (e.g. <|im_start|>) are recognised."""
        ids = self._tk.encode(text, add_special_tokens=False).ids
        return [self.bos_id] + ids if self.add_bos else ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Turns token ids into text pieces as they arrive, never splitting a UTF-8 character.

    Tokens are held back while their bytes end inside a character (decoded as U+FFFD); once the pending
    tokens decode cleanly their text is released and they are dropped, so each step decodes only a few
    tokens. Joining all pieces (with flush()) gives the text of decoding every id at once.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._pending: list[int] = []

    def push(self, token: int) -> str:
        self._pending.append(token)
        text = self._tokenizer.decode(self._pending)
        if text.endswith("\ufffd"):
            return ""
        self._pending.clear()
        return text

    def flush(self) -> str:
        text = self._tokenizer.decode(self._pending) if self._pending else ""
        self._pending.clear()
        return text
