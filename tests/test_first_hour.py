"""What a newcomer meets first: names and paths, special tokens in untrusted text, characters cut by
max_new_tokens, what repr() and help() say, warnings for settings the model was not made for."""
import warnings

import pytest

import nextoken

from conftest import write_tiny_llama


def test_names_are_case_insensitive_and_misses_say_what_is_accepted(smollm2_path, tmp_path):
    assert nextoken.hub.resolve("SmolLM2") == smollm2_path
    for wrong in ("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", str(tmp_path / "x.gguf")):
        with pytest.raises(FileNotFoundError) as e:
            nextoken.load(wrong)
        message = str(e.value)
        assert "smollm2" in message and ".gguf" in message and "Hugging Face folder" in message
        assert "Nothing is ever fetched from a model hub" in message


def test_special_tokens_in_untrusted_text(smollm2):
    text = "say <|im_end|> now"
    parsed, literal = smollm2.tokenize(text), smollm2.tokenize(text, parse_special=False)
    end = smollm2.tokenize("<|im_end|>")
    assert len(end) == 1 and end[0] in parsed and end[0] not in literal
    assert smollm2.detokenize(literal) == text
    # the same switch on generate: the prompt ids differ, so the continuation is computed from other ids
    assert smollm2.generate(text, max_new_tokens=1, parse_special=False) == \
        smollm2.detokenize(smollm2.generate(literal, max_new_tokens=1))


def test_a_character_cut_by_max_new_tokens_is_dropped(tmp_path):
    """Byte-level vocabularies spell a CJK character in three tokens; cut after one or two, the text must
    not end in U+FFFD."""
    path = tmp_path / "m.gguf"
    write_tiny_llama(path)
    model = nextoken.load(path, n_ctx=256, n_threads=1)
    seen_cut = False
    for seed in range(40):
        ids = model.generate(model.tokenize("the"), max_new_tokens=9, min_new_tokens=9, temperature=5.0, seed=seed)
        text = model.generate("the", max_new_tokens=9, min_new_tokens=9, temperature=5.0, seed=seed)
        raw = model.detokenize(ids)
        assert not text.endswith("\ufffd")
        assert raw.rstrip("\ufffd") == text
        seen_cut |= raw.endswith("\ufffd")
    assert seen_cut  # the case happened at least once among the draws


def test_repr_says_what_is_loaded(smollm2):
    text = repr(smollm2)
    for part in ("llama", "SmolLM2-135M-Instruct.Q4_1.gguf", "134.5M parameters", "Q4_1", "n_ctx=512",
                 "n_threads=2", "compute_type='float32'"):
        assert part in text, (part, text)
    assert len(text) < 300


def test_public_api_has_docstrings():
    for obj in (nextoken.load, nextoken.pull, nextoken.Model, nextoken.Model.generate, nextoken.Model.stream,
                nextoken.Model.tokenize, nextoken.Model.detokenize, nextoken.Model.forward):
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, obj
    from importlib.metadata import version
    assert nextoken.__version__ == version("nextoken")  # from the installed package's metadata


def test_n_ctx_beyond_the_trained_context_warns(tmp_path):
    path = tmp_path / "m.gguf"
    write_tiny_llama(path)  # context_length 256
    with pytest.warns(UserWarning, match="exceeds the 256 positions"):
        nextoken.load(path, n_ctx=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nextoken.load(path, n_ctx=256)


def test_invalid_unicode_is_a_clear_error(smollm2):
    with pytest.raises(nextoken.Error, match="not valid Unicode"):
        smollm2.tokenize("bad \ud800 surrogate")


def test_idle_threads_sleep(smollm2):
    """The pool's workers spin ~100 us after a job, then sleep: a model at rest burns no CPU (threads
    spinning on while the OS had given their core away made decoding collapse on a busy machine:
    benchmarks/bench_busy.py). Process CPU time over 0.3 s of rest stays near zero (the bound, 0.05 s,
    is 1/6 of one core: a spinning worker would use all 0.3 s)."""
    import os
    import time
    smollm2.n_threads = 2
    smollm2.generate("Hello", max_new_tokens=4)
    time.sleep(0.01)
    before = os.times()
    time.sleep(0.3)
    after = os.times()
    assert (after.user - before.user) + (after.system - before.system) < 0.05
