"""Text <-> token ids: a GGUF file's vocabulary by the core (csrc/tokenizer, the same code the C API's
nt_tokenize runs), a Hugging Face folder's tokenizer.json with Hugging Face `tokenizers`, a Marian folder
with sentencepiece.

The core builds a GGUF vocabulary's tokenizer the way transformers' GGUF conversion builds a
`tokenizers.Tokenizer` from it (tests/hf_gguf_tokenizer.py does that conversion, to check ours against).
"""
from __future__ import annotations

import json

from tokenizers import Tokenizer as HFTokenizer

from ._core import Error


def _ids(value) -> list:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _check_text(text: str):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise Error(f"the text is not valid Unicode: {e.reason} at index {e.start}") from None


class Tokenizer:
    """A `tokenizers.Tokenizer` plus what generation needs from the model files: EOS ids, the chat template."""

    def __init__(self, tk: HFTokenizer, vocab_size: int, eos_ids, add_special_tokens: bool, bos_id: int = -1,
                 chat_template: str = ""):
        self._tk = tk
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.add_bos = bos_id >= 0       # prepended by hand
        self._add_special = add_special_tokens  # the tokenizer's own post-processor adds them (tokenizer.json)
        self.eos_ids = sorted({i for i in eos_ids if 0 <= i < vocab_size})
        self.chat_template = chat_template
        self._tk_literal = None  # a copy that reads special tokens as plain text, made when first needed

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
        _check_text(text)
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


class GGUFTokenizer(Tokenizer):
    """A GGUF file's vocabulary (tokenizer.ggml.*), encoded and decoded by the core: core_tokenizer is
    loaders.gguf.read(path).tokenizer."""

    def __init__(self, core_tokenizer):
        self._core = core_tokenizer
        self.vocab_size = core_tokenizer.vocab_size
        self.bos_id = core_tokenizer.bos_id
        self.add_bos = self.bos_id >= 0
        self.eos_ids = sorted(core_tokenizer.eos_ids)
        self.chat_template = core_tokenizer.chat_template

    def encode(self, text: str, parse_special: bool = True, add_bos: bool = True) -> list[int]:
        _check_text(text)
        return self._core.encode(text, parse_special, add_bos)

    def has_special(self, ids) -> bool:
        return any(self._core.is_special(i) for i in ids)

    def token_text(self, token_id: int) -> str:
        return self._core.token_text(token_id)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._core.decode(list(ids), skip_special_tokens)


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
        self._ids: list[int] = []  # the window: the prefix (released already), then the tokens held back
        self._read = 0             # where the prefix ends

    def push(self, token: int) -> str:
        self._ids.append(token)
        prefix_text = self._tokenizer.decode(self._ids[:self._read]) if self._read else ""
        text = self._tokenizer.decode(self._ids)
        if text.endswith("\ufffd") or len(text) <= len(prefix_text):
            return ""
        del self._ids[:self._read]  # the released tokens are the next prefix; those before are never needed again
        self._read = len(self._ids)
        return text[len(prefix_text):]

    def flush(self) -> str:
        """The text still held back. Tokens that end inside a character (cut by max_new_tokens or a stop)
        decode to U+FFFD: that incomplete character is dropped."""
        prefix_text = self._tokenizer.decode(self._ids[:self._read]) if self._read else ""
        text = self._tokenizer.decode(self._ids) if len(self._ids) > self._read else prefix_text
        self._ids, self._read = [], 0
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
        _check_text(text)
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
