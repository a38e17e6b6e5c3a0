"""The GGUF tokenizer (csrc/tokenizer) of the two real models against llama.cpp and transformers on 62
texts written for it (tests/fixtures/tokenizer_crosscheck.json, made by tests/make_tokenizer_crosscheck.py,
run by hand): prose, code, digits, many scripts, emoji, runs of spaces, control characters, special-token
spellings. transformers' GGUF conversion is the reference (we build the same tokenizer); where llama.cpp
disagrees with it the test says which texts and why, so a change on either side shows.

Then against the `tokenizers` library on random text and random ids: tests/hf_gguf_tokenizer.py builds
from each file's vocabulary the tokenizer transformers' conversion would, and ours must encode and decode
exactly as it does: on the two real models (byte-level BPE with digit splitting; Gemma's SentencePiece
BPE, merges by position) and on a tiny Llama 2 style SentencePiece vocabulary (merges by score, with
ties, given by the file or derived from the vocabulary)."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hf_gguf_tokenizer
import nextoken
from nextoken.loaders import gguf

from conftest import write_tiny_llama

CROSSCHECK = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_crosscheck.json").read_text())
# Gemma 3: llama.cpp covers a run of more than 31 spaces with its longest space token first (31 + the
# rest), transformers' BPE merges differently (16 + 16, 16 + 24); and a literal U+2581 in the text is a
# space to transformers' normalizer, a plain character to llama.cpp.
LLAMACPP_DIFFERS = {"smollm2": set(), "gemma3": {37, 38, 61}}


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def case(request):
    name = request.param
    path = nextoken.pull("gemma3-270m" if name == "gemma3" else "smollm2", quiet=True)
    return name, nextoken.load(path, n_ctx=64, n_threads=1), CROSSCHECK["models"][name]["ids"]


def ours(model, text, parse_special=True):
    ids = model.tokenize(text, parse_special=parse_special)
    return ids[1:] if model.tokenizer.add_bos else ids  # the fixture holds ids without BOS


def test_equal_to_transformers(case):
    name, model, records = case
    assert [i for i, r in enumerate(records) if ours(model, r["text"]) != r["transformers"]] == []


def test_equal_to_llama_cpp_but_for_the_known_differences(case):
    name, model, records = case
    differ = {i for i, r in enumerate(records) if ours(model, r["text"]) != r["llamacpp_special"]}
    assert differ == LLAMACPP_DIFFERS[name]


def test_untrusted_text_as_llama_cpp_reads_it_without_special_tokens(case):
    """parse_special=False reads special-token spellings as text, as llama.cpp's parse_special=False does.
    Gemma's "</s>" (text 54) is a user-defined token of its vocabulary, not a special one: we keep it whole
    as transformers does; llama.cpp counts it as a control token by its name and spells it out."""
    name, model, records = case
    differ = {i for i, r in enumerate(records) if ours(model, r["text"], False) != r["llamacpp_plain"]}
    assert differ == LLAMACPP_DIFFERS[name] | ({54} if name == "gemma3" else set())


def test_decoding_gives_the_text_back(case):
    name, model, records = case
    for r in records:
        text = r["text"]
        if name == "gemma3" and "\u2581" in text:
            continue  # a literal U+2581 reads as a space (see above)
        assert model.detokenize(ours(model, text, False)) == text


# --- against the tokenizers library on random text ---

# Characters that steer the tokenizers into their corners: spaces of every kind (GPT-2's regex keeps the last
# one of a run for the next word), apostrophes (its contractions), digits and other numerals (split one by
# one), letters with combining marks, U+2581 (SentencePiece's space), byte-fallback spellings, emoji.
CORNERS = [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u2028", "\u3000", "\x1c", "\x85", "\x00", "'", "'s", "'ll",
           "'RE", "1", "42", "\u00bd", "\u0663", "\u00b2", "\u2167", "e\u0301", "\u01c5", "\u2581", "<0x41>", "<", "|>",
           "\u4e2d\u6587", "\U0001F600", "\U0001F1E6\U0001F1E8", "\u200b", "word", " the", ".", "!?"]


def texts(specials):
    piece = st.one_of(st.sampled_from(CORNERS), st.sampled_from(specials), st.text(max_size=4),
                      st.characters(max_codepoint=0x2FFF).map(str))
    return st.lists(piece, max_size=24).map("".join)


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def pair(request):
    """(our tokenizer, the reference tokenizer, its BOS or -1, the file's special and added token texts)"""
    f = gguf.read(nextoken.pull("gemma3-270m" if request.param == "gemma3" else "smollm2", quiet=True))
    tokens, types = f.metadata["tokenizer.ggml.tokens"], f.metadata["tokenizer.ggml.token_type"]
    specials = [tokens[i] for i in np.nonzero(np.isin(types, (3, 4)))[0][:2000].tolist()]
    return (nextoken.tokenizer.GGUFTokenizer(f.tokenizer), *hf_gguf_tokenizer.build(f.metadata), specials)


def check_against_reference(ours, ref, bos, text, ids):
    for parse_special in (True, False):
        expected = hf_gguf_tokenizer.encode(ref, bos, text, parse_special)
        assert ours.encode(text, parse_special) == expected, (text, parse_special)
        assert ours.decode(expected, False) == ref.decode(expected, skip_special_tokens=False)
    for skip in (True, False):  # any ids: special ones, byte tokens cut inside a character...
        assert ours.decode(ids, skip) == ref.decode(ids, skip_special_tokens=skip), (ids, skip)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_equal_to_the_tokenizers_library_on_random_text(pair, data):
    ours, ref, bos, specials = pair
    text = data.draw(texts(specials))
    ids = data.draw(st.lists(st.one_of(st.integers(0, 300), st.integers(0, ours.vocab_size - 1)), max_size=12))
    check_against_reference(ours, ref, bos, text, ids)


def llama2_vocabulary(rng):
    """A small Llama 2 style SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte tokens, letters,
    then pieces of English words with and without their leading U+2581, with scores rounded so that many
    tie (the merge order then rests on the halves' lengths and the positions), a repeated piece, and two
    user-defined tokens."""
    words = "the of and to in is that for it as with was on be by this are at from or which an have not".split()
    pieces = list(dict.fromkeys(c for w in words for c in "\u2581" + w))
    for w in words:
        for k in range(2, len(w) + 2):
            pieces += ["\u2581" + w[:k - 1], w[:k]]
    pieces = list(dict.fromkeys(pieces)) + ["th", "<user_a>", "<user_b>"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 2) + [4, 4]
    scores = [0.0] * 259 + np.round(-rng.random(len(pieces)) * 8).tolist()
    return tokens, types, scores


@pytest.fixture(scope="module", params=["derived merges", "merges in the file"])
def llama2_pair(request, tmp_path_factory):
    tokens, types, scores = llama2_vocabulary(np.random.default_rng(7))
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.scores": scores, "general.architecture": "llama", "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0}
    merges = None
    if request.param == "merges in the file":  # some order other than the derived one
        merges = [" ".join(m) for m in hf_gguf_tokenizer.merges_from_vocab(tokens, dict(zip(tokens, range(len(tokens)))),
                                                                           -np.arange(len(tokens), dtype=float))]
        meta["tokenizer.ggml.merges"] = merges

    def write(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_scores(scores)
        if merges:
            w.add_token_merges(merges)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
    path = tmp_path_factory.mktemp("spm") / "tiny-llama2-spm.gguf"
    write_tiny_llama(path, config=dict(vocab_size=len(tokens)), tokenizer=write)
    ours = nextoken.tokenizer.GGUFTokenizer(gguf.read(path).tokenizer)
    return (ours, *hf_gguf_tokenizer.build(meta), tokens[:3] + tokens[-2:])


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_llama2_sentencepiece_equal_to_the_tokenizers_library(llama2_pair, data):
    ours, ref, bos, specials = llama2_pair
    assert bos == 1 and ours.bos_id == 1
    text = data.draw(st.one_of(texts(specials), st.lists(st.sampled_from(
        ["the", " the", "that", "th", "e", " ", "and ", "an", "with", "not", "x", "\u00e9"]), max_size=12).map("".join)))
    ids = data.draw(st.lists(st.integers(0, ours.vocab_size - 1), max_size=12))
    check_against_reference(ours, ref, bos, text, ids)


# --- a folder's tokenizer.json read by the core (what the C API's nt_tokenize runs on a folder) ---

# Llama 3's split pattern (Qwen2's: one digit at a time), as their tokenizer.json spell it
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")


UNMERGED = "\u0120zzqqx"  # " zzqqx": a token that no merge makes, so only ignore_merges finds it whole


def smollm2_split_vocabulary() -> tuple[dict, dict]:
    """SmolLM2's GGUF metadata and tokenizer.json, with UNMERGED added last."""
    meta = dict(gguf.read(nextoken.pull("smollm2", quiet=True)).metadata)
    meta["tokenizer.ggml.tokens"] = list(meta["tokenizer.ggml.tokens"]) + [UNMERGED]
    meta["tokenizer.ggml.token_type"] = list(meta["tokenizer.ggml.token_type"]) + [1]
    return meta, json.loads(hf_gguf_tokenizer.build(meta)[0].to_str())


def split_pre_tokenizer(tj: dict, pattern: str, ignore_merges: bool) -> dict:
    """tokenizer.json `tj` with Llama 3 / Qwen2's pre-tokenizer: the Split regex, then ByteLevel mapping bytes."""
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    tj["model"]["ignore_merges"] = ignore_merges
    return tj


@pytest.fixture(scope="module", params=["fixture", "fixture with a BOS", "smollm2", "gemma3", "llama2", "llama3",
                                        "qwen2"])
def folder_pair(request, tmp_path_factory):
    """(the core's reading of a tokenizer.json, the tokenizers library's, its added token texts): the Hugging
    Face fixtures' tokenizer.json (GPT-2's pre-tokenizer), the same with a post-processor that puts <s> first,
    and written as tokenizer.json by the tokenizers library as transformers builds them: SmolLM2's vocabulary
    (Digits, then ByteLevel), Gemma 3's (SentencePiece BPE with byte fallback, Replace normalizer) and the
    small Llama 2 style one below (Metaspace); SmolLM2's vocabulary with Llama 3's split pattern and
    ignore_merges, and with Qwen2's."""
    from tokenizers import Tokenizer
    folder = tmp_path_factory.mktemp("tokenizer_json")
    if request.param in ("llama3", "qwen2"):
        meta, tj = smollm2_split_vocabulary()
        split_pre_tokenizer(tj, LLAMA3_PATTERN if request.param == "llama3" else QWEN2_PATTERN, request.param == "llama3")
        (folder / "tokenizer.json").write_text(json.dumps(tj))
        ref, vocab_size = Tokenizer.from_file(str(folder / "tokenizer.json")), len(meta["tokenizer.ggml.tokens"])
    elif request.param in ("smollm2", "gemma3", "llama2"):
        if request.param == "llama2":
            tokens, types, scores = llama2_vocabulary(np.random.default_rng(7))
            meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                    "tokenizer.ggml.scores": scores, "general.architecture": "llama",
                    "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
        else:
            meta = gguf.read(nextoken.pull("gemma3-270m" if request.param == "gemma3" else "smollm2", quiet=True)).metadata
        ref, _ = hf_gguf_tokenizer.build(meta)
        vocab_size = len(meta["tokenizer.ggml.tokens"])
        ref.save(str(folder / "tokenizer.json"))
    else:
        tj = json.loads((Path(__file__).parent / "fixtures" / "hf" / "llama" / "tokenizer.json").read_text())
        if request.param == "fixture with a BOS":
            tj["post_processor"]["single"].insert(0, {"SpecialToken": {"id": "<s>", "type_id": 0}})
            tj["post_processor"]["special_tokens"] = {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}
        (folder / "tokenizer.json").write_text(json.dumps(tj))
        ref, vocab_size = Tokenizer.from_file(str(folder / "tokenizer.json")), 320
    core = nextoken._core.folder_tokenizer(str(folder), vocab_size, [1])
    added = [t.content for t in ref.get_added_tokens_decoder().values()]
    return core, ref, added


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_tokenizer_json_read_by_the_core_equals_the_tokenizers_library(folder_pair, data):
    core, ref, added = folder_pair
    text = data.draw(texts(added))
    for parse_special in (True, False):
        ref.encode_special_tokens = not parse_special
        expected = ref.encode(text, add_special_tokens=True).ids
        ref.encode_special_tokens = False
        assert core.encode(text, parse_special, True) == expected, (text, parse_special)
    ids = data.draw(st.lists(st.integers(0, core.vocab_size - 1), max_size=12))
    for skip in (True, False):
        assert core.decode(ids, skip) == ref.decode(ids, skip_special_tokens=skip), (ids, skip)
    assert core.eos_ids == [1]
    assert core.encode(" zzqqx", True, True) == ref.encode(" zzqqx", add_special_tokens=True).ids  # see UNMERGED


@pytest.mark.parametrize("edit,match", [
    (lambda tj: tj.update(normalizer={"type": "NFC"}), "a normalizer is not read by the core"),
    (lambda tj: tj.update(pre_tokenizer={"type": "Metaspace"}), "the pre-tokenizer .*Metaspace.* is not read"),
    (lambda tj: tj["model"].update(type="WordPiece"), "the model WordPiece is not read"),
    (lambda tj: split_pre_tokenizer(tj, LLAMA3_PATTERN.replace("{1,3}", "{1,4}"), True), "Split regex are"),
    (lambda tj: tj["model"].update(byte_fallback=True), "of a SentencePiece BPE are not read by the core"),
    (lambda tj: tj.update(decoder=None), "needs the ByteLevel decoder"),
    (lambda tj: tj["added_tokens"][0].update(lstrip=True), "'<s>' has lstrip"),
    (lambda tj: tj["model"]["vocab"].update({"zz": 400}), "the id of 'zz' is 400, outside the model's 320 tokens"),
    (lambda tj: tj["model"].update(merges=[5]), "a merge must be 'left right' or \\[left, right\\], got 5"),
    (lambda tj: tj["post_processor"]["single"].append({"SpecialToken": {"id": "</s>", "type_id": 0}}),
     "the post-processor .* is not read"),
])
def test_tokenizer_json_the_core_does_not_read_is_named(tmp_path, edit, match):
    tj = json.loads((Path(__file__).parent / "fixtures" / "hf" / "llama" / "tokenizer.json").read_text())
    edit(tj)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(nextoken.Error, match=match):
        nextoken._core.folder_tokenizer(str(tmp_path), 320, [])


@pytest.fixture(scope="module")
def llama3_gguf_pair(tmp_path_factory):
    """A GGUF byte-level vocabulary (SmolLM2's and UNMERGED) with tokenizer.ggml.pre "llama-bpe": read as
    llama.cpp reads Llama 3 files, the Split pattern with whole-word lookup (ignore_merges); the reference is
    the same vocabulary as a tokenizers.Tokenizer so configured."""
    from tokenizers import Tokenizer
    meta, tj = smollm2_split_vocabulary()

    def write(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("llama-bpe")
        w.add_token_list(meta["tokenizer.ggml.tokens"])
        w.add_token_types([int(t) for t in meta["tokenizer.ggml.token_type"]])
        w.add_token_merges(list(meta["tokenizer.ggml.merges"]))
    path = tmp_path_factory.mktemp("llama3") / "tiny-llama3-bpe.gguf"
    write_tiny_llama(path, config=dict(vocab_size=len(meta["tokenizer.ggml.tokens"])), tokenizer=write)
    ours = nextoken.tokenizer.GGUFTokenizer(gguf.read(path).tokenizer)
    return ours, Tokenizer.from_str(json.dumps(split_pre_tokenizer(tj, LLAMA3_PATTERN, True)))


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_gguf_llama3_pre_tokenizer_equal_to_the_tokenizers_library(llama3_gguf_pair, data):
    ours, ref = llama3_gguf_pair
    text = data.draw(st.one_of(texts(["<|im_start|>", "<|endoftext|>"]), st.lists(st.sampled_from(
        ["'S", "'ll", "1234567", " !", "?\n\n", " \n ", "\r\n", "Hello", " world", " zzqqx", " the", "\t", "x"]),
        max_size=12).map("".join)))
    for parse_special in (True, False):
        ref.encode_special_tokens = not parse_special
        assert ours.encode(text, parse_special) == ref.encode(text, add_special_tokens=False).ids, (text, parse_special)
    ref.encode_special_tokens = False
    assert ours.encode(" zzqqx", True, False) == [ours.vocab_size - 1]  # UNMERGED, found whole
