"""The reference that nextoken's GGUF tokenizer (csrc/tokenizer) is checked against: a Hugging Face
`tokenizers.Tokenizer` built from a GGUF file's vocabulary the way transformers' GGUF conversion builds
it (integrations/gguf/gguf_tokenizer_mapping.py), written with the `tokenizers` components directly.

build(metadata) -> (tokenizer, bos id to prepend or -1); encode(tokenizer, bos, text, parse_special).

Byte-level BPE ("gpt2"): the file's merges; the pre-tokenizer by tokenizer.ggml.pre.

SentencePiece ("llama"):
The model is a BPE with byte fallback whose merges are recovered from the vocabulary as transformers'
`generate_merges` does: every cut of a token into two halves that are tokens too, best first. The sort key
is the token's score, except for Gemma, whose scores do not follow its merge order: there it is the
token's position in the file. Ties go to the longer left half, then the longer right half, then file order.

  Gemma (gemma, gemma2, gemma3): tokens made only of whitespace that include a space are respelled as
      '▁' * length; normalizer Replace(' ', '▁'); no prefix space; decoder Replace + ByteFallback + Fuse.
  others (Llama 2 style): Metaspace pre-tokenizer putting '▁' before the start of the text (not after a
      special token: prepend_scheme "first"); the decoder strips that one space again. Like transformers,
      tokenizer.ggml.add_space_prefix is not consulted.

Control tokens become special added tokens, user-defined ones plain added tokens; the BOS/EOS/UNK/PAD
tokens the file names are special too. There is no post-processor: the caller prepends BOS when the
returned flag says so.
"""
from __future__ import annotations

import gc

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

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




def build(meta: dict):
    """(tokenizer, BOS id to prepend or -1) for a GGUF file's metadata."""
    tokens = list(meta["tokenizer.ggml.tokens"])
    bos = int(meta.get("tokenizer.ggml.bos_token_id", -1))
    if meta.get("tokenizer.ggml.model") == "llama":
        tk, add_bos = _build_spm(meta)
        return tk, bos if add_bos else -1
    types = [int(t) for t in meta.get("tokenizer.ggml.token_type", [1] * len(tokens))]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = _PRE_TOKENIZERS[meta.get("tokenizer.ggml.pre", "default")]()
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, ty in enumerate(types) if ty == CONTROL])
    tk.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                   for i, ty in enumerate(types) if ty == USER_DEFINED])
    return tk, bos if meta.get("tokenizer.ggml.add_bos_token", False) else -1


def encode(tk, bos: int, text: str, parse_special: bool = True) -> list:
    """What nextoken's tokenize(text, parse_special) should give."""
    tk.encode_special_tokens = not parse_special
    try:
        return ([bos] if bos >= 0 else []) + tk.encode(text, add_special_tokens=False).ids
    finally:
        tk.encode_special_tokens = False


CONTROL, USER_DEFINED = 3, 4
GEMMA = ("gemma", "gemma2", "gemma3")
_M = 1 << 64


class _Hash:
    """64-bit polynomial hashes of the substrings of a string of code points, modulo 2**64."""

    def __init__(self, cp, base: int, mul: int):
        with np.errstate(over="ignore"):
            c = cp * np.uint64(mul) + np.uint64(1)
            self.pw = pw = np.empty(len(cp) + 1, np.uint64)
            pw[0] = 1
            np.cumprod(np.full(len(cp), np.uint64(base)), out=pw[1:])                  # base**i
            self.ipw = np.empty(len(cp) + 1, np.uint64)
            self.ipw[0] = 1
            np.cumprod(np.full(len(cp), np.uint64(pow(base, -1, _M))), out=self.ipw[1:])   # base**-i
            self.g = np.zeros(len(cp) + 1, np.uint64)
            np.cumsum(c * pw[:-1], out=self.g[1:])                                     # sum_{i<j} c[i]*base**i

    def __call__(self, a, b):
        """Hash of characters [a, b), the same wherever the substring sits."""
        with np.errstate(over="ignore"):
            return (self.g[b] - self.g[a]) * self.ipw[a]


def _splits(tokens: list, vocab: dict):
    """(token index, left id, right id) for every cut of a distinct token (taken at its first position) into
    two halves that are in `vocab` too, in token order then cut order; ids are `vocab`'s.

    Halves are looked up by hash in a vectorised open-addressing table, and each hit is confirmed by its
    lengths and a second, independent 64-bit hash. Should two different tokens share a hash, the plain
    Python loop is used instead.
    """
    n = len(tokens)
    lens = np.fromiter(map(len, tokens), np.int64, n)
    cp = np.frombuffer("".join(tokens).encode("utf-32-le"), np.uint32).astype(np.uint64)
    start = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=start[1:])
    if len(vocab) == n:
        last, first = np.arange(n), np.ones(n, bool)
    else:                                                       # repeated tokens: vocab keeps the last id
        last = np.fromiter((vocab[t] for t in tokens), np.int64, n)
        first = np.zeros(n, bool)
        first[sorted({t: i for i, t in reversed(list(enumerate(tokens)))}.values())] = True
    h1 = _Hash(cp, 0x9E3779B97F4A7C15, 1)
    h2 = _Hash(cp, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)
    full = h1(start[:-1], start[1:])
    bits = max(10, int(n).bit_length() + 2)                     # a table at most a quarter full
    mask, shift, mix = (1 << bits) - 1, np.uint64(64 - bits), np.uint64(0xD6E8FEB86659FD93)
    tab_h = np.zeros(1 << bits, np.uint64)                      # 0 marks an empty slot
    tab_i = np.zeros(1 << bits, np.int64)

    def slot(x):
        with np.errstate(over="ignore"):
            return ((x * mix) >> shift).astype(np.int64)

    ph, pid = full[first & (lens > 0)], last[first & (lens > 0)]   # insert, linear probing one step a round
    if not ph.all():
        return _splits_python(tokens, vocab)
    s = slot(ph)
    while len(ph):
        th = tab_h[s]
        same = th == ph
        if np.any(same & (tab_i[s] != pid)):
            return _splits_python(tokens, vocab)                # two tokens share a hash
        free = th == 0
        tab_i[s[free]] = pid[free]                              # one of the keys aiming at a free slot wins it
        won = free & (tab_i[s] == pid)
        tab_h[s[won]] = ph[won]
        stay = ~(same | won)
        s = np.where(free, s, s + 1)[stay] & mask               # the losers look at that slot again
        ph, pid = ph[stay], pid[stay]

    def find(q):                                                # vocab id of each hash, or -1
        out = np.full(len(q), -1, np.int64)
        idx, s = np.arange(len(q)), slot(q)
        while len(idx):
            th = tab_h[s]
            hit = th == q
            out[idx[hit]] = tab_i[s[hit]]
            go = (th != 0) & ~hit
            idx, s, q = idx[go], (s[go] + 1) & mask, q[go]
        return out

    inner = np.ones(int(start[-1]), bool)                       # every cut c strictly inside a token
    inner[start[:-1][lens > 0]] = False
    owner = np.repeat(np.arange(n), lens)
    if len(vocab) != n:
        inner &= first[owner]
    c = np.nonzero(inner)[0]
    u = owner[c]
    lid = find(h1(start[u], c))
    u, c, lid = u[lid >= 0], c[lid >= 0], lid[lid >= 0]
    rid = find(h1(c, start[u + 1]))
    u, c, lid, rid = u[rid >= 0], c[rid >= 0], lid[rid >= 0], rid[rid >= 0]
    k = lens[lid]
    ok = (k == c - start[u]) & (lens[u] == k + lens[rid])
    full2 = h2(start[:-1], start[1:])
    with np.errstate(over="ignore"):                            # h2(left + right) == h2(token)
        ok &= full2[u] == full2[lid] + full2[rid] * h2.pw[k]
    return u[ok], lid[ok], rid[ok]


def _splits_python(tokens, vocab):
    out, seen = [], set()
    for i, t in enumerate(tokens):
        if t not in seen:
            seen.add(t)
            out += [(i, vocab[t[:k]], vocab[t[k:]]) for k in range(1, len(t)) if t[:k] in vocab and t[k:] in vocab]
    arr = np.array(out, np.int64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def merges_from_vocab(tokens: list, vocab: dict, key) -> list:
    """transformers' generate_merges(vocab, dict(zip(tokens, key))): the cuts of each token into two tokens,
    sorted by the token's key (higher first; a repeated token has its last key), then longer left half, then
    longer right half, then the token's first position. A merge rests on two independent 64-bit hashes of
    its halves agreeing with the token's."""
    n = len(tokens)
    u, lid, rid = _splits(tokens, vocab)
    last = u if len(vocab) == n else np.fromiter((vocab[tokens[i]] for i in u.tolist()), np.int64, len(u))
    lens = np.fromiter(map(len, tokens), np.int64, n)
    rank = np.unique(-np.asarray(key, np.float64), return_inverse=True)[1].reshape(-1)   # 0 = highest key
    width = int(lens.max(initial=0)) + 1
    if len(u) == 0 or (n * width * width) >= 1 << 62:
        order = np.lexsort((u, -lens[rid], -lens[lid], rank[last]))
    else:                                                       # stable: u already ascends
        order = np.argsort((rank[last] * width + (width - 1 - lens[lid])) * width + (width - 1 - lens[rid]),
                           kind="stable")
    names = np.array(tokens, dtype=object)
    return list(zip(names[lid[order]].tolist(), names[rid[order]].tolist()))


def _build_spm(meta: dict) -> tuple[Tokenizer, bool]:
    """The tokenizer of a GGUF SentencePiece vocabulary (without post-processor), and whether BOS is added."""
    enabled = gc.isenabled()
    gc.disable()                 # ~10**6 new tuples and strings: the cyclic collector would only slow this down
    try:
        return _build(meta)
    finally:
        if enabled:
            gc.enable()


def _build(meta: dict) -> tuple[Tokenizer, bool]:
    tokens = list(meta["tokenizer.ggml.tokens"])
    n = len(tokens)
    types = np.asarray(meta.get("tokenizer.ggml.token_type", np.ones(n)), np.int64)
    scores = meta.get("tokenizer.ggml.scores", np.zeros(n))
    arch = meta.get("general.architecture", "")
    gemma = arch in GEMMA
    spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens] if gemma else tokens
    vocab = dict(zip(spelled, range(n)))
    if "tokenizer.ggml.merges" in meta:
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    else:
        if gemma:
            key = -np.arange(n, dtype=np.float64)
        else:
            key = np.asarray(scores, np.float64)
        merges = merges_from_vocab(spelled, vocab, key)
    if gemma:
        tk = _bpe(vocab, merges, unk_token="<unk>")
        tk.normalizer = normalizers.Replace(" ", "\u2581")
        tk.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
        tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    else:
        tk = _bpe(vocab, merges)
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                        decoders.Strip(" ", 1, 0)])
    control = [tokens[i] for i in np.nonzero(types == CONTROL)[0].tolist()]
    user = [tokens[i] for i in np.nonzero(types == USER_DEFINED)[0].tolist() if tokens[i] in vocab]
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tk.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    # the special tokens the file names: transformers adds them (GemmaTokenizer also "<mask>") if not yet added
    named = [meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")]
    names = [tokens[int(i)] for i in named if isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < n]
    names += ["<mask>"] if gemma else []
    done = set(control) | set(user)
    tk.add_special_tokens([AddedToken(t, special=True) for t in dict.fromkeys(names) if t not in done])
    return tk, bool(meta.get("tokenizer.ggml.add_bos_token", True))


def _bpe(vocab, merges, **kw) -> Tokenizer:
    return Tokenizer(models.BPE(vocab, merges, fuse_unk=True, byte_fallback=True, **kw))
