"""The distribution the sampler draws from, exposed for tests and users: nextoken.sampling_distribution."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from . import _core
from ._core import Error
from .arrays import as_array, id_array


def _number(name, value, low, high, low_open=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and math.isfinite(float(value))
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise Error(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**31:
        raise Error(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def checked_params(vocab_size: int, *, greedy_ok: bool, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                   typical_p=1.0, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
                   no_repeat_ngram_size=0, logit_bias=None, bad_words_ids=None) -> dict:
    """The sampling parameters as the core takes them (a dict), each checked; a bad one is a nextoken.Error
    naming it. greedy_ok: temperature 0 (greedy decoding) is allowed."""
    if logit_bias is not None and not isinstance(logit_bias, Mapping):
        raise Error("logit_bias must be a dict {token id: value}")
    bias = []
    for token, value in (logit_bias or {}).items():
        token = _count("a logit_bias id", token)
        if token >= vocab_size:
            raise Error(f"logit_bias id {token} is outside the vocabulary [0, {vocab_size})")
        bias.append((token, _number(f"logit_bias[{token}]", value, -1e30, 1e30)))
    bad_words = []
    if bad_words_ids is not None and (isinstance(bad_words_ids, (str, bytes)) or not isinstance(bad_words_ids, Sequence)):
        raise Error("bad_words_ids must be a list of token-id lists")
    for word in bad_words_ids or []:
        if isinstance(word, (str, bytes)) or not isinstance(word, (Sequence, np.ndarray)) or len(word) == 0:
            raise Error(f"bad_words_ids must be a list of non-empty token-id lists, got {word!r} in it")
        ids = [_count("a bad_words_ids id", t) for t in word]
        if max(ids) >= vocab_size:
            raise Error(f"bad_words_ids id {max(ids)} is outside the vocabulary [0, {vocab_size})")
        bad_words.append(ids)
    return dict(
        temperature=_number("temperature", temperature, 0.0, 1e30, low_open=not greedy_ok),
        top_k=_count("top_k", top_k),
        top_p=_number("top_p", top_p, 0.0, 1.0, low_open=True),
        min_p=_number("min_p", min_p, 0.0, 1.0),
        typical_p=_number("typical_p", typical_p, 0.0, 1.0, low_open=True),
        repetition_penalty=_number("repetition_penalty", repetition_penalty, 0.0, 1e30, low_open=True),
        presence_penalty=_number("presence_penalty", presence_penalty, -1e30, 1e30),
        frequency_penalty=_number("frequency_penalty", frequency_penalty, -1e30, 1e30),
        no_repeat_ngram_size=_count("no_repeat_ngram_size", no_repeat_ngram_size),
        logit_bias=bias,
        bad_words_ids=bad_words)


def sampling_distribution(logits, previous_ids: Sequence[int] = (), **params) -> np.ndarray:
    """The probabilities (float32, one per logit) the next token is drawn from, given `logits` (V) and the
    ids before it (prompt and generated), after Hugging Face generate()'s processors in its order:
    logit_bias ({id: value}, added as SequenceBiasLogitsProcessor adds one-token sequences),
    repetition_penalty (HF: a seen id's logit divided by it if positive, multiplied if negative),
    presence_penalty and frequency_penalty (OpenAI's: minus presence if seen, minus frequency x count),
    no_repeat_ngram_size, bad_words_ids (a list of id sequences: each one's last id is banned when the
    ids end with the rest of it, always for one-id sequences), temperature (> 0), top_k (ties with the k-th kept), top_p, min_p, typical_p;
    then softmax. Defaults (temperature 1, top_k 0, top_p 1, min_p 0, typical_p 1, penalties 1 / 0 / 0,
    no n-gram size, no bias, no bad words) switch each off. Greedy decoding (temperature 0) has no distribution."""
    arr = as_array(logits, "logits")
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        raise Error(f"logits must be a non-empty 1-D float array, got shape {arr.shape} of {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)  # a view when float32 already
    history = id_array(previous_ids, "previous_ids", arr.size)
    sampling = checked_params(arr.size, greedy_ok=False, **params)
    return _core.ops.sampling_distribution(arr, history, sampling)
