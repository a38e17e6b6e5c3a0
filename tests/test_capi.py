"""The C API (include/nextoken/nextoken.h, libnextoken): the example program built against the installed
header and library and run on SmolLM2, its ids equal to the Python API's; every entry point through ctypes
against the Python API on the same files, and bad input answered with a status and a message, never a
crash, leaving the model usable."""
import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import nextoken

from conftest import write_tiny_llama

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c" / "generate.c"
HF = Path(__file__).resolve().parent / "fixtures" / "hf"
SEQ2SEQ = Path(__file__).resolve().parent / "fixtures" / "seq2seq"
NT_OK, NT_ERROR_INVALID_ARGUMENT, NT_ERROR_MODEL_FILE, NT_ERROR_BUFFER_TOO_SMALL = 0, 1, 2, 4


class Sampling(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("typical_p", ctypes.c_float), ("repetition_penalty", ctypes.c_float),
                ("presence_penalty", ctypes.c_float), ("frequency_penalty", ctypes.c_float),
                ("no_repeat_ngram_size", ctypes.c_int32), ("seed", ctypes.c_uint64)]


class LoadOptions(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_int32), ("n_threads", ctypes.c_int32), ("compute_type", ctypes.c_char_p),
                ("kv_cache", ctypes.c_char_p), ("packed_cache", ctypes.c_char_p)]


class BeamOptions(ctypes.Structure):
    _fields_ = [("num_beams", ctypes.c_int32), ("num_return_sequences", ctypes.c_int32),
                ("length_penalty", ctypes.c_double), ("early_stopping", ctypes.c_int32),
                ("min_new_tokens", ctypes.c_int32), ("repetition_penalty", ctypes.c_float),
                ("no_repeat_ngram_size", ctypes.c_int32)]


class StepOutput(ctypes.Structure):
    _fields_ = [("sequence", ctypes.c_uint64), ("token", ctypes.c_int32), ("finished", ctypes.c_int32)]


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(nextoken.get_library())
    lib.nt_last_error.restype = ctypes.c_char_p
    lib.nt_model_free.argtypes = [ctypes.c_void_p]
    for name in ("nt_model_vocab_size", "nt_model_n_ctx", "nt_model_dim"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.nt_model_eos_ids.restype = ctypes.c_size_t
    return lib


def ids_array(ids):
    return (ctypes.c_int32 * max(len(ids), 1))(*ids)


def load(lib, path, n_ctx=256, **options):
    o = LoadOptions()
    lib.nt_load_options_init(ctypes.byref(o))
    o.n_ctx, o.n_threads = n_ctx, 2
    for key, value in options.items():
        setattr(o, key, value.encode() if isinstance(value, str) else value)
    model = ctypes.c_void_p()
    status = lib.nt_model_load(str(path).encode(), ctypes.byref(o), ctypes.byref(model))
    return status, model


def generate(lib, model, prompt, max_new_tokens, sampling=None):
    out, n = (ctypes.c_int32 * max_new_tokens)(), ctypes.c_size_t()
    status = lib.nt_generate(model, ids_array(prompt), ctypes.c_size_t(len(prompt)), max_new_tokens,
                             ctypes.byref(sampling) if sampling else None, out, ctypes.c_size_t(max_new_tokens),
                             ctypes.byref(n))
    return status, list(out[:n.value])


def tokenize(lib, model, text: bytes, parse_special=True, add_bos=True):
    n = ctypes.c_size_t()
    status = lib.nt_tokenize(model, text, ctypes.c_size_t(len(text)), int(parse_special), int(add_bos), None,
                             ctypes.c_size_t(0), ctypes.byref(n))
    if status != NT_ERROR_BUFFER_TOO_SMALL:  # asked with no buffer: the count, unless there are none or it failed
        return status, []
    ids = (ctypes.c_int32 * n.value)()
    assert lib.nt_tokenize(model, text, ctypes.c_size_t(len(text)), int(parse_special), int(add_bos), ids,
                           ctypes.c_size_t(n.value), ctypes.byref(n)) == NT_OK
    return NT_OK, list(ids)


def detokenize(lib, model, ids):
    length = ctypes.c_size_t()
    status = lib.nt_detokenize(model, ids_array(ids), ctypes.c_size_t(len(ids)), None, ctypes.c_size_t(0),
                               ctypes.byref(length))
    assert status == NT_ERROR_BUFFER_TOO_SMALL  # asked with no buffer: the size it needs
    text = ctypes.create_string_buffer(length.value + 1)
    assert lib.nt_detokenize(model, ids_array(ids), ctypes.c_size_t(len(ids)), text, ctypes.c_size_t(len(text)),
                             ctypes.byref(length)) == NT_OK
    return text.raw[:length.value].decode()  # the length, not the NUL: a text may hold NULs


@pytest.fixture(scope="module")
def tiny_c(lib, tiny_model_path):
    status, model = load(lib, tiny_model_path[0])
    assert status == NT_OK, lib.nt_last_error()
    yield model
    lib.nt_model_free(model)


@pytest.fixture(scope="module")
def tiny_py(tiny_model_path):
    return nextoken.load(tiny_model_path[0], n_ctx=256, n_threads=2)


def test_example_program_prints_the_ids_python_generates(smollm2, smollm2_path, tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:  # the package itself cannot be built without one, so this does not hide a failure
        pytest.skip("no C compiler")
    library = Path(nextoken.get_library())
    binary = tmp_path / "generate"
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", str(EXAMPLE), "-I", nextoken.get_include(), str(library),
                    f"-Wl,-rpath,{library.parent}", "-o", str(binary)], check=True)
    prompt = smollm2.tokenize("The three primary colors are")
    run = subprocess.run([str(binary), str(smollm2_path), "24", *map(str, prompt)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    expected = smollm2.generate(prompt, max_new_tokens=24)
    assert [int(t) for t in run.stdout.split()] == expected
    folder = HF / "qwen2"  # a Hugging Face folder runs the same way
    run = subprocess.run([str(binary), str(folder), "12", "5", "17", "90"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert [int(t) for t in run.stdout.split()] == nextoken.load(folder, n_ctx=64).generate([5, 17, 90], max_new_tokens=12)
    bad = subprocess.run([str(binary), str(tmp_path / "none.gguf"), "4", "1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "none.gguf" in bad.stderr


def test_generate_equals_python(lib, tiny_c, tiny_py):
    prompt = [5, 17, 90, 33]
    assert generate(lib, tiny_c, prompt, 20) == (NT_OK, tiny_py.generate(prompt, max_new_tokens=20))
    s = Sampling()
    lib.nt_sampling_init(ctypes.byref(s))
    s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.seed = 0.9, 0.95, 50, 1.1, 7
    expected = tiny_py.generate(prompt, max_new_tokens=20, temperature=0.9, top_p=0.95, top_k=50,
                                repetition_penalty=1.1, seed=7)
    assert generate(lib, tiny_c, prompt, 20, s) == (NT_OK, expected)


def test_int8_with_a_packed_cache_equals_python(lib, tiny_model_path, tmp_path):
    py = nextoken.load(tiny_model_path[0], n_ctx=256, n_threads=2, compute_type="int8", packed_cache=False)
    expected = py.generate([5, 17, 90], max_new_tokens=12)
    cache = str(tmp_path / "tiny.int8")
    for _ in range(2):  # packs and writes the cache, then maps it
        status, model = load(lib, tiny_model_path[0], compute_type="int8", packed_cache=cache)
        assert status == NT_OK, lib.nt_last_error()
        assert generate(lib, model, [5, 17, 90], 12) == (NT_OK, expected)
        lib.nt_model_free(model)
    assert (tmp_path / "tiny.int8").is_file()


def test_forward_equals_python(lib, tiny_c, tiny_py):
    prompt = [3, 200, 45, 7, 9]
    V = lib.nt_model_vocab_size(tiny_c)
    logits = np.empty(V, np.float32)
    assert lib.nt_forward(tiny_c, ids_array(prompt), ctypes.c_size_t(len(prompt)),
                          logits.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(V)) == NT_OK
    np.testing.assert_array_equal(logits, tiny_py.forward(prompt)[-1])  # the same code on the same weights


def run_steps(lib, model, prompts, max_new_tokens):
    """(sequence ids, {sequence: its tokens}): the prompts added, then stepped together until all finish."""
    seqs = []
    for p in prompts:
        sid = ctypes.c_uint64()
        assert lib.nt_sequence_add(model, ids_array(p), ctypes.c_size_t(len(p)), max_new_tokens, None,
                                   ctypes.byref(sid)) == NT_OK, lib.nt_last_error()
        seqs.append(sid.value)
    got = {s: [] for s in seqs}
    live = list(seqs)
    while live:
        out, n = (StepOutput * len(live))(), ctypes.c_size_t()
        assert lib.nt_step(model, (ctypes.c_uint64 * len(live))(*live), ctypes.c_size_t(len(live)), out,
                           ctypes.c_size_t(len(live)), ctypes.byref(n)) == NT_OK
        for o in out[:n.value]:
            got[o.sequence].append(o.token)
            if o.finished:
                live.remove(o.sequence)
    return seqs, got


def test_step_api_equals_generate(lib, tiny_c, tiny_py):
    prompts = [[1, 2, 3], [40, 41, 42, 43, 44]]
    seqs, got = run_steps(lib, tiny_c, prompts, 6)
    for p, s in zip(prompts, seqs):
        assert got[s] == tiny_py.generate(p, max_new_tokens=6)
        length = ctypes.c_size_t()
        assert lib.nt_sequence_tokens(tiny_c, ctypes.c_uint64(s), None, ctypes.c_size_t(0), ctypes.byref(length)) \
            == NT_ERROR_BUFFER_TOO_SMALL and length.value == len(p) + 6
        assert lib.nt_sequence_free(tiny_c, ctypes.c_uint64(s)) == NT_OK
    assert lib.nt_sequence_free(tiny_c, ctypes.c_uint64(seqs[0])) == NT_OK  # freeing twice is harmless
    length = ctypes.c_size_t()
    assert lib.nt_sequence_tokens(tiny_c, ctypes.c_uint64(seqs[0]), None, ctypes.c_size_t(0), ctypes.byref(length)) \
        == NT_ERROR_INVALID_ARGUMENT
    assert b"no sequence" in lib.nt_last_error()


def beam_search(lib, model, prompt, max_new_tokens, options):
    n = options.num_return_sequences
    out, lengths, scores = (ctypes.c_int32 * (n * max_new_tokens))(), (ctypes.c_int32 * n)(), (ctypes.c_float * n)()
    status = lib.nt_beam_search(model, ids_array(prompt), ctypes.c_size_t(len(prompt)), max_new_tokens,
                                ctypes.byref(options), out, ctypes.c_size_t(len(out)), lengths, scores, ctypes.c_size_t(n))
    return status, [(list(out[i * max_new_tokens:i * max_new_tokens + lengths[i]]), scores[i]) for i in range(n)]


@pytest.fixture(scope="module")
def tiny_eos34(lib, tmp_path_factory):
    """The tiny model with EOS id 34, which its beams reach (finished hypotheses of 6 and 7 tokens below)."""
    path = tmp_path_factory.mktemp("eos34") / "tiny-eos34.gguf"
    write_tiny_llama(path, config=dict(eos_token_id=34))
    status, model = load(lib, path)
    assert status == NT_OK, lib.nt_last_error()
    yield model, nextoken.load(path, n_ctx=256, n_threads=2)
    lib.nt_model_free(model)


@pytest.mark.parametrize("early_stopping, c_early_stopping", [(False, 0), (True, 1), ("never", 2)])
def test_beam_search_equals_python(lib, tiny_eos34, early_stopping, c_early_stopping):
    """The same beams and float32 scores as Model.beam_search (checked against transformers in test_beams.py)."""
    tiny_c, tiny_py = tiny_eos34
    o = BeamOptions()
    lib.nt_beam_options_init(ctypes.byref(o))
    assert (o.num_beams, o.num_return_sequences, o.length_penalty, o.early_stopping) == (4, 1, 1.0, 0)
    o.num_beams, o.num_return_sequences, o.length_penalty, o.early_stopping = 5, 3, 0.7, c_early_stopping
    o.repetition_penalty, o.no_repeat_ngram_size, o.min_new_tokens = 1.3, 3, 2
    lengths = []
    for prompt in ([5, 6, 7], [1, 250, 3, 3, 3], [42]):
        expected = tiny_py.beam_search(prompt, 12, num_beams=5, num_return_sequences=3, length_penalty=0.7,
                                       early_stopping=early_stopping, repetition_penalty=1.3, no_repeat_ngram_size=3,
                                       min_new_tokens=2, return_scores=True)
        status, got = beam_search(lib, tiny_c, prompt, 12, o)
        assert status == NT_OK, lib.nt_last_error()
        assert got == [(list(ids), np.float32(score)) for ids, score in expected]
        lengths += [len(ids) for ids, _ in got]
    assert min(lengths) < 12  # some beams ended in EOS
    o.num_return_sequences = 6
    assert beam_search(lib, tiny_c, [5], 4, o)[0] == NT_ERROR_INVALID_ARGUMENT
    assert b"num_return_sequences must be in [1, num_beams = 5]" in lib.nt_last_error()


@pytest.mark.parametrize("model_name", ["smollm2", "gemma3-270m"])
def test_tokenize_and_detokenize_equal_python(lib, smollm2, model_name):
    """Byte-level BPE (SmolLM2) and SentencePiece with byte fallback (Gemma 3) on the tokenizer cross-check
    texts, with and without special tokens and BOS (test_tokenizers.py checks them against transformers and
    llama.cpp); decoding leaves control tokens out."""
    py = smollm2 if model_name == "smollm2" else nextoken.load(nextoken.pull(model_name, quiet=True), n_ctx=32)
    status, model = load(lib, py.path, n_ctx=32)
    assert status == NT_OK, lib.nt_last_error()
    try:
        crosscheck = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_crosscheck.json").read_text())
        texts = [r["text"] for r in crosscheck["models"]["smollm2"]["ids"]] + ["", "<|im_start|>user\nhi<|im_end|>"]
        for text in texts:
            for parse_special, add_bos in ((True, True), (False, False)):
                ids = py.tokenize(text, parse_special=parse_special, add_bos=add_bos)
                assert tokenize(lib, model, text.encode(), parse_special, add_bos) == (NT_OK, ids)
                assert detokenize(lib, model, ids) == py.detokenize(ids), text
        eos = (ctypes.c_int32 * 8)()
        n = lib.nt_model_eos_ids(model, eos, ctypes.c_size_t(8))
        assert sorted(eos[:n]) == sorted(py.eos_token_ids)
    finally:
        lib.nt_model_free(model)


@pytest.mark.parametrize("name", ["llama", "mistral", "qwen2", "gpt2", "gemma3", "gemma3_bf16"])
def test_hugging_face_folders_equal_python(lib, name):
    """A folder loaded by the C API (csrc/loaders/hf_models.cpp, the mapping the Python API uses too, which
    test_hf.py checks against transformers): logits, greedy and sampled tokens, EOS ids and the tokenizer.json
    (the fixtures' byte-level BPE) equal the Python API's."""
    folder = HF / name
    py = nextoken.load(folder, n_ctx=64, n_threads=2)
    status, model = load(lib, folder, n_ctx=64)
    assert status == NT_OK, lib.nt_last_error()
    try:
        prompt = py.tokenize("the cat sat on the mat")
        V = lib.nt_model_vocab_size(model)
        logits = np.empty(V, np.float32)
        assert lib.nt_forward(model, ids_array(prompt), ctypes.c_size_t(len(prompt)),
                              logits.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(V)) == NT_OK
        np.testing.assert_array_equal(logits, py.forward(prompt)[-1])  # the same code on the same weights
        assert generate(lib, model, prompt, 12) == (NT_OK, py.generate(prompt, max_new_tokens=12))
        s = Sampling()
        lib.nt_sampling_init(ctypes.byref(s))
        s.temperature, s.top_p, s.seed = 0.8, 0.9, 3
        assert generate(lib, model, prompt, 12, s) == (NT_OK, py.generate(prompt, max_new_tokens=12, temperature=0.8,
                                                                         top_p=0.9, seed=3))
        for text in ("the cat sat on the mat", " two  spaces\n", "<s>special</s>", ""):
            for parse_special, add_bos in ((True, True), (False, False)):
                expected = py.tokenize(text, parse_special=parse_special, add_bos=add_bos)
                assert tokenize(lib, model, text.encode(), parse_special, add_bos) == (NT_OK, expected)
            ids = py.tokenize(text)
            assert detokenize(lib, model, ids) == py.detokenize(ids)
        eos = (ctypes.c_int32 * 8)()
        n = lib.nt_model_eos_ids(model, eos, ctypes.c_size_t(8))
        assert sorted(eos[:n]) == sorted(py.eos_token_ids)
    finally:
        lib.nt_model_free(model)


def test_folder_with_a_tokenizer_the_core_does_not_read_still_generates(lib, tmp_path):
    """The model loads and runs on ids; nt_tokenize says why it cannot (the Python API reads such a
    tokenizer.json with the tokenizers library)."""
    folder = tmp_path / "llama"
    shutil.copytree(HF / "llama", folder)
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["normalizer"] = {"type": "NFC"}
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    status, model = load(lib, folder, n_ctx=64)
    assert status == NT_OK, lib.nt_last_error()
    try:
        assert generate(lib, model, [5, 6, 7], 4)[0] == NT_OK
        assert tokenize(lib, model, b"the cat")[0] == NT_ERROR_INVALID_ARGUMENT
        assert b"a normalizer is not read by the core" in lib.nt_last_error()
    finally:
        lib.nt_model_free(model)


@pytest.mark.parametrize("name", ["t5", "t5_gated", "bart", "mbart", "marian"])
def test_encoder_decoder_folders_equal_python(lib, name):
    """The prompt is the source: greedy, sampled and beam-search continuations equal the Python API's
    generate(source) / beam_search(source) (test_seq2seq.py checks those against transformers), with the
    folder's decoder start, forced BOS (mBART), bad words (Marian's pad) and renormalization."""
    folder = SEQ2SEQ / name
    py = nextoken.load(folder, n_ctx=64, n_threads=2)
    status, model = load(lib, folder, n_ctx=64)
    assert status == NT_OK, lib.nt_last_error()
    try:
        source = [5, 17, 30, 9, 2] if name.startswith("t5") else [0, 25, 17, 40, 9, 2]
        assert generate(lib, model, source, 10) == (NT_OK, py.generate(source, max_new_tokens=10))
        sources = [source, source[::-1] + [7, 8]]  # two sources of different lengths, stepped together
        seqs, got = run_steps(lib, model, sources, 10)
        assert [got[s] for s in seqs] == [py.generate(x, max_new_tokens=10) for x in sources]
        for s in seqs:
            assert lib.nt_sequence_free(model, ctypes.c_uint64(s)) == NT_OK
        s = Sampling()
        lib.nt_sampling_init(ctypes.byref(s))
        s.temperature, s.top_k, s.seed = 0.9, 20, 11
        expected = py.generate(source, max_new_tokens=10, temperature=0.9, top_k=20, seed=11)
        assert generate(lib, model, source, 10, s) == (NT_OK, expected)
        o = BeamOptions()
        lib.nt_beam_options_init(ctypes.byref(o))
        o.num_beams, o.num_return_sequences = 3, 2
        beams = py.beam_search(source, max_new_tokens=8, num_beams=3, num_return_sequences=2, return_scores=True)
        status, got = beam_search(lib, model, source, 8, o)
        assert status == NT_OK, lib.nt_last_error()
        assert got == [(list(ids), np.float32(score)) for ids, score in beams]
        logits = np.empty(lib.nt_model_vocab_size(model), np.float32)
        assert lib.nt_forward(model, ids_array(source), ctypes.c_size_t(len(source)),
                              logits.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(logits.size)) == \
            NT_ERROR_INVALID_ARGUMENT
        assert b"encoder-decoder" in lib.nt_last_error()
    finally:
        lib.nt_model_free(model)


def encode(lib, model, source):
    states = np.empty((len(source), lib.nt_model_dim(model)), np.float32)
    status = lib.nt_encode(model, ids_array(source), ctypes.c_size_t(len(source)),
                           states.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(states.size))
    return status, states


def generate_encoded(lib, model, states, max_new_tokens):
    out, n = (ctypes.c_int32 * max_new_tokens)(), ctypes.c_size_t()
    states = np.ascontiguousarray(states, np.float32)
    status = lib.nt_generate_encoded(model, states.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(states.shape[0]),
                                     max_new_tokens, None, out, ctypes.c_size_t(max_new_tokens), ctypes.byref(n))
    return status, list(out[:n.value])


def test_encode_and_generate_from_states_equal_python(lib):
    """nt_encode is the Python API's encode(ids) bit for bit, and nt_generate_encoded its
    generate(encoder_hidden_states=...): for a translation model, and for image captioning, whose image the
    Python API encodes (the C API does not read images)."""
    py = nextoken.load(SEQ2SEQ / "t5", n_ctx=64, n_threads=2)
    status, model = load(lib, SEQ2SEQ / "t5", n_ctx=64)
    assert status == NT_OK, lib.nt_last_error()
    try:
        source = [5, 17, 30, 9, 2]
        status, states = encode(lib, model, source)
        assert status == NT_OK, lib.nt_last_error()
        np.testing.assert_array_equal(states, py.encode(source))
        assert generate_encoded(lib, model, states, 10) == (NT_OK, py.generate(source, max_new_tokens=10))
        states[0, 0] = np.nan
        assert generate_encoded(lib, model, states, 10)[0] == NT_ERROR_INVALID_ARGUMENT
    finally:
        lib.nt_model_free(model)
    folder = SEQ2SEQ / "vit_gpt2"
    py = nextoken.load(folder, n_ctx=64, n_threads=2)
    status, model = load(lib, folder, n_ctx=64)
    assert status == NT_OK, lib.nt_last_error()
    try:
        states = py.encode(image=folder / "image.png")
        caption = py.generate(encoder_hidden_states=states, max_new_tokens=8)  # text: its ids decoded
        status, ids = generate_encoded(lib, model, states, 8)
        assert status == NT_OK and 0 < len(ids) <= 8 and py.detokenize(ids) == caption
        assert generate(lib, model, [1, 2], 4)[0] == NT_ERROR_INVALID_ARGUMENT
        assert b"encodes images" in lib.nt_last_error()
    finally:
        lib.nt_model_free(model)


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "config.json").write_text("{"), "not valid JSON"),
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "falcon"})), "unsupported model_type 'falcon'"),
    # vocab_size sized the tokenizer (2**31 strings) before the embeddings were checked against it
    (lambda f: (f / "config.json").write_text(json.dumps(dict(json.loads((f / "config.json").read_text()),
                                                             vocab_size=2**31 - 1))), "token_embd"),
])
def test_bad_folders_give_a_status_and_a_message(lib, tmp_path, edit, message):
    folder = tmp_path / "llama"
    shutil.copytree(HF / "llama", folder)
    edit(folder)
    status, model = load(lib, folder)
    assert status == NT_ERROR_MODEL_FILE and model.value is None
    assert message in lib.nt_last_error().decode()


@pytest.mark.parametrize("content, status, message", [
    (None, NT_ERROR_MODEL_FILE, "No such file"),
    (b"", NT_ERROR_MODEL_FILE, "empty"),
    (b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16, NT_ERROR_MODEL_FILE, "too many"),
    (b"not a model" * 10, NT_ERROR_MODEL_FILE, "magic"),
])
def test_bad_files_give_a_status_and_a_message(lib, tmp_path, content, status, message):
    path = tmp_path / "bad.gguf"
    if content is not None:
        path.write_bytes(content)
    got, model = load(lib, path)
    assert got == status and model.value is None
    assert message in lib.nt_last_error().decode()


def test_bad_calls_give_a_status_and_leave_the_model_usable(lib, tiny_c, tiny_model_path, tiny_py):
    assert load(lib, tiny_model_path[0], compute_type="int4")[0] == NT_ERROR_INVALID_ARGUMENT
    assert b"compute_type" in lib.nt_last_error()
    assert load(lib, tiny_model_path[0], n_ctx=0)[0] == NT_ERROR_INVALID_ARGUMENT
    assert load(lib, tiny_model_path[0], n_threads=1000)[0] == NT_ERROR_INVALID_ARGUMENT
    assert b"n_threads" in lib.nt_last_error()
    assert generate(lib, tiny_c, [1, 300], 4)[0] == NT_ERROR_INVALID_ARGUMENT  # vocabulary of 300
    assert b"outside the vocabulary" in lib.nt_last_error()
    assert generate(lib, tiny_c, [], 4)[0] == NT_ERROR_INVALID_ARGUMENT
    assert generate(lib, tiny_c, [1] * 250, 10)[0] == NT_ERROR_INVALID_ARGUMENT  # n_ctx 256
    assert b"context" in lib.nt_last_error()
    s = Sampling()
    lib.nt_sampling_init(ctypes.byref(s))
    s.temperature = float("nan")
    assert generate(lib, tiny_c, [1, 2], 4, s)[0] == NT_ERROR_INVALID_ARGUMENT
    s.temperature, s.top_p = 1.0, 2.0
    assert generate(lib, tiny_c, [1, 2], 4, s)[0] == NT_ERROR_INVALID_ARGUMENT
    n = ctypes.c_size_t()
    assert lib.nt_generate(tiny_c, ids_array([1]), ctypes.c_size_t(1), 8, None, None, ctypes.c_size_t(0),
                           ctypes.byref(n)) == NT_ERROR_INVALID_ARGUMENT
    assert lib.nt_generate(None, ids_array([1]), ctypes.c_size_t(1), 8, None, None, ctypes.c_size_t(0),
                           ctypes.byref(n)) == NT_ERROR_INVALID_ARGUMENT
    assert b"model is NULL" in lib.nt_last_error()
    logits = np.empty(10, np.float32)
    assert lib.nt_forward(tiny_c, ids_array([1]), ctypes.c_size_t(1), logits.ctypes.data_as(ctypes.c_void_p),
                          ctypes.c_size_t(10)) == NT_ERROR_INVALID_ARGUMENT
    assert lib.nt_step(tiny_c, (ctypes.c_uint64 * 1)(12345), ctypes.c_size_t(1), (StepOutput * 1)(), ctypes.c_size_t(1),
                       ctypes.byref(n)) == NT_ERROR_INVALID_ARGUMENT
    assert tokenize(lib, tiny_c, b"ok \xff")[0] == NT_ERROR_INVALID_ARGUMENT
    assert b"not valid UTF-8 (at byte 3)" in lib.nt_last_error()
    ids = (ctypes.c_int32 * 1)()
    assert lib.nt_tokenize(tiny_c, b" the the", ctypes.c_size_t(8), 1, 1, ids, ctypes.c_size_t(1), ctypes.byref(n)) \
        == NT_ERROR_BUFFER_TOO_SMALL and n.value == 2
    # after all that, the model answers as before
    assert generate(lib, tiny_c, [5, 6], 8) == (NT_OK, tiny_py.generate([5, 6], max_new_tokens=8))
    assert lib.nt_last_error() == b""
