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

from conftest import DEVICES

HERE = Path(__file__).parent / "fixtures" / "seq2seq"
TEXT = [n for n in ("t5", "t5_gated", "marian", "bart", "mbart") if (HERE / n / "reference.json").is_file()]
RTOL = 1e-4
_MODELS = {}


def fixture(name, device="cpu"):
    if (name, device) not in _MODELS:
        _MODELS[name, device] = (nextoken.load(HERE / name, n_ctx=64, n_threads=2, device=device),
                                 json.loads((HERE / name / "reference.json").read_text()),
                                 np.load(HERE / name / "reference.npz"))
    return _MODELS[name, device]


def close(actual, expected):
    scale = float(np.abs(expected).max())
    assert np.abs(actual.astype(np.float64) - expected).max() <= RTOL * scale


def test_every_family_has_a_fixture():
    assert {"t5", "t5_gated", "marian", "bart", "mbart"} <= set(TEXT)
    assert (HERE / "vit_gpt2" / "reference.json").is_file()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TEXT)
def test_tokenizer_encoder_and_teacher_forced_logits(name, device):
    model, ref, arrays = fixture(name, device)
    for i, source in enumerate(ref["sources"]):
        assert model.tokenize(source["text"]) == source["input_ids"]
        states = model.encode(source["input_ids"])
        close(states, arrays[f"src{i}_encoder_last_hidden_state"])
        close(model.forward(ref["decoder_input_ids"], encoder_hidden_states=states), arrays[f"src{i}_logits"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TEXT)
def test_greedy_equals_transformers(name, device):
    model, ref, _ = fixture(name, device)
    for case in ref["greedy"]:
        source = ref["sources"][case["source"]]
        n = len(case["new_tokens"])
        assert model.generate(source["input_ids"], max_new_tokens=n, min_new_tokens=n) == case["new_tokens"]
        assert model.generate(source["text"], max_new_tokens=n, min_new_tokens=n) == model.detokenize(case["new_tokens"])
    # a batch of sources of different lengths: each as alone
    sources = [s["input_ids"] for s in ref["sources"]]
    assert model.generate(sources, max_new_tokens=8, min_new_tokens=8) == \
        [model.generate(s, max_new_tokens=8, min_new_tokens=8) for s in sources]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TEXT)
def test_beams_equal_transformers(name, device):
    model, ref, _ = fixture(name, device)
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
    two = model.generate(encoder_hidden_states=states, max_new_tokens=6, temperature=1.0, seed=7, num_return_sequences=2)
    assert two == [model.generate(encoder_hidden_states=states, max_new_tokens=6, temperature=1.0, seed=s) for s in (7, 8)]


def test_bad_encoder_inputs_are_named(smollm2):
    model, ref, _ = fixture("t5")
    with pytest.raises(nextoken.Error, match=r"encoder_hidden_states must be \(S, 32\)"):
        model.forward([0, 5], encoder_hidden_states=np.zeros((3, 7), np.float32))
    with pytest.raises(nextoken.Error, match="decoder-only"):
        smollm2.generate("hi", max_new_tokens=2, encoder_hidden_states=np.zeros((3, 576), np.float32))
    with pytest.raises(nextoken.Error, match="decoder-only"):
        smollm2.encode("hi")
    with pytest.raises(nextoken.Error, match="encoder_hidden_states"):
        model.forward([0, 5], encoder_hidden_states=[[1.0, 2.0], [3.0]])  # ragged
    with pytest.raises(nextoken.Error, match="not both"):
        model.generate([5, 1], encoder_hidden_states=np.zeros((3, 32), np.float32))
    with pytest.raises(nextoken.Error, match="n_ctx|positions"):
        model.encode(list(range(2, 100)))  # longer than n_ctx = 64


@pytest.mark.parametrize("device", DEVICES)
def test_captioning_equals_transformers(device):
    """ViT + GPT-2: the image preprocessed here from image.png equals HF's pixel_values (Pillow's bilinear
    resize on the same uint8 image, then float32 rescale and normalise: exact up to float32 rounding, 1e-6);
    encoder states, teacher-forced logits, greedy and beams as for the text models."""
    model, ref, arrays = fixture("vit_gpt2", device)
    from nextoken import vision
    pixels = vision.preprocess(HERE / "vit_gpt2" / "image.png", model.vision)
    np.testing.assert_allclose(pixels, arrays["src0_pixel_values"][0], rtol=0, atol=1e-6)
    for i in range(len(ref["sources"])):
        pv = arrays[f"src{i}_pixel_values"]
        states = model.encode(pixel_values=pv)
        close(states, arrays[f"src{i}_encoder_last_hidden_state"])
        close(model.forward(ref["decoder_input_ids"], encoder_hidden_states=states), arrays[f"src{i}_logits"])
    for case in ref["greedy"]:
        n = len(case["new_tokens"])
        out = model.generate(pixel_values=arrays[f"src{case['source']}_pixel_values"], max_new_tokens=n,
                             min_new_tokens=n)
        # generate() drops a character cut at the end (U+FFFD from an incomplete byte sequence)
        assert out == model.detokenize(case["new_tokens"]).rstrip("\ufffd")
    assert model.generate(image=HERE / "vit_gpt2" / "image.png", max_new_tokens=6, min_new_tokens=6) == \
        model.generate(pixel_values=arrays["src0_pixel_values"], max_new_tokens=6, min_new_tokens=6)
    for case in ref["beams"]:
        p = case["params"]
        beams = model.beam_search(pixel_values=arrays[f"src{case['source']}_pixel_values"], num_beams=p["num_beams"],
                                  num_return_sequences=p["num_return_sequences"], max_new_tokens=p["max_new_tokens"],
                                  early_stopping=p["early_stopping"], length_penalty=p["length_penalty"],
                                  eos_token_id=case["eos_token_id"], return_scores=True)
        assert [t for t, _ in beams] == [model.detokenize(s) for s in case["sequences"]]
        np.testing.assert_allclose([s for _, s in beams], case["sequences_scores"], rtol=0, atol=1e-4)


def test_bad_images_are_named():
    model, _, _ = fixture("vit_gpt2")
    with pytest.raises(nextoken.Error, match=r"pixel_values must be \(3, 32, 32\)"):
        model.encode(pixel_values=np.zeros((3, 16, 16), np.float32))
    with pytest.raises(nextoken.Error, match=r"pixel_values must be"):
        model.encode(pixel_values=np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(nextoken.Error, match="cannot read the image"):
        model.encode(image=HERE / "vit_gpt2" / "config.json")
    with pytest.raises(nextoken.Error, match="encodes images"):
        model.generate("a text source", max_new_tokens=2)


def test_translate_and_caption_commands():
    import subprocess
    import sys
    model, ref, _ = fixture("marian")
    text = ref["sources"][0]["text"]
    done = subprocess.run([sys.executable, "-m", "nextoken", "translate", "--model", str(HERE / "marian"), text,
                           "--max-new-tokens", "8", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == model.generate(text, max_new_tokens=8) + "\n"
    captioner, _, _ = fixture("vit_gpt2")
    image = HERE / "vit_gpt2" / "image.png"
    done = subprocess.run([sys.executable, "-m", "nextoken", "caption", str(image), "--model", str(HERE / "vit_gpt2"),
                           "--max-new-tokens", "6", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == captioner.generate(image=image, max_new_tokens=6) + "\n"
