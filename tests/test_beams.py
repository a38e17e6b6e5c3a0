"""Beam search against Hugging Face generate(num_beams=...) on the tiny random checkpoints of tests/fixtures/hf
(tests/fixtures/beams_reference.json, made by tests/make_reference_beams.py with transformers 5.24: 18 cases
over llama, qwen2, gpt2, gemma3 and mistral; 2-4 beams, length_penalty 1 / 0 / 2 / -0.5, early_stopping
True / False / "never", EOS ids chosen so that hypotheses finish early, repetition_penalty and
no_repeat_ngram_size in some).

Tokens must be equal. Scores: both sides sum float32 log-probabilities; ours differ from torch's by the
logits' fp32 rounding (~1e-6 relative, test_hf.py) carried through log-softmax, so 1e-4 absolute on sums of
at most 16 log-probabilities of size < 10 is a bound ~10x above that. The script kept only cases whose
deciding score gaps exceed 1e-4 (and that give the same beams in float64), so such rounding cannot flip a
choice."""
import json
from pathlib import Path

import numpy as np
import pytest

import nextoken

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "fixtures" / "beams_reference.json").read_text())
CASES = REFERENCE["cases"]
_MODELS = {}


def model(name):
    if name not in _MODELS:
        _MODELS[name] = nextoken.load(HERE / "fixtures" / "hf" / name, n_ctx=64, n_threads=2)
    return _MODELS[name]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['case']}-{c['model']}" for c in CASES])
def test_beams_equal_transformers(case):
    p = case["params"]
    extra = {}
    if p.get("repetition_penalty", 1.0) != 1.0:
        extra["repetition_penalty"] = p["repetition_penalty"]
    if p.get("no_repeat_ngram_size", 0):
        extra["no_repeat_ngram_size"] = p["no_repeat_ngram_size"]
    beams = model(case["model"]).generate(
        case["prompt"], max_new_tokens=p["max_new_tokens"], num_beams=p["num_beams"],
        num_return_sequences=p["num_return_sequences"], length_penalty=p["length_penalty"],
        early_stopping=p["early_stopping"], eos_token_id=p["eos_token_id"], return_scores=True, **extra)
    assert [tokens for tokens, _ in beams] == case["sequences"]
    np.testing.assert_allclose([score for _, score in beams], case["sequences_scores"], rtol=0, atol=1e-4)


def test_the_done_when_call_returns_pairs_best_first():
    m = model("llama")
    beams = m.generate([5, 6, 7], num_beams=4, num_return_sequences=4, max_new_tokens=16, return_scores=True)
    assert len(beams) == 4 and all(isinstance(t, list) and isinstance(s, float) for t, s in beams)
    scores = [s for _, s in beams]
    assert scores == sorted(scores, reverse=True)
    assert m.generate([5, 6, 7], num_beams=4, max_new_tokens=16) == beams[0][0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_beams=4, temperature=0.7), "sampling"),
    (dict(num_beams=4, top_p=0.5), "sampling"),
    (dict(num_beams=4, length_penalty=float("nan")), "length_penalty"),
    (dict(num_beams=4, early_stopping="sometimes"), "early_stopping"),
    (dict(num_beams=0), "num_beams"),
    (dict(num_beams=4, max_new_tokens=100), "context overflow"),
])
def test_bad_beam_parameters_are_named(kwargs, message):
    kwargs = {"max_new_tokens": 8, **kwargs}
    with pytest.raises(nextoken.Error, match=message):
        model("llama").generate([5, 6, 7], **kwargs)
