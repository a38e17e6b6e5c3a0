"""load(kv_cache="f16" | "bf16"): keys and values stored in 16 bits. Against the f32 cache on SmolLM2
(300 tokens): the logits move by the rounding of every cached key and value (f16: 11-bit mantissa, bf16: 8),
measured NMSE 1.7e-7 (f16), 1.1e-5 (bf16) and 1.3e-4 (q8_0: int8 per 32 values) on this machine; the
bounds below are ~10x that, and the greedy choice must agree almost everywhere (q8_0: 299 of 300). The invariances (decode = prefill, batch, threads) stay bitwise,
since every row reads the cache as stored."""
import numpy as np
import pytest

import nextoken

IDS = list(range(100, 400))


@pytest.fixture(scope="module")
def f32_logits(smollm2_path):
    return nextoken.load(smollm2_path, n_ctx=512, n_threads=2).forward(IDS)


@pytest.mark.parametrize("kv, bound", [("f16", 2e-6), ("bf16", 1e-4), ("q8_0", 1e-3)])
def test_logit_error_against_f32(smollm2_path, f32_logits, kv, bound):
    out = nextoken.load(smollm2_path, n_ctx=512, n_threads=2, kv_cache=kv).forward(IDS)
    assert 0 < np.mean((out - f32_logits) ** 2) / np.var(f32_logits) < bound
    assert (out.argmax(1) == f32_logits.argmax(1)).mean() >= 0.98


@pytest.mark.parametrize("kv", ["f16", "bf16", "q8_0"])
def test_invariances_hold(tiny_model_path, smollm2_path, kv):
    # q8_0 blocks are 32 values: SmolLM2's head dim 64 (the tiny model's is 16)
    path = smollm2_path if kv == "q8_0" else tiny_model_path[0]
    model = nextoken.load(path, n_ctx=128, n_threads=2, kv_cache=kv)
    ids = np.random.default_rng(2).integers(0, 300, 30).tolist()
    full = model.forward(ids)
    steps = np.concatenate([model.forward(ids[:1])] + [model.forward(ids[t:t + 1], start_pos=t) for t in range(1, 30)])
    np.testing.assert_array_equal(steps, full)
    prompts = [ids[:5], ids[:17], ids[3:4]]
    kw = dict(max_new_tokens=8, min_new_tokens=8, temperature=0.9, seed=3)
    assert model.generate(prompts, **kw) == [model.generate(p, **kw) for p in prompts]
    stream = model.stream(ids[:20], max_new_tokens=None, context_shift=True, n_keep=2, eos_token_id=[])
    assert len([next(stream) for _ in range(150)]) == 150  # shifts re-rotate the 16-bit keys too


def test_bad_kv_cache_is_named(tiny_model_path):
    with pytest.raises(nextoken.Error, match="kv_cache"):
        nextoken.load(tiny_model_path[0], kv_cache="q4")
    with pytest.raises(nextoken.Error, match="multiple of 32"):
        nextoken.load(tiny_model_path[0], kv_cache="q8_0")  # head dim 16
