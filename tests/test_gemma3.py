"""Gemma 3 270M Q4_K_M (GGUF) against Hugging Face transformers on the same file (fp32).

The fixture is written by tests/make_reference_gemma3.py (run by hand with torch installed): per prompt,
transformers' token ids (its SentencePiece conversion of the GGUF vocabulary, with <bos>), its greedy
continuation (32 tokens) and its 64 largest last-position logits. This model exercises most of the
config: sliding and global layers with two RoPE bases, q/k norms, sandwich norms, GeGLU, scaled
embeddings, 256-wide heads, a 262k vocabulary, and Q5_0, Q4_K, Q6_K and Q8_0 weights.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import nextoken

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "gemma3_reference.json").read_text())
PROMPTS = REFERENCE["prompts"]
LOGITS = np.load(FIXTURES / "gemma3_reference_logits.npz")

# As for SmolLM2 (test_smollm2.py): both engines compute in fp32 on identical dequantized weights and
# differ only in summation order, ~sqrt(K) * 2^-24 per dot product (K <= 2048) over ~7 x 18 matmuls:
# a random walk of ~4e-5 of the logit scale. 1e-4 x max|logit| leaves margin; defects move logits by units.
LOGIT_RTOL = 1e-4


@pytest.fixture(scope="module")
def gemma3():
    return nextoken.load(nextoken.pull("gemma3-270m", quiet=True), n_ctx=128, n_threads=2)


def test_reference_covers_enough():
    assert len(PROMPTS) >= 5 and all(len(p["greedy_ids"]) == 32 for p in PROMPTS)


@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_tokenizer_matches_transformers(gemma3, i):
    assert gemma3.tokenize(PROMPTS[i]["prompt"]) == PROMPTS[i]["prompt_ids"]  # <bos> first, as the file asks


@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_greedy_tokens_match_transformers(gemma3, i):
    p = PROMPTS[i]
    assert gemma3.generate(p["prompt_ids"], max_new_tokens=32) == p["greedy_ids"]


def test_text_generation_decodes_the_same_tokens(gemma3):
    p = PROMPTS[5]  # French and Japanese
    assert gemma3.generate(p["prompt"], max_new_tokens=32) == gemma3.detokenize(p["greedy_ids"])


@pytest.mark.parametrize("i", [0, 3, 5])
def test_top_logits_match_transformers(gemma3, i):
    ours = gemma3.forward(PROMPTS[i]["prompt_ids"])[-1]
    top, theirs = LOGITS[f"prompt{i}_top_ids"], LOGITS[f"prompt{i}_top_logits"]
    assert int(ours.argmax()) == int(LOGITS[f"prompt{i}_argmax"])
    err = np.abs(ours[top].astype(np.float64) - theirs).max()
    assert err <= LOGIT_RTOL * np.abs(theirs).max(), f"max |logit difference| {err:.3g}"


def test_int8_compute_keeps_transformers_top_choice_close():
    """compute_type="int8" (its Q4_K, Q5_0, Q6_K and Q8_0 matrices repacked) moves logits by
    the activation quantization error: its top token stays among transformers' three best."""
    model = nextoken.load(nextoken.pull("gemma3-270m", quiet=True), n_ctx=128, n_threads=2, compute_type="int8")
    for i, p in enumerate(PROMPTS):
        ours = model.forward(p["prompt_ids"])[-1]
        assert int(ours.argmax()) in LOGITS[f"prompt{i}_top_ids"][:3].tolist()
