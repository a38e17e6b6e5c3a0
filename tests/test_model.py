"""The whole decoder on tiny random Llama GGUF files, against the numpy reference forward pass."""
import numpy as np
import pytest

import nextoken
from nextoken import reference as ref

from conftest import DEVICES, write_tiny_llama

RTOL = 1e-5  # fp32 engine vs float64 reference, relative to the largest logit (2 layers: no long chains)


def close(actual, expected, rtol=RTOL):
    scale = float(np.abs(expected).max())
    err = float(np.abs(actual.astype(np.float64) - expected).max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} x {scale:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("matrix_type,embd_type,tied", [
    (ref.Q4_1, ref.Q8_0, True), (ref.Q4_0, ref.F16, False), (ref.F32, ref.F32, False), (ref.F16, ref.Q4_1, True)])
def test_forward_matches_reference(tmp_path, matrix_type, embd_type, tied, device):
    path = tmp_path / "m.gguf"
    config, weights = write_tiny_llama(path, matrix_type, embd_type, tied, seed=matrix_type)
    model = nextoken.load(path, n_ctx=64, n_threads=2, device=device)
    ids = [5, 100, 37, 250, 3, 9, 11, 0, 299]
    close(model.forward(ids), ref.llama_forward(config, weights, ids))


def test_prompts_longer_than_one_chunk(tmp_path):
    """Prefill runs in chunks of 512 tokens; a 700-token prompt crosses a chunk boundary."""
    path = tmp_path / "m.gguf"
    config, weights = write_tiny_llama(path, config=dict(n_layers=1))
    model = nextoken.load(path, n_ctx=1024, n_threads=2)
    ids = np.random.default_rng(0).integers(0, config["vocab_size"], 700)
    close(model.forward(ids), ref.llama_forward(config, weights, ids))


@pytest.mark.parametrize("device", DEVICES)
def test_decoding_through_the_cache_equals_prefill(tiny_model_path, device):
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2, device=device)
    ids = np.random.default_rng(1).integers(0, config["vocab_size"], 40)
    full = model.forward(ids)
    steps = np.concatenate([model.forward(ids[:1])] + [model.forward(ids[t:t + 1], start_pos=t) for t in range(1, 40)])
    np.testing.assert_array_equal(steps, full)
    # in uneven pieces too
    pieces = [model.forward(ids[:7]), model.forward(ids[7:30], start_pos=7), model.forward(ids[30:], start_pos=30)]
    np.testing.assert_array_equal(np.concatenate(pieces), full)


def test_results_do_not_depend_on_thread_count(tiny_model_path):
    path, config, _ = tiny_model_path
    ids = np.random.default_rng(2).integers(0, config["vocab_size"], 33)
    model = nextoken.load(path, n_ctx=64, n_threads=1)
    one = model.forward(ids)
    gen_one = model.generate(ids, max_new_tokens=10, temperature=0.9, seed=5)
    model.n_threads = 2
    np.testing.assert_array_equal(model.forward(ids), one)
    assert model.generate(ids, max_new_tokens=10, temperature=0.9, seed=5) == gen_one
    model.n_threads = 3
    np.testing.assert_array_equal(model.forward(ids), one)


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_generation_follows_reference_argmax(tiny_model_path, device):
    path, config, weights = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2, device=device)
    ids = [10, 20, 30]
    out = model.generate(ids, max_new_tokens=8, min_new_tokens=8)
    seq = list(ids)
    for _ in range(8):
        logits = ref.llama_forward(config, weights, seq)[-1]
        logits[model.eos_token_ids] = -np.inf  # min_new_tokens masks EOS
        seq.append(int(np.argmax(logits)))
    assert out == seq[3:]


def test_sampling_is_seeded(tiny_model_path):
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    kw = dict(max_new_tokens=20, min_new_tokens=20, temperature=1.5)
    a = model.generate([1, 2, 3], seed=7, **kw)
    assert model.generate([1, 2, 3], seed=7, **kw) == a
    assert any(model.generate([1, 2, 3], seed=s, **kw) != a for s in (8, 9, 10))
    greedy = model.generate([1, 2, 3], max_new_tokens=20, min_new_tokens=20)
    assert model.generate([1, 2, 3], max_new_tokens=20, min_new_tokens=20, temperature=0.0, seed=3) == greedy
    assert model.generate([1, 2, 3], seed=7, top_k=1, **kw) == greedy


def test_top_k_and_top_p_restrict_every_draw(tiny_model_path):
    """Each sampled token lies in the reference's allowed set for the logits at that step."""
    path, config, weights = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    for top_k, top_p in [(3, 1.0), (0, 0.6), (20, 0.3)]:
        prompt = [4, 8, 15]
        out = model.generate(prompt, max_new_tokens=6, min_new_tokens=6, temperature=1.3, top_k=top_k, top_p=top_p, seed=1)
        seq = list(prompt)
        for token in out:
            logits = ref.llama_forward(config, weights, seq)[-1]
            logits[model.eos_token_ids] = -np.inf
            assert token in ref.allowed_tokens(logits, 1.3, top_k, top_p)
            seq.append(token)


def test_stream_pieces_join_to_generate(tiny_model_path):
    """High-temperature draws from a byte-level vocabulary produce split multi-byte characters: the
    pieces must still join to exactly the generated text, which equals decoding all ids at once."""
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=128, n_threads=2)
    kw = dict(max_new_tokens=60, min_new_tokens=60, temperature=3.0, seed=11)
    pieces = list(model.stream("the", **kw))
    text = model.generate("the", **kw)
    ids = model.generate(model.tokenize("the"), **kw)
    assert "".join(pieces) == text == model.detokenize(ids).rstrip("\ufffd")  # a cut last character is dropped
    assert all(pieces)


def test_stop_strings_cut_the_text(tiny_model_path):
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=128, n_threads=2)
    kw = dict(max_new_tokens=60, min_new_tokens=60, temperature=3.0, seed=11)
    full = model.generate("the", **kw)
    stop = full[20:23]
    cut = model.generate("the", stop=[stop], **kw)
    assert cut == full[:full.index(stop)]
    assert "".join(model.stream("the", stop=stop, **kw)) == cut
    assert model.generate("the", stop=["never appears \x00"], **kw) == full


def test_a_stream_survives_other_calls_on_the_model(tiny_model_path):
    """Each generation is its own sequence: forward() and other generations in between change nothing."""
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    expected = model.generate([1, 2, 3], max_new_tokens=10, min_new_tokens=10)
    stream = model.stream([1, 2, 3], max_new_tokens=10, min_new_tokens=10)
    first = next(stream)
    model.forward([4, 5])
    other = model.generate([7, 8, 9], max_new_tokens=5, min_new_tokens=5)
    assert [first] + list(stream) == expected
    assert model.generate([7, 8, 9], max_new_tokens=5, min_new_tokens=5) == other


def test_max_new_tokens_zero(tiny_model_path):
    path, _, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    assert model.generate([1, 2], max_new_tokens=0) == []
    assert model.generate("the", max_new_tokens=0) == ""


# ---- compute_type="int8" --------------------------------------------------------------------------------
def test_int8_forward_matches_int8_reference(tmp_path):
    """Against the reference that quantizes every matmul input the same way. An activation that sits
    on a rounding boundary can land one code apart (fp32 vs float64 inputs), which moves logits by
    ~1e-3 of their scale at most; the fp32 reference differs by the quantization error itself."""
    path = tmp_path / "m.gguf"
    config, weights = write_tiny_llama(path, ref.Q4_1, ref.Q8_0, seed=3)
    model = nextoken.load(path, n_ctx=64, n_threads=2, compute_type="int8")
    ids = [5, 100, 37, 250, 3, 9, 11, 0, 299]
    ours = model.forward(ids)
    close(ours, ref.llama_forward(config, weights, ids, int8=True), rtol=1e-3)
    exact = ref.llama_forward(config, weights, ids)
    assert np.mean((ours - exact) ** 2) / np.var(exact) < 1e-3


def test_int8_decoding_equals_prefill_and_ignores_threads(tiny_model_path):
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2, compute_type="int8")
    ids = np.random.default_rng(4).integers(0, config["vocab_size"], 30)
    full = model.forward(ids)
    steps = np.concatenate([model.forward(ids[:1])] + [model.forward(ids[t:t + 1], start_pos=t) for t in range(1, 30)])
    np.testing.assert_array_equal(steps, full)
    model.n_threads = 1
    np.testing.assert_array_equal(model.forward(ids), full)


def test_device_is_checked(tiny_model_path):
    """A device other than cpu / cuda, cuda where there is none, and what the GPU path does not run yet are clear
    Errors at load."""
    path = tiny_model_path[0]
    with pytest.raises(nextoken.Error, match="device must be 'cpu' or 'cuda'"):
        nextoken.load(path, n_ctx=64, device="gpu")
    if "cuda" not in DEVICES:
        with pytest.raises(nextoken.Error, match="device='cuda'"):
            nextoken.load(path, n_ctx=64, device="cuda")
        return
    for options, what in [(dict(compute_type="int8"), "compute_type='int8' runs on the CPU only"),
                          (dict(kv_cache="q8_0"), "not q8_0")]:
        with pytest.raises(nextoken.Error, match=what):
            nextoken.load(path, n_ctx=64, device="cuda", **options)


def test_unknown_compute_type(tiny_model_path):
    with pytest.raises(ValueError, match="compute_type"):
        nextoken.load(tiny_model_path[0], compute_type="int4")


def test_threads_sharing_a_model_each_get_their_own_sequence(tiny_model_path):
    """Concurrent generate() calls from several Python threads each run their own sequence (overlapping
    ones are stepped together in one pass); every result equals the call run alone, bit for bit."""
    import threading
    path, config, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=128, n_threads=2)
    rng = np.random.default_rng(8)
    jobs = [(rng.integers(0, config["vocab_size"], int(rng.integers(1, 20))).tolist(),
             dict(temperature=0.9, top_p=0.9, seed=int(k)) if k % 2 else {}) for k in range(8)]
    expected = [model.generate(ids, max_new_tokens=30, min_new_tokens=30, **kw) for ids, kw in jobs]
    expected_logits = model.forward(jobs[0][0])
    results, errors = {}, []

    def work(k):
        try:
            for r in range(5):
                ids, kw = jobs[(k + r) % len(jobs)]
                results[(k, r)] = model.generate(ids, max_new_tokens=30, min_new_tokens=30, **kw)
            np.testing.assert_array_equal(model.forward(jobs[0][0]), expected_logits)
        except Exception as e:  # noqa: BLE001 - any failure is reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 40
    assert all(results[(k, r)] == expected[(k + r) % len(jobs)] for k, r in results)


# ---- defects found in review (regression tests) ---------------------------------------------------------
def test_tiny_temperature_is_greedy_not_the_last_id(tiny_model_path):
    """1 / T was infinite below ~3e-39, so every probability became NaN and the draw returned the last id."""
    path, _, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    greedy = model.generate([1, 2, 3], max_new_tokens=8, min_new_tokens=8)
    assert model.generate([1, 2, 3], max_new_tokens=8, min_new_tokens=8, temperature=1e-39, seed=1) == greedy


def test_a_rejected_call_does_not_end_the_live_generation(tiny_model_path):
    path, _, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    expected = model.generate([5, 6, 7], max_new_tokens=6, min_new_tokens=6)
    stream = model.stream([5, 6, 7], max_new_tokens=6, min_new_tokens=6)
    first = next(stream)
    with pytest.raises(nextoken.Error):
        model.forward([10 ** 6])  # out of the vocabulary: rejected before touching the cache
    with pytest.raises(nextoken.Error):
        model.forward([1, 2], start_pos=1000)
    assert [first] + list(stream) == expected


def test_forward_continues_its_own_sequence_across_generations(tiny_model_path):
    """forward() keeps a sequence of its own: a generation in between neither breaks nor leaks into it."""
    path, _, _ = tiny_model_path
    model = nextoken.load(path, n_ctx=64, n_threads=2)
    model.forward([1, 2, 3, 4])
    model.generate([9, 8, 7], max_new_tokens=3)
    np.testing.assert_array_equal(model.forward([5], start_pos=4), model.forward([1, 2, 3, 4, 5])[-1:])
    with pytest.raises(nextoken.Error, match="skips positions"):
        model.forward([5], start_pos=6)
