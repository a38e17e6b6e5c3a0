"""Hugging Face folders (config.json + safetensors + tokenizer.json), loaded as they are, against
transformers' own output on the same weights (tests/fixtures/hf/, made by tests/make_tiny_hf.py).

Tolerance: both sides compute in fp32 with different summation orders and kernels (our exp, our RMS in
double, torch's SDPA-free eager attention); on 2-4 layer models the logits agree to ~3e-6 of the largest
logit. 1e-4 of it is the bound, as for SmolLM2 (test_smollm2.py): far below the gaps between top logits
that greedy decoding depends on (the smallest gap met is recorded in each reference.json).
"""
import json
from pathlib import Path

import numpy as np
import pytest

import nextoken

from conftest import DEVICES

HF = Path(__file__).parent / "fixtures" / "hf"
FOLDERS = sorted(p.name for p in HF.iterdir() if (p / "config.json").is_file())
RTOL = 1e-4


@pytest.fixture(scope="module", params=[(f, d) for f in FOLDERS for d in DEVICES],
                ids=[f if d == "cpu" else f"{f}-{d}" for f in FOLDERS for d in DEVICES])
def case(request):
    name, device = request.param
    folder = HF / name
    return nextoken.load(folder, n_ctx=64, n_threads=2, device=device), np.load(folder / "reference.npz"), folder


def close(actual, expected):
    scale = float(np.abs(expected).max())
    err = float(np.abs(actual.astype(np.float64) - expected).max())
    assert err <= RTOL * scale, f"max error {err:.3g} > {RTOL:g} x {scale:.3g}"


def test_every_architecture_has_a_fixture():
    kinds = {json.loads((HF / f / "config.json").read_text())["model_type"] for f in FOLDERS}
    assert {"llama", "mistral", "qwen2", "gpt2", "gemma3_text"} <= kinds


def test_logits_match_transformers(case):
    model, ref, _ = case
    logits = model.forward(ref["ids"])
    assert logits.dtype == np.float32 and logits.shape == ref["logits"].shape
    close(logits, ref["logits"])


def test_long_sequence_logits_match_transformers(case):
    """40 tokens: past the sliding window (8) of mistral and gemma3, whose logits it changes."""
    model, ref, _ = case
    close(model.forward(ref["long_ids"]), ref["long_logits"])


def test_greedy_tokens_match_transformers(case):
    model, ref, _ = case
    assert model.generate(ref["ids"], max_new_tokens=20, min_new_tokens=20) == ref["greedy"].tolist()


def test_greedy_stops_at_eos_as_transformers_does(case):
    model, ref, _ = case
    assert model.generate(ref["ids"], max_new_tokens=20) == ref["greedy_stop"].tolist()


def test_eos_ids_come_from_generation_config(case):
    model, _, folder = case
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert model.eos_token_ids == sorted(eos if isinstance(eos, list) else [eos])


def test_bf16_weights_give_the_same_tokens_as_their_fp32_upcast():
    """The bf16 folders' references were computed with the bf16 weights upcast to fp32: exactly what the
    kernels do on the fly. Same bound as above."""
    model = nextoken.load(HF / "llama_bf16", n_ctx=64, n_threads=1)
    ref = np.load(HF / "llama_bf16" / "reference.npz")
    close(model.forward(ref["ids"]), ref["logits"])


def test_text_prompt_uses_the_folder_tokenizer():
    from tokenizers import Tokenizer
    model = nextoken.load(HF / "gpt2", n_ctx=64, n_threads=1)
    text = "the cat sat on the mat"
    assert model.tokenize(text) == Tokenizer.from_file(str(HF / "gpt2" / "tokenizer.json")).encode(text).ids
    assert model.detokenize(model.tokenize(text)) == text
