"""Sequences run together: ragged batches, the step API, per-sequence seeds, log-probabilities, prefix reuse and
context shift.

The batch claims are bitwise: a sequence's tokens and log-probabilities must not depend on what else is in its
forward pass or on the thread count, because every kernel reduces a row alone in a fixed order (kernels.h) and
every draw is a function of (seed, step) alone (Philox4x32-10). So these tests compare with ==, never a tolerance.
"""
import math
from pathlib import Path

import numpy as np
import pytest

import nextoken
from conftest import DEVICES, edited_copy
from nextoken import _core

HF = Path(__file__).parent / "fixtures" / "hf"
SAMPLED = dict(temperature=0.9, top_p=0.9)


def prompts_of(vocab, lengths, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, n).tolist() for n in lengths]


@pytest.fixture(scope="module", params=["gguf-q4_1", "gguf-int8", "gemma3", "gpt2"] +
                ["gguf-q4_1-cuda", "gemma3-cuda"] * ("cuda" in DEVICES))
def model(request, tiny_model_path):
    """The tiny GGUF Llama on both compute paths, and two HF architectures with other attention shapes
    (Gemma 3: sliding-window layers, QK-norm, sandwich norms; GPT-2: learned positions, biases); on the GPU
    where there is one, the Llama and Gemma 3."""
    name = request.param.removesuffix("-cuda")
    device = "cuda" if request.param.endswith("-cuda") else "cpu"
    if name.startswith("gguf"):
        compute = "int8" if name.endswith("int8") else "float32"
        return nextoken.load(tiny_model_path[0], n_ctx=128, n_threads=2, compute_type=compute, device=device)
    return nextoken.load(HF / name, n_ctx=128, n_threads=2, device=device)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_sequence_is_the_same_alone_and_in_any_batch_on_any_threads(model, sampled):
    """The same prompt alone and inside batches of 2, 3 and 8 prompts of other lengths (so its prefill
    shares passes with other prefills, then its decode steps with others' decode steps), 1 and 2 threads."""
    kw = dict(max_new_tokens=12, min_new_tokens=12, logprobs=3, **(SAMPLED if sampled else {}))
    target = prompts_of(model.vocab_size, [9], 1)[0]
    others = prompts_of(model.vocab_size, [1, 17, 4, 30, 2, 11, 6], 2)
    model.n_threads = 2
    alone = model.generate(target, seed=42, **kw)
    for n_threads in (1, 2):
        model.n_threads = n_threads
        for batch in (others[:1], others[1:3], others):
            for position in (0, len(batch)):
                prompts = batch[:position] + [target] + batch[position:]
                seeds = list(range(100, 100 + len(prompts)))
                seeds[position] = 42
                results = model.generate(prompts, seed=seeds, **kw)
                assert results[position] == alone  # tokens and log-probabilities, bit for bit
    model.n_threads = 2


def test_a_batch_equals_its_prompts_run_one_by_one(model):
    prompts = prompts_of(model.vocab_size, [5, 1, 23, 8], 3)
    seeds = [7, 8, 9, 10]
    batch = model.generate(prompts, max_new_tokens=10, seed=seeds, **SAMPLED)
    assert batch == [model.generate(p, max_new_tokens=10, seed=s, **SAMPLED) for p, s in zip(prompts, seeds)]
    # one seed for the whole batch: each prompt gets it
    assert model.generate(prompts, max_new_tokens=10, seed=5, **SAMPLED)[2] == \
        model.generate(prompts[2], max_new_tokens=10, seed=5, **SAMPLED)


def test_prompts_longer_than_a_pass_share_passes_with_others(tiny_model_path):
    """A forward pass holds 512 tokens: these prompts (1200 tokens in all) are split over passes at
    different places than when each runs alone, which must not change a bit."""
    model = nextoken.load(tiny_model_path[0], n_ctx=1024, n_threads=2)
    prompts = prompts_of(model.vocab_size, [700, 3, 490, 7], 6)
    batch = model.generate(prompts, max_new_tokens=4, min_new_tokens=4, logprobs=2)
    assert batch == [model.generate(p, max_new_tokens=4, min_new_tokens=4, logprobs=2) for p in prompts]


def test_text_batches_and_tagged_streams(model):
    prompts = ["the", "a b c", "hello"]
    results = model.generate(prompts, max_new_tokens=6, min_new_tokens=6)
    assert results == [model.generate(p, max_new_tokens=6, min_new_tokens=6) for p in prompts]
    pieces = ["", "", ""]
    for i, piece in model.stream(prompts, max_new_tokens=6, min_new_tokens=6):
        pieces[i] += piece
    assert pieces == results


def test_logprobs_are_log_softmax_of_the_raw_logits(model):
    """Against forward(): the log-probability of each generated token and the top alternatives, under the
    raw logits (sampling with penalties changes the draw, not what is reported). 1e-5: our forward() and
    the generation compute the same logits bit for bit; the rest is float32 vs float64 log-softmax."""
    prompt = prompts_of(model.vocab_size, [6], 4)[0]
    tokens, entries = model.generate(prompt, max_new_tokens=5, min_new_tokens=5, logprobs=4, seed=3,
                                     repetition_penalty=1.5, **SAMPLED)
    assert [e.token for e in entries] == tokens
    logits = model.forward(prompt + tokens).astype(np.float64)
    for t, e in enumerate(entries):
        row = logits[len(prompt) - 1 + t]
        logp = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        assert e.logprob == pytest.approx(logp[e.token], abs=1e-5)
        best = np.argsort(-logp, kind="stable")[:4]
        assert [i for i, _ in e.top_logprobs] == best.tolist()
        np.testing.assert_allclose([lp for _, lp in e.top_logprobs], logp[best], atol=1e-5)


def test_step_api_add_step_fork_free(model):
    a = model.add_sequence([5, 6, 7], max_new_tokens=6, min_new_tokens=6, seed=1, **SAMPLED)
    b = model.add_sequence([9, 10], max_new_tokens=3, min_new_tokens=3)
    first = model.step()
    assert [o.id for o in first] == [a, b]
    c = model.fork_sequence(a, seed=99)  # shares a's prefix (prompt + 1 token), samples on its own
    assert model.sequence_tokens(c) == model.sequence_tokens(a)
    steps = [model.step() for _ in range(5)]
    assert [o.finished for o in steps[1]] == [False, True, False]  # b ends after its 3rd token
    assert [len(s) for s in steps] == [3, 3, 2, 2, 2]  # b has finished: step() skips it
    assert steps[-1][0].finished and steps[-1][1].finished
    tokens_a = model.sequence_tokens(a)
    assert tokens_a[3:] == model.generate([5, 6, 7], max_new_tokens=6, min_new_tokens=6, seed=1, **SAMPLED)
    forked = model.sequence_tokens(c)
    assert forked[:4] == tokens_a[:4]
    for sequence_id in (a, b, c):
        model.free_sequence(sequence_id)
    with pytest.raises(nextoken.Error, match="no sequence"):
        model.step([a])


def test_step_api_rejects_bad_use(model):
    a = model.add_sequence([5, 6], max_new_tokens=1)
    model.step([a])
    with pytest.raises(nextoken.Error, match="finished"):
        model.step([a])
    with pytest.raises(nextoken.Error, match="finished"):
        model.fork_sequence(a)
    model.free_sequence(a)
    model.free_sequence(a)  # twice: harmless
    b = model.add_sequence([5, 6], max_new_tokens=4)
    with pytest.raises(nextoken.Error, match="twice"):
        model.step([b, b])
    with pytest.raises(nextoken.Error, match="stop strings"):
        model.add_sequence("x", stop=["y"])
    model.free_sequence(b)


def test_a_batch_with_one_bad_prompt_runs_nothing(model):
    session = model._model
    before = session.tokens_run
    with pytest.raises(nextoken.Error, match="outside the vocabulary"):
        model.generate([[1, 2, 3], [4, 10 ** 6]], max_new_tokens=4)
    with pytest.raises(nextoken.Error, match="seed"):
        model.generate([[1, 2, 3], [4, 5]], max_new_tokens=4, seed=[1, 2, 3])
    with pytest.raises(nextoken.Error, match="context overflow"):
        model.generate([[1, 2, 3], [4] * 120], max_new_tokens=10)
    assert session.tokens_run == before
    assert model.step() == []  # and left no sequence behind


def test_the_next_prompt_reuses_the_cached_prefix(model):
    """A prompt that extends the last finished sequence (the next chat turn) runs only its new tokens, and
    gives what a fresh model gives."""
    session = model._model
    first = [11, 12, 13, 14, 15, 16, 17, 18]
    reply = model.generate(first, max_new_tokens=5, min_new_tokens=5)
    turn = first + reply + [20, 21, 22]
    before = session.tokens_run
    again = model.generate(turn, max_new_tokens=4, min_new_tokens=4)
    assert session.tokens_run - before == 3 + 1 + 3  # the last reply token, the 3 new ones, 3 decode steps
    fresh = nextoken.load(model.path, n_ctx=128, n_threads=2, compute_type=model.compute_type, device=model.device)
    assert again == fresh.generate(turn, max_new_tokens=4, min_new_tokens=4)


def test_philox_known_answers():
    """Random123's kat_vectors (DEShawResearch/random123, tests/kat_vectors, philox4x32 R=10)."""
    ops = _core.ops
    assert ops.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    assert ops.philox4x32_10([0xffffffff] * 4, [0xffffffff] * 2) == [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    assert ops.philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]) == \
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    draws = [ops.uniform_draw(12345, step) for step in range(2000)]
    assert all(0.0 <= u < 1.0 for u in draws) and abs(np.mean(draws) - 0.5) < 0.03



def one_layer_llama(tmp_path):
    """The llama fixture cut to its first layer: there keys and values depend on the token and its position
    only, so a shifted cache must equal the cache of a fresh run over the kept tokens. (With more layers the
    kept tokens' keys still carry the dropped tokens' influence, as in llama.cpp: no fresh run matches.)"""
    def one_layer(config):
        config["num_hidden_layers"] = 1

    def drop_layer_1(tensors):
        for name in [n for n in tensors if ".layers.1." in n]:
            del tensors[name]
    return edited_copy(HF / "llama", tmp_path / "llama1", "config.json", one_layer, drop_layer_1)


@pytest.mark.parametrize("device", DEVICES)
def test_context_shift_runs_past_n_ctx_as_a_fresh_run_of_the_kept_tokens(tmp_path, device):
    """With n_ctx = 24, a 20-token prompt and 10 new tokens: the 4th new token fills the cache, so the 5th
    is fed after a shift that keeps 4 tokens and drops 10. Every later token's log-probabilities must then
    be those of a fresh run over the tokens kept so far (re-rotating a kept key by -10 positions gives the
    key a fresh run computes, up to the fp32 rounding of two rotations: ~1e-6 here, 1e-4 bounds it)."""
    model = nextoken.load(one_layer_llama(tmp_path), n_ctx=24, n_threads=2, device=device)
    prompt = prompts_of(model.vocab_size, [20], 5)[0]
    tokens, entries = model.generate(prompt, max_new_tokens=10, min_new_tokens=10, logprobs=5,
                                     context_shift=True, n_keep=4)
    assert len(tokens) == 10
    seq = prompt + tokens
    for k in range(5, 10):  # entry k was sampled after feeding seq[20 + k - 1]
        kept = seq[:4] + seq[14:20 + k]
        logits = model.forward(kept)[-1].astype(np.float64)
        logp = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        best = np.argsort(-logp)[:5]
        assert [i for i, _ in entries[k].top_logprobs] == best.tolist()
        np.testing.assert_allclose([lp for _, lp in entries[k].top_logprobs], logp[best], atol=1e-4)
    # without it, the same call is a context overflow; max_new_tokens=None needs it
    with pytest.raises(nextoken.Error, match="context overflow"):
        model.generate(prompt, max_new_tokens=10)
    with pytest.raises(nextoken.Error, match="context_shift"):
        model.generate(prompt, max_new_tokens=None)
    with pytest.raises(nextoken.Error, match="context_shift must be"):
        model.generate(prompt, max_new_tokens=4, context_shift="yes")
    stream = model.stream(prompt, max_new_tokens=None, context_shift=True, eos_token_id=[])
    assert len([next(stream) for _ in range(100)]) == 100  # runs on without end, through several shifts
    # the sequence keeps the tokens the model still sees (after the shift above: the 4 kept, then from the
    # 15th on), never more than the n_ctx in the cache plus the newest token (not fed yet), however long
    s = model.add_sequence(prompt, max_new_tokens=None, context_shift=True, n_keep=4, eos_token_id=[])
    new = [model.step([s])[0].token for _ in range(10)]
    assert model.sequence_tokens(s) == (prompt + new)[:4] + (prompt + new)[14:]
    for _ in range(100):
        new.append(model.step([s])[0].token)
        assert len(model.sequence_tokens(s)) <= 24 + 1
    assert model.sequence_tokens(s)[:4] == prompt[:4] and model.sequence_tokens(s)[-1] == new[-1]
    model.free_sequence(s)


def test_context_shift_needs_relative_positions():
    model = nextoken.load(HF / "gpt2", n_ctx=24, n_threads=2)
    with pytest.raises(nextoken.Error, match="learned"):
        model.generate([1, 2, 3], max_new_tokens=30, context_shift=True)


def test_a_stop_id_ends_the_text_without_appearing_in_it(model):
    ids = model.tokenize("the")
    tokens = model.generate(ids, max_new_tokens=10, min_new_tokens=10)
    stop = tokens[4]
    cut = tokens.index(stop)
    kw = dict(min_new_tokens=cut)  # EOS stays masked where it was in `tokens` (the stop id is not there yet)
    assert model.generate("the", max_new_tokens=10, stop_token_ids=[stop], **kw) == \
        model.generate("the", max_new_tokens=cut, **kw)
    assert model.generate(ids, max_new_tokens=10, stop_token_ids=[stop], **kw) == tokens[:cut + 1]  # ids keep it


def test_beam_only_parameters_need_beams(model):
    with pytest.raises(nextoken.Error, match="beam search"):
        model.generate([1, 2, 3], max_new_tokens=4, length_penalty=2.0)
    assert model.generate([1, 2, 3], max_new_tokens=4, num_beams=1) == model.generate([1, 2, 3], max_new_tokens=4)


def test_a_partly_matching_prompt_leaves_the_kept_cache_for_a_better_match(model):
    """Reuse copies the common part when the new prompt diverges, so the next turn of the earlier
    conversation (here while the other call is still open) still finds its whole history cached."""
    session = model._model
    history = [11, 12, 13, 14, 15, 16, 17, 18]
    reply = model.generate(history, max_new_tokens=3, min_new_tokens=3)
    other = model.stream([11, 40, 41], max_new_tokens=5)  # shares one token: copies it
    next(other)
    before = session.tokens_run
    model.generate(history + reply + [20], max_new_tokens=1)
    # the last reply token and the new one, plus the open stream's second token stepped beside them
    assert session.tokens_run - before == 3
    other.close()
