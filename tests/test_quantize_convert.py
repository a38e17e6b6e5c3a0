"""Quantizing float checkpoints at load (weights=), merging LoRA adapters (lora=), and writing GGUF files
(nextoken convert), each against an independent reference: llama.cpp's quantizers (gguf.quants, and ggml's
Q4_K rounding as written in nextoken.reference), PEFT's merged model (tests/fixtures/lora/, made by
tests/make_tiny_lora.py), and the model loaded from its folder."""
from pathlib import Path

import numpy as np
import pytest

import nextoken
from nextoken import ops
from nextoken import reference as ref

from conftest import edited_copy

HF = Path(__file__).parent / "fixtures" / "hf"
LORA = Path(__file__).parent / "fixtures" / "lora"


# ---- the quantizers ---------------------------------------------------------------------------------------
def test_quantizers_match_gguf_bit_for_bit():
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize as gguf_quantize
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 256)) * np.array([1e-4, 1, 100, 1, 3, 1e-30, 7])[:, None]).astype(np.float32)
    x[3] = 0.0  # +0.0: a block that starts with -0.0 is the one case where gguf-py's Q4_0 (d = +0) and
    #             llama.cpp's C quantizer (d = -0) differ; we follow the C code
    for w_type in (ref.Q8_0, ref.Q4_0):
        theirs = gguf_quantize(x, GGMLQuantizationType(w_type)).reshape(-1)
        np.testing.assert_array_equal(ops.quantize(x, w_type), theirs)
        np.testing.assert_array_equal(ref.quantize(x, w_type), theirs)


def test_q4_k_quantizer_matches_the_reference_rounding():
    """Against the numpy transcription of ggml's quantize_row_q4_K_ref in nextoken.reference (checked bit for
    bit against ggml's own C function when it was written: 18,464 super-blocks of varied data)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 512)) * np.array([1e-3, 1, 50, 0, 2, 1e-20])[:, None]).astype(np.float32)
    x[4, :100] = 0.0  # a sub-block of zeros next to live ones
    ours = ops.quantize(x, ref.Q4_K, 2)
    np.testing.assert_array_equal(ours, ref.quantize(x, ref.Q4_K))
    # and it decodes close to x where f16 scales are normal: within 1/15 of each 32-block's range
    back = ops.dequantize(ours, ref.Q4_K, 6, 512)
    span = np.ptp(x.reshape(-1, 32), axis=1).repeat(32).reshape(x.shape)
    assert np.all(np.abs(back - x)[[1, 2, 4]] <= span[[1, 2, 4]] / 15)
    assert np.all(back[3] == 0)


# ---- weights= at load --------------------------------------------------------------------------------------
def folder_with(tmp_path, name, edit):
    """A copy of fixture folder `name` whose float32 tensors (name -> array) went through edit()."""
    return edited_copy(HF / name, tmp_path / name, edit_tensors=edit)


MATRICES = ("proj.weight", "embed_tokens.weight", "lm_head.weight")


@pytest.mark.parametrize("weights,w_type", [("q8_0", ref.Q8_0), ("q4_0", ref.Q4_0), ("q4_k", ref.Q4_K)])
def test_quantize_at_load_computes_with_the_quantized_weights(tmp_path, weights, w_type):
    """weights= gives exactly the logits of the same folder with every matrix replaced by its quantized-then-
    dequantized values (reference quantizer): the kernels reduce every weight type in the same order, so
    the two agree bit for bit. Q4_K needs rows of 256: these 32- and 64-wide matrices fall back to Q8_0."""
    effective = ref.Q8_0 if w_type == ref.Q4_K else w_type

    def dequantized(tensors):
        for n, t in tensors.items():
            if n.endswith(MATRICES):
                tensors[n] = ref.dequantize(ref.quantize(t, effective), effective, *t.shape)
    model = nextoken.load(HF / "llama", n_ctx=64, n_threads=2, weights=weights)
    expected = nextoken.load(folder_with(tmp_path, "llama", dequantized), n_ctx=64, n_threads=2)
    ids = np.load(HF / "llama" / "reference.npz")["ids"]
    np.testing.assert_array_equal(model.forward(ids), expected.forward(ids))
    assert np.abs(model.forward(ids) - nextoken.load(HF / "llama", n_ctx=64).forward(ids)).max() > 1e-4


def test_quantize_at_load_with_int8_compute():
    """Quantized at load, the matrices take the int8 path: the logits then move from the same weights'
    fp32 compute by the activation quantization error only, of the size documented for SmolLM2
    (normalised MSE ~1e-3 to 1e-2; measured 1.5e-3 here)."""
    ids = np.load(HF / "qwen2" / "reference.npz")["ids"]
    int8 = nextoken.load(HF / "qwen2", n_ctx=64, n_threads=2, weights="q8_0", compute_type="int8").forward(ids)
    fp32 = nextoken.load(HF / "qwen2", n_ctx=64, n_threads=2, weights="q8_0").forward(ids)
    nmse = float(((int8 - fp32) ** 2).mean() / (fp32 ** 2).mean())
    assert 1e-6 < nmse < 1e-2, nmse  # non-zero: the int8 kernels ran


def test_bad_weights_value():
    with pytest.raises(nextoken.Error, match="weights must be one of"):
        nextoken.load(HF / "llama", weights="q3_k")


# ---- lora= at load ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["llama", "gpt2", "qwen2"])
def test_lora_merge_matches_peft(name):
    """Against PEFT's merge_and_unload() on the same base (gpt2: a Conv1D fan_in_fan_out adapter; qwen2:
    rsLoRA scaling). Merged weights differ from PEFT's by float32 rounding of s (B A) only: the same bound
    as for the folders themselves (test_hf.py)."""
    ref_ = np.load(LORA / name / "reference.npz")
    model = nextoken.load(HF / name, n_ctx=64, n_threads=2, lora=LORA / name)
    logits = model.forward(ref_["ids"])
    scale = np.abs(ref_["logits"]).max()
    assert np.abs(logits - ref_["logits"]).max() <= 1e-4 * scale
    assert model.generate(ref_["ids"], max_new_tokens=20, min_new_tokens=20) == ref_["greedy"].tolist()


def test_lora_is_merged_before_quantization(tmp_path):
    merged = nextoken.load(HF / "llama", n_ctx=64, lora=LORA / "llama", weights="q8_0")
    plain = nextoken.load(HF / "llama", n_ctx=64, weights="q8_0")
    ids = np.load(LORA / "llama" / "reference.npz")["ids"]
    ref_logits = np.load(LORA / "llama" / "reference.npz")["logits"]
    out = merged.forward(ids)
    assert np.abs(out - ref_logits).max() < np.abs(plain.forward(ids) - ref_logits).max() / 3


def adapter_copy(tmp_path, edit_config=None):
    return edited_copy(LORA / "llama", tmp_path / "adapter", "adapter_config.json", edit_config)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(r=0), "'r' must be a positive integer"),
    (lambda c: c.update(r=8), "rank 4 / 4, the config says r = 8"),
    (lambda c: c.update(modules_to_save=["lm_head"]), "modules_to_save"),
    (lambda c: c.update(peft_type="IA3"), "peft_type 'IA3'"),
])
def test_bad_adapter_config(tmp_path, edit, match):
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(HF / "llama", lora=adapter_copy(tmp_path, edit))


def test_adapter_for_another_model(tmp_path):
    with pytest.raises(nextoken.Error, match="an adapter for another model"):
        nextoken.load(HF / "mistral", lora=LORA / "gpt2")
    with pytest.raises(nextoken.Error, match="stores it as"):
        nextoken.load(HF / "gemma3", lora=LORA / "llama")  # same names, other shapes (q_proj, v_proj)
    with pytest.raises(nextoken.Error, match="no adapter_config.json"):
        nextoken.load(HF / "llama", lora=tmp_path)
    with pytest.raises(nextoken.Error, match="GGUF file cannot take one"):
        nextoken.load(nextoken.pull("smollm2", quiet=True), lora=LORA / "llama")


# ---- nextoken convert ---------------------------------------------------------------------------------------
def compare_converted(tmp_path, name, weights=None, lora=None, folder=None):
    """The GGUF written by convert, loaded back, against the folder loaded directly with the same options:
    the same weights (q and k rows reordered for GGUF's adjacent RoPE pairs, which rotates the same
    pairs), so the same logits up to RoPE tables rebuilt from the file (llama3: inverse frequencies as
    base^-2i/D divided by stored factors, 1 ulp) — and the same tokens."""
    from nextoken.convert import convert
    folder = folder or HF / name
    out = convert(folder, tmp_path / f"{name}.gguf", weights=weights, lora=lora)
    direct = nextoken.load(folder, n_ctx=64, n_threads=2, weights=weights, lora=lora)
    converted = nextoken.load(out, n_ctx=64, n_threads=2)
    ids = np.load(HF / name / "reference.npz")["long_ids"][:40]
    a, b = converted.forward(ids), direct.forward(ids)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
    assert converted.generate(ids[:12], max_new_tokens=12, min_new_tokens=12) == \
        direct.generate(ids[:12], max_new_tokens=12, min_new_tokens=12)
    text = "the quick brown fox"
    assert converted.tokenize(text) == direct.tokenize(text)
    assert converted.eos_token_ids == direct.eos_token_ids
    return out


@pytest.mark.parametrize("name,weights", [("llama", None), ("llama", "q8_0"), ("llama_linear", "q4_0"),
                                          ("mistral", None), ("qwen2", "q4_k")])
def test_convert_writes_a_gguf_that_loads_to_the_same_model(tmp_path, name, weights):
    compare_converted(tmp_path, name, weights)


def test_convert_merges_lora(tmp_path):
    compare_converted(tmp_path, "llama", "q8_0", lora=LORA / "llama")


def test_convert_gemma3(tmp_path):
    """GGUF's gemma3 has no key for query_pre_attn_scalar (llama.cpp takes head_dim): the fixture's 24 is
    refused; with it set to head_dim the rest (sliding pattern, two RoPE bases, 1 + w norms) round-trips."""
    from nextoken.convert import convert
    with pytest.raises(nextoken.Error, match="query_pre_attn_scalar"):
        convert(HF / "gemma3", tmp_path / "g.gguf")
    folder = edited_copy(HF / "gemma3", tmp_path / "gemma3", "config.json",
                         lambda c: c.update(query_pre_attn_scalar=c["head_dim"]))
    compare_converted(tmp_path, "gemma3", folder=folder)


def test_convert_refuses_what_it_cannot_write(tmp_path):
    from nextoken.convert import convert
    with pytest.raises(nextoken.Error, match="does not write gpt2"):
        convert(HF / "gpt2", tmp_path / "g.gguf")
    with pytest.raises(nextoken.Error, match="not a folder"):
        convert(tmp_path / "nothing", tmp_path / "g.gguf")
