"""nextoken.sampling_distribution against Hugging Face's logits processors, applied in generate()'s order
(tests/fixtures/sampling_reference.npz, made by tests/make_reference_sampling.py: 60 cases of random
logits, histories and parameter sets, 10 more with OpenAI's presence / frequency penalties computed
by the same script in torch, and 10 with bad_words_ids (HF's NoBadWordsLogitsProcessor) beside the others).

Tolerance: probabilities within 1e-6 absolute — both sides compute the softmax in float32 (ours sums in
double), so they agree to a few ulp of each probability. Three cases hinge on the order of exactly tied
logits at the top-p cut, which torch's unstable sort leaves unspecified (the script flags them): there
only the kept mass is compared."""
import json
from pathlib import Path

import numpy as np
import pytest

import nextoken

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "sampling_reference.npz")
PARAMS = json.loads(str(FIXTURE["params"]))


def kwargs(params):
    keys = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty", "presence_penalty",
            "frequency_penalty", "no_repeat_ngram_size")
    out = {k: params[k] for k in keys if k in params}
    out["logit_bias"] = {int(k): v for k, v in (params.get("logit_bias") or {}).items()}
    out["bad_words_ids"] = [[int(t) for t in word] for word in params.get("bad_words_ids") or []]
    return out


@pytest.mark.parametrize("i", range(len(PARAMS)))
def test_distribution_equals_transformers(i):
    logits, history, expected = FIXTURE[f"case{i}_logits"], FIXTURE[f"case{i}_history"], FIXTURE[f"case{i}_probs"]
    ours = nextoken.sampling_distribution(logits, history, **kwargs(PARAMS[i]))
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    if PARAMS[i].get("tie_sensitive"):
        assert abs(float(ours.sum()) - 1.0) < 1e-5 and np.abs(np.sort(ours) - np.sort(expected)).max() < 1e-6
    else:
        np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(min_p=-0.1), "min_p"),
    (dict(typical_p=0.0), "typical_p"), (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repetition_penalty=float("inf")), "repetition_penalty"), (dict(presence_penalty=float("nan")), "presence"),
    (dict(top_k=-1), "top_k"), (dict(no_repeat_ngram_size=1.5), "no_repeat_ngram_size"),
    (dict(logit_bias={99: 1.0}), "logit_bias"), (dict(logit_bias={1: float("inf")}), "logit_bias"),
])
def test_bad_parameters_are_named(bad, match):
    with pytest.raises(nextoken.Error, match=match):
        nextoken.sampling_distribution(np.zeros(10, np.float32), [1, 2], **bad)


# ---- the processors inside generate() ------------------------------------------------------------------------
PROCESSOR_SETS = [
    dict(repetition_penalty=1.5),
    dict(presence_penalty=0.8, frequency_penalty=0.4, logit_bias={7: 3.0, 11: -2.0}),
    dict(no_repeat_ngram_size=2),
    dict(min_p=0.1),
    dict(typical_p=0.5, repetition_penalty=0.9),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return nextoken.load(tiny_model_path[0], n_ctx=64, n_threads=2)


def steps(model, prompt, tokens):
    """(sequence so far, the engine's logits for the next token) before each generated token, EOS masked
    as min_new_tokens masks it."""
    seq = list(prompt)
    for token in tokens:
        logits = model.forward(seq)[-1]
        logits[model.eos_token_ids] = -np.inf
        yield seq, logits
        seq.append(token)


@pytest.mark.parametrize("params", PROCESSOR_SETS)
def test_greedy_applies_the_processors(tiny, params):
    """Hugging Face applies bias, penalties and n-gram bans in greedy decoding too (the warpers not)."""
    prompt = [3, 7, 7, 11, 3]
    out = tiny.generate(prompt, max_new_tokens=8, min_new_tokens=8, **params)
    processors = {k: v for k, v in params.items() if k not in ("min_p", "typical_p")}
    for (seq, logits), token in zip(steps(tiny, prompt, out), out):
        assert token == int(np.argmax(nextoken.sampling_distribution(logits, seq, **processors)))
    if params.get("no_repeat_ngram_size") == 2:
        pairs = list(zip(prompt + out, (prompt + out)[1:]))
        assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("params", PROCESSOR_SETS)
def test_every_draw_lies_in_the_distribution(tiny, params):
    prompt = [3, 7, 7, 11, 3]
    kw = dict(max_new_tokens=8, min_new_tokens=8, temperature=1.3, top_k=40, top_p=0.9, seed=3, **params)
    out = tiny.generate(prompt, **kw)
    assert tiny.generate(prompt, **kw) == out  # seeded
    dist_kw = {k: v for k, v in kw.items() if k not in ("max_new_tokens", "min_new_tokens", "seed")}
    for (seq, logits), token in zip(steps(tiny, prompt, out), out):
        assert nextoken.sampling_distribution(logits, seq, **dist_kw)[token] > 0


@pytest.mark.parametrize("bad,match", [
    (dict(min_p=1.5), "min_p"), (dict(typical_p=0.0), "typical_p"), (dict(repetition_penalty=-1.0), "repetition"),
    (dict(presence_penalty=float("nan")), "presence"), (dict(no_repeat_ngram_size=-1), "no_repeat"),
    (dict(logit_bias={10**6: 1.0}), "logit_bias"), (dict(logit_bias=[1, 2]), "logit_bias"),
    (dict(logit_bias={1: float("inf")}), "logit_bias"), (dict(frequency_penalty="x"), "frequency_penalty"),
])
def test_bad_generation_processors_are_named(tiny, bad, match):
    with pytest.raises(nextoken.Error, match=match):
        tiny.generate([1, 2], **bad)
