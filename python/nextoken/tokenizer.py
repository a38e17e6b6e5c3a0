"""Text <-> token ids, with Hugging Face `tokenizers`: a folder's tokenizer.json as it is, or one built
from the vocabulary stored in a GGUF file.

GGUF keeps the tokenizer as data (tokens, merges, token types, and a pre-tokenizer name); from_gguf turns
that data into a `tokenizers.Tokenizer` the way the original Hugging Face tokenizer.json was set up.
"""
from __future__ import annotations

import json

import numpy as np
from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

from . import spm_vocab
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


def _ids(value) -> list:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _check_gguf_types(meta: dict):
    """A GGUF file can hold a value of any type under any key: each tokenizer key read here must hold the
    type it is read as, else a nextoken.Error names the key."""
    def check(key, ok, what):
        if key in meta and not ok(meta[key]):
            value = meta[key]
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise Error(f"the GGUF metadata '{key}' must be {what}, got {type(value).__name__} {shown}")

    def number_array(kinds):  # a numpy array of those dtype kinds, or a list of such numbers
        def ok(v):
            if isinstance(v, list):
                return all(isinstance(x, (int, float, np.number)) and np.asarray(x).dtype.kind in kinds for x in v)
            return isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in kinds
        return ok
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"):
        check(key, lambda v: isinstance(v, str), "a string")
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        check(key, lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "an array of strings")
    check("tokenizer.ggml.token_type", number_array("iu"), "an array of integers")
    check("tokenizer.ggml.scores", number_array("iuf"), "an array of numbers")
    check("tokenizer.ggml.add_bos_token", lambda v: isinstance(v, (bool, np.bool_)) or
          isinstance(v, (int, np.integer)) and v in (0, 1), "true or false")
    for name in ("bos", "eos", "eot", "unknown", "padding"):
        check(f"tokenizer.ggml.{name}_token_id",
              lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)), "an integer")


class Tokenizer:
    """A `tokenizers.Tokenizer` plus what generation needs from the model files: EOS ids, the chat template."""

    def __init__(self, tk: HFTokenizer, vocab_size: int, eos_ids, add_special_tokens: bool, bos_id: int = -1,
                 chat_template: str = ""):
        self._tk = tk
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.add_bos = bos_id >= 0       # prepended by hand (GGUF vocabularies)
        self._add_special = add_special_tokens  # the tokenizer's own post-processor adds them (tokenizer.json)
        self.eos_ids = sorted({i for i in eos_ids if 0 <= i < vocab_size})
        self.chat_template = chat_template
        self._tk_literal = None  # a copy that reads special tokens as plain text, made when first needed

    @classmethod
    def from_gguf(cls, meta: dict) -> "Tokenizer":
        """Built from the vocabulary stored in a GGUF file (tokenizer.ggml.*)."""
        def get(key, default):
            return meta.get(key, default)
        _check_gguf_types(meta)
        tokens = get("tokenizer.ggml.tokens", [])
        if not tokens:
            raise Error("the GGUF file has no tokenizer (tokenizer.ggml.tokens)")
        model, pre = get("tokenizer.ggml.model", ""), get("tokenizer.ggml.pre", "default")
        bos = int(get("tokenizer.ggml.bos_token_id", -1))
        eos = [int(get("tokenizer.ggml.eos_token_id", -1)), int(get("tokenizer.ggml.eot_token_id", -1))]
        template = get("tokenizer.chat_template", "")
        if model == "llama":  # SentencePiece (Llama 2, Gemma): BOS added unless the file says otherwise
            tk, add_bos = spm_vocab.build(meta)
            return cls(tk, len(tokens), eos, False, bos if add_bos else -1, template)
        if model != "gpt2":
            raise Error(f"tokenizer model '{model}' is not supported (supported: gpt2 byte-level BPE, "
                        "llama SentencePiece)")
        if pre not in _PRE_TOKENIZERS:
            raise Error(f"pre-tokenizer '{pre}' is not supported (supported: {', '.join(_PRE_TOKENIZERS)})")
        types = [int(t) for t in get("tokenizer.ggml.token_type", [1] * len(tokens))]
        if len(types) != len(tokens):
            raise Error(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
        vocab = {tok: i for i, tok in enumerate(tokens)}
        merges = [tuple(m.split(" ", 1)) for m in get("tokenizer.ggml.merges", [])]
        if any(len(m) != 2 for m in merges):
            bad = next(" ".join(m) for m in merges if len(m) != 2)
            raise Error(f"tokenizer.ggml.merges holds {bad!r}: a merge is two tokens separated by a space")
        try:
            tk = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        except Exception as e:  # tokenizers raises its own Exception for merges of unknown tokens
            raise Error(f"the GGUF vocabulary is not a valid BPE: {e}") from None
        tk.pre_tokenizer = _PRE_TOKENIZERS[pre]()
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                               for i, ty in enumerate(types) if ty == CONTROL])
        tk.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                       for i, ty in enumerate(types) if ty == USER_DEFINED])
        add_bos = bool(get("tokenizer.ggml.add_bos_token", False))
        return cls(tk, len(tokens), eos, False, bos if add_bos else -1, template)

    @classmethod
    def from_folder(cls, folder, config: dict, generation_config: dict) -> "Tokenizer":
        """tokenizer.json of a Hugging Face folder; EOS ids from generation_config.json, else config.json."""
        path = folder / "tokenizer.json"
        if not path.is_file() and (folder / "source.spm").is_file() and (folder / "vocab.json").is_file():
            return MarianTokenizer(folder, config, generation_config)
        if not path.is_file():
            raise Error(f"{folder} has no tokenizer.json")
        try:
            tk = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception type
            raise Error(f"{path}: not a readable tokenizer ({e})") from None
        eos = generation_config.get("eos_token_id", config.get("eos_token_id"))
        template = ""
        if (folder / "tokenizer_config.json").is_file():
            try:
                template = json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template") or ""
            except (ValueError, AttributeError, RecursionError):  # RecursionError: nested too deep to parse
                raise Error(f"{folder / 'tokenizer_config.json'} is not a JSON object") from None
        return cls(tk, tk.get_vocab_size(with_added_tokens=True), _ids(eos), True, chat_template=template)

    def encode(self, text: str, parse_special: bool = True, add_bos: bool = True) -> list[int]:
        """Token ids of `text`. parse_special: special tokens written in the text (e.g. <|im_start|>) become
        their ids, as Hugging Face does by default; False reads them as plain text (for untrusted text).
        add_bos: the BOS (or what tokenizer.json's post-processor adds) when the model asks for it."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Error(f"the text is not valid Unicode: {e.reason} at index {e.start}") from None
        tk = self._tk
        if not parse_special:
            if self._tk_literal is None:
                literal = HFTokenizer.from_str(self._tk.to_str())
                literal.encode_special_tokens = True
                self._tk_literal = literal
            tk = self._tk_literal
        ids = tk.encode(text, add_special_tokens=self._add_special and add_bos).ids
        return [self.bos_id] + ids if self.add_bos and add_bos else ids

    def has_special(self, ids) -> bool:
        """Whether any of `ids` is a special token (a prompt written with the chat markers, say)."""
        if not hasattr(self, "_special_ids"):
            self._special_ids = {i for i, t in self._tk.get_added_tokens_decoder().items() if t.special}
        return any(i in self._special_ids for i in ids)

    def token_text(self, token_id: int) -> str:
        return self._tk.id_to_token(token_id) or ""

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Turns token ids into text pieces as they arrive, never splitting a UTF-8 character.

    Each step decodes a short window: the tokens since the last released piece plus the tokens before it
    as context (prefix), and releases what the new tokens add to the prefix's text. The context keeps
    tokenizers whose decoders change a token's text at the start of a decode (SentencePiece strips a
    leading space) right; a window whose text ends in U+FFFD (bytes that end inside a character) is held
    back until the character is complete. Joining all pieces (with flush()) gives the text of decoding
    every id at once.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # window start: tokens before it are never decoded again
        self._read = 0    # tokens before this one have been released

    def push(self, token: int) -> str:
        self._ids.append(token)
        prefix_text = self._tokenizer.decode(self._ids[self._prefix:self._read]) if self._read > self._prefix else ""
        text = self._tokenizer.decode(self._ids[self._prefix:])
        if text.endswith("\ufffd") or len(text) <= len(prefix_text):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(prefix_text):]

    def flush(self) -> str:
        """The text still held back. Tokens that end inside a character (cut by max_new_tokens or a stop)
        decode to U+FFFD: that incomplete character is dropped."""
        prefix_text = self._tokenizer.decode(self._ids[self._prefix:self._read]) if self._read > self._prefix else ""
        text = self._tokenizer.decode(self._ids[self._prefix:]) if len(self._ids) > self._read else prefix_text
        self._prefix = self._read = len(self._ids)
        return text[len(prefix_text):].rstrip("\ufffd")


class MarianTokenizer(Tokenizer):
    """Marian folders (source.spm, target.spm, vocab.json): sources are split by the source SentencePiece model
    and the pieces looked up in vocab.json (unknown pieces: <unk>), then EOS appended; a leading language code
    like >>de<< is kept whole. Decoding maps ids back to pieces and joins them with the target model, as
    transformers' MarianTokenizer does (its optional Moses punctuation normaliser is not applied)."""

    def __init__(self, folder, config: dict, generation_config: dict):
        try:
            import sentencepiece
        except ImportError:
            raise Error('Marian tokenizers need sentencepiece: pip install "nextoken[translation]"') from None
        try:
            self._source = sentencepiece.SentencePieceProcessor(model_file=str(folder / "source.spm"))
            self._target = sentencepiece.SentencePieceProcessor(model_file=str(folder / "target.spm"))
            self._vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")) \
                if (folder / "tokenizer_config.json").is_file() else {}
        except (OSError, RuntimeError, ValueError) as e:
            raise Error(f"{folder}: not a readable Marian tokenizer ({e})") from None
        if not isinstance(self._vocab, dict) or not self._vocab or \
                not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self._vocab.values()):
            raise Error(f"{folder / 'vocab.json'}: expected an object of piece -> id (an integer >= 0)")
        if not isinstance(settings, dict):
            raise Error(f"{folder / 'tokenizer_config.json'}: expected a JSON object")
        self._pieces = {i: p for p, i in self._vocab.items()}
        names = [settings.get(k, d) for k, d in (("eos_token", "</s>"), ("unk_token", "<unk>"), ("pad_token", "<pad>"))]
        names = [n.get("content") if isinstance(n, dict) else n for n in names]  # an AddedToken's serialized form
        if not all(isinstance(n, str) for n in names):
            raise Error(f"{folder / 'tokenizer_config.json'}: eos_token, unk_token and pad_token must be strings")
        self._special = {self._vocab[n] for n in names if n in self._vocab}
        self._unk = self._vocab.get(names[1], 0)
        self._eos = self._vocab.get(names[0], 0)
        eos = generation_config.get("eos_token_id", config.get("eos_token_id", self._eos))
        self.vocab_size = max(self._pieces) + 1
        self.bos_id, self.add_bos = -1, False
        self.eos_ids = sorted({i for i in _ids(eos) if 0 <= i < self.vocab_size})
        self.chat_template = ""

    def encode(self, text: str, parse_special: bool = True, add_bos: bool = True) -> list[int]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise Error(f"the text is not valid Unicode: {e.reason} at index {e.start}") from None
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[:end + 2]], text[end + 2:]
        pieces = code + self._source.encode(text, out_type=str)
        return [self._vocab.get(p, self._unk) for p in pieces] + ([self._eos] if add_bos else [])

    def has_special(self, ids) -> bool:
        return any(i in self._special for i in ids)

    def token_text(self, token_id: int) -> str:
        return self._pieces.get(token_id, "")

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        out, run = "", []
        for i in ids:
            if i in self._special:
                out += self._target.decode_pieces(run) + ("" if skip_special_tokens else self._pieces[i] + " ")
                run = []
            else:
                run.append(self._pieces.get(i, self._pieces.get(self._unk, "")))
        out += self._target.decode_pieces(run)
        return out.replace("\u2581", " ").strip()
