"""Encoder-decoder models against transformers on tiny random checkpoints (tests/fixtures/seq2seq/, made by
tests/make_tiny_seq2seq.py with transformers 5.24: T5 v1.0 and v1.1, Marian, BART, mBART, ViT + GPT-2),
weights drawn away from HF's init so that norms, biases, final_logits_bias and T5's bucket biases matter.

Tolerances: both sides compute in fp32 with different summation orders; on these 2 + 2 layer models the
encoder states and logits agree to a few 1e-6 of their largest magnitude. 1e-4 of it is the bound, as for
the decoder-only checkpoints (test_hf.py). Greedy and beam tokens must be equal: the script recorded the
smallest top-1/top-2 logit margin along each greedy path and kept only beam cases whose deciding score gaps
exceed 1e-4 (and that give the same beams in float64), far above that rounding."""
import json
from pathlib import Path

import numpy as np
import pytest

import nextoken

HERE = Path(__file__).parent / "fixtures" / "seq2seq"
TEXT = [n for n in ("t5", "t5_gated", "marian", "bart", "mbart") if (HERE / n / "reference.json").is_file()]
RTOL = 1e-4
_MODELS = {}


def fixture(name):
    if name not in _MODELS:
        _MODELS[name] = (nextoken.load(HERE / name, n_ctx=64, n_threads=2),
                         json.loads((HERE / name / "reference.json").read_text()), np.load(HERE / name / "reference.npz"))
    return _MODELS[name]


def close(actual, expected):
    scale = float(np.abs(expected).max())
    assert np.abs(actual.astype(np.float64) - expected).max() <= RTOL * scale


def test_every_family_has_a_fixture():
    assert {"t5", "t5_gated", "marian", "bart", "mbart"} <= set(TEXT)
    assert (HERE / "vit_gpt2" / "reference.json").is_file()


@pytest.mark.parametrize("name", TEXT)
def test_tokenizer_encoder_and_teacher_forced_logits(name):
    model, ref, arrays = fixture(name)
    for i, source in enumerate(ref["sources"]):
        assert model.tokenize(source["text"]) == source["input_ids"]
        states = model.encode(source["input_ids"])
        close(states, arrays[f"src{i}_encoder_last_hidden_state"])
        close(model.forward(ref["decoder_input_ids"], encoder_hidden_states=states), arrays[f"src{i}_logits"])


@pytest.mark.parametrize("name", TEXT)
def test_greedy_equals_transformers(name):
    model, ref, _ = fixture(name)
    for case in ref["greedy"]:
        source = ref["sources"][case["source"]]
        n = len(case["new_tokens"])
        assert model.generate(source["input_ids"], max_new_tokens=n, min_new_tokens=n) == case["new_tokens"]
        assert model.generate(source["text"], max_new_tokens=n, min_new_tokens=n) == model.detokenize(case["new_tokens"])
    # a batch of sources of different lengths: each as alone
    sources = [s["input_ids"] for s in ref["sources"]]
    assert model.generate(sources, max_new_tokens=8, min_new_tokens=8) == \
        [model.generate(s, max_new_tokens=8, min_new_tokens=8) for s in sources]


@pytest.mark.parametrize("name", TEXT)
def test_beams_equal_transformers(name):
    model, ref, _ = fixture(name)
    for case in ref["beams"]:
        p = case["params"]
        beams = model.generate(ref["sources"][case["source"]]["input_ids"], num_beams=p["num_beams"],
                               num_return_sequences=p["num_return_sequences"], max_new_tokens=p["max_new_tokens"],
                               early_stopping=p["early_stopping"], length_penalty=p["length_penalty"],
                               eos_token_id=case["eos_token_id"], return_scores=True)
        assert [tokens for tokens, _ in beams] == case["sequences"]
        np.testing.assert_allclose([s for _, s in beams], case["sequences_scores"], rtol=0, atol=1e-4)


def test_decoding_from_a_callers_features():
    """encoder_hidden_states from elsewhere (here our own encoder, through DLPack-capable numpy)."""
    model, ref, _ = fixture("t5")
    ids = ref["sources"][0]["input_ids"]
    states = model.encode(ids)
    assert model.generate(encoder_hidden_states=states, max_new_tokens=6, min_new_tokens=6) == \
        model.detokenize(model.generate(ids, max_new_tokens=6, min_new_tokens=6))


def test_bad_encoder_inputs_are_named(smollm2):
    model, ref, _ = fixture("t5")
    with pytest.raises(nextoken.Error, match=r"encoder_hidden_states must be \(S, 32\)"):
        model.forward([0, 5], encoder_hidden_states=np.zeros((3, 7), np.float32))
    with pytest.raises(nextoken.Error, match="decoder-only"):
        smollm2.generate("hi", max_new_tokens=2, encoder_hidden_states=np.zeros((3, 576), np.float32))
    with pytest.raises(nextoken.Error, match="decoder-only"):
        smollm2.encode("hi")
    with pytest.raises(nextoken.Error, match="not both"):
        model.generate([5, 1], encoder_hidden_states=np.zeros((3, 32), np.float32))
    with pytest.raises(nextoken.Error, match="n_ctx|positions"):
        model.encode(list(range(2, 100)))  # longer than n_ctx = 64
