"""The distribution the sampler draws from, exposed for tests and users: nextoken.sampling_distribution."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from . import _core
from ._core import Error


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


def sampling_distribution(logits, previous_ids: Sequence[int] = (), *, temperature: float = 1.0, top_k: int = 0,
                          top_p: float = 1.0, min_p: float = 0.0, typical_p: float = 1.0,
                          repetition_penalty: float = 1.0, presence_penalty: float = 0.0,
                          frequency_penalty: float = 0.0, no_repeat_ngram_size: int = 0,
                          logit_bias: Mapping[int, float] | None = None) -> np.ndarray:
    """The probabilities (float32, one per logit) the next token is drawn from, given `logits` (V) and the
    ids before it (prompt and generated), after Hugging Face generate()'s processors in its order:
    logit_bias (added, as SequenceBiasLogitsProcessor with one-token sequences), repetition_penalty (HF:
    a seen id's logit divided by it if positive, multiplied if negative), presence_penalty and
    frequency_penalty (OpenAI's: minus presence if seen, minus frequency x count), no_repeat_ngram_size,
    temperature, top_k (ties with the k-th kept), top_p, min_p, typical_p; then softmax. Neutral values
    (the defaults) switch each off. Greedy decoding (temperature 0) has no distribution: use argmax."""
    arr = np.asarray(logits)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        raise Error("logits must be a non-empty 1-D float array")
    history = np.asarray(previous_ids if len(previous_ids) else np.zeros(0, np.int64))
    if history.ndim != 1 or (history.size and not np.issubdtype(history.dtype, np.integer)):
        raise Error("previous_ids must be a flat sequence of integers")
    if history.size and (history.min() < 0 or history.max() >= arr.size):
        raise Error(f"previous_ids must lie in [0, {arr.size})")
    bias = []
    for token, value in (logit_bias or {}).items():
        token = _count("a logit_bias id", token)
        if token >= arr.size:
            raise Error(f"logit_bias id {token} is outside the vocabulary [0, {arr.size})")
        bias.append((token, _number(f"logit_bias[{token}]", value, -1e30, 1e30)))
    return _core.ops.sampling_distribution(
        arr.astype(np.float32), history.astype(np.int32), bias,
        _number("repetition_penalty", repetition_penalty, 0.0, 1e30, low_open=True),
        _number("presence_penalty", presence_penalty, -1e30, 1e30),
        _number("frequency_penalty", frequency_penalty, -1e30, 1e30),
        _count("no_repeat_ngram_size", no_repeat_ngram_size),
        _number("temperature", temperature, 0.0, 1e30, low_open=True),
        _count("top_k", top_k),
        _number("top_p", top_p, 0.0, 1.0, low_open=True),
        _number("min_p", min_p, 0.0, 1.0),
        _number("typical_p", typical_p, 0.0, 1.0, low_open=True))
