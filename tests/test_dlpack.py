"""Arrays in through DLPack, numpy arrays out. The first part needs no torch: DLPackOnly exposes nothing but
__dlpack__ / __dlpack_device__ (no __array__, no buffer, not iterable), delegating to a numpy array, so an
input it passes can only have been read through DLPack, as a torch or JAX tensor would be. Results must
equal the same input given as a list; zero copies are checked on the arrays handed to the core (a recorder
around the session), which must share the caller's memory when dtype and layout already fit. The second
part runs the same paths on torch tensors and is skipped where torch is absent."""
from pathlib import Path

import numpy as np
import pytest

import nextoken

HERE = Path(__file__).parent / "fixtures" / "seq2seq"
IDS = [5, 17, 200, 3, 42, 9]


class DLPackOnly:
    """Only the DLPack protocol, over a numpy array; `device` is what __dlpack_device__ reports."""

    def __init__(self, array, device=(1, 0)):
        self._array, self._device = array, device

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


class Recorder:
    """Wraps a core object: records each method call's (name, args) and forwards it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        fn = getattr(self.inner, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return fn(*args, **kwargs)
        return call

    def args(self, name):
        return [args for n, args, _ in self.calls if n == name]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return nextoken.load(tiny_model_path[0], n_ctx=64, n_threads=2)


@pytest.fixture(scope="module")
def t5():
    return nextoken.load(HERE / "t5", n_ctx=64, n_threads=2)


@pytest.fixture(scope="module")
def captioner():
    return nextoken.load(HERE / "vit_gpt2", n_ctx=64, n_threads=2), np.load(HERE / "vit_gpt2" / "reference.npz")


@pytest.fixture
def recorded(monkeypatch):
    """recorded(model): the model's session wrapped in a Recorder, put back after the test."""
    def wrap(model):
        recorder = Recorder(model._model)
        monkeypatch.setattr(model, "_model", recorder)
        return recorder
    return wrap


# ---- without torch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_ids_through_dlpack_equal_lists(tiny, dtype):
    ids = DLPackOnly(np.array(IDS, dtype))
    np.testing.assert_array_equal(tiny.forward(ids), tiny.forward(IDS))
    assert tiny.generate(ids, max_new_tokens=5, min_new_tokens=5) == tiny.generate(IDS, max_new_tokens=5,
                                                                                   min_new_tokens=5)
    assert list(tiny.stream(ids, max_new_tokens=3)) == list(tiny.stream(IDS, max_new_tokens=3))
    assert tiny.beam_search(ids, max_new_tokens=3, num_beams=2) == tiny.beam_search(IDS, max_new_tokens=3, num_beams=2)
    assert tiny.detokenize(ids) == tiny.detokenize(IDS)
    sequence = tiny.add_sequence(ids, max_new_tokens=2)
    tiny.step([sequence])
    assert tiny.sequence_tokens(sequence)[:len(IDS)] == IDS
    tiny.free_sequence(sequence)


def test_a_batch_through_dlpack(tiny):
    rows = np.array([IDS, IDS[::-1]], np.int32)
    expected = tiny.generate(rows.tolist(), max_new_tokens=4, min_new_tokens=4)
    assert tiny.generate(DLPackOnly(rows), max_new_tokens=4, min_new_tokens=4) == expected
    assert tiny.generate([DLPackOnly(rows[0]), DLPackOnly(rows[1])], max_new_tokens=4, min_new_tokens=4) == expected
    assert sorted(tiny.stream(DLPackOnly(rows), max_new_tokens=2)) == sorted(tiny.stream(rows.tolist(), max_new_tokens=2))


def test_int32_ids_reach_the_core_without_a_copy(tiny, recorded):
    session = recorded(tiny)
    ids32, ids64 = np.array(IDS, np.int32), np.array(IDS, np.int64)
    tiny.forward(DLPackOnly(ids32))
    tiny.forward(DLPackOnly(ids64))
    tiny.generate(DLPackOnly(ids32), max_new_tokens=1)
    (given32, *_), (given64, *_) = session.args("forward")
    assert np.shares_memory(given32, ids32)  # the caller's memory, read in place
    assert given64.dtype == np.int32 and not np.shares_memory(given64, ids64)  # int64 -> int32: a copy
    assert np.shares_memory(session.args("add")[0][0], ids32)


def test_outputs_are_numpy_and_export_dlpack(tiny, t5):
    logits = tiny.forward(IDS)
    assert type(logits) is np.ndarray and logits.dtype == np.float32 and logits.flags.c_contiguous
    assert np.shares_memory(np.from_dlpack(logits), logits)
    states = t5.encode(DLPackOnly(np.array([5, 9, 14, 1], np.int64)))
    assert type(states) is np.ndarray and states.dtype == np.float32 and states.ndim == 2
    np.testing.assert_array_equal(states, t5.encode([5, 9, 14, 1]))


def test_encoder_hidden_states_through_dlpack(t5, recorded):
    states = t5.encode([5, 9, 14, 1])
    decoder_ids = [0, 5, 7]
    np.testing.assert_array_equal(t5.forward(decoder_ids, encoder_hidden_states=DLPackOnly(states)),
                                  t5.forward(decoder_ids, encoder_hidden_states=states))
    assert t5.generate(encoder_hidden_states=DLPackOnly(states), max_new_tokens=4, min_new_tokens=4) == \
        t5.generate(encoder_hidden_states=states, max_new_tokens=4, min_new_tokens=4)
    assert t5.beam_search(encoder_hidden_states=DLPackOnly(states), max_new_tokens=3, num_beams=2) == \
        t5.beam_search(encoder_hidden_states=states, max_new_tokens=3, num_beams=2)
    doubled = states.astype(np.float64)  # another float dtype: converted, same result
    np.testing.assert_array_equal(t5.forward(decoder_ids, encoder_hidden_states=DLPackOnly(doubled)),
                                  t5.forward(decoder_ids, encoder_hidden_states=states))
    session = recorded(t5)
    t5.forward(decoder_ids, encoder_hidden_states=DLPackOnly(states))
    assert np.shares_memory(session.args("forward")[0][3], states)  # handed over in place (the core copies it)


def test_pixel_values_through_dlpack(captioner):
    model, arrays = captioner
    pixels = np.ascontiguousarray(arrays["src0_pixel_values"], dtype=np.float32)  # (1, 3, H, W)
    np.testing.assert_array_equal(model.encode(pixel_values=DLPackOnly(pixels)), model.encode(pixel_values=pixels))
    assert model.generate(pixel_values=DLPackOnly(pixels[0]), max_new_tokens=4, min_new_tokens=4) == \
        model.generate(pixel_values=pixels, max_new_tokens=4, min_new_tokens=4)


def test_sampling_distribution_through_dlpack():
    logits = np.linspace(-2, 2, 50, dtype=np.float32)
    history = np.array([3, 7, 7], np.int64)
    kwargs = dict(temperature=0.7, top_k=20, repetition_penalty=1.3)
    np.testing.assert_array_equal(nextoken.sampling_distribution(DLPackOnly(logits), DLPackOnly(history), **kwargs),
                                  nextoken.sampling_distribution(logits.tolist(), history.tolist(), **kwargs))


class Unreadable(DLPackOnly):
    def __dlpack__(self, **kwargs):
        raise BufferError("this exporter cannot export")


BAD_IDS = [
    (DLPackOnly(np.array([1, 2], np.complex64)), "ids must be a flat sequence of integers"),
    (DLPackOnly(np.array([1.0, 2.0], np.float32)), "ids must be a flat sequence of integers"),
    (DLPackOnly(np.array([True, False])), "ids must be a flat sequence of integers"),
    (DLPackOnly(np.zeros((2, 3, 1), np.int32)), "ids must be a flat sequence of integers"),
    (DLPackOnly(np.array([1, 2], np.int32), device=(2, 0)), "ids is in CUDA memory"),
    (DLPackOnly(np.array([1, 2], np.int32), device=(8, 0)), "ids is in Metal memory"),
    (DLPackOnly(np.array([1, 400], np.int32)), "ids: token id 400 is outside the vocabulary"),
    (Unreadable(np.array([1, 2], np.int32)), "ids: numpy cannot read it through DLPack"),
]


@pytest.mark.parametrize("bad,match", BAD_IDS)
def test_bad_dlpack_ids_are_named(tiny, bad, match):
    with pytest.raises(nextoken.Error, match=match):
        tiny.forward(bad)
    with pytest.raises(nextoken.Error, match="prompt" + match[3:]):
        tiny.generate(bad, max_new_tokens=1)
    with pytest.raises(ValueError):  # nextoken.Error is a ValueError
        tiny.detokenize(bad)


def test_bad_dlpack_arrays_are_named(t5, captioner, tiny):
    complex_states = DLPackOnly(np.zeros((3, 32), np.complex64))
    with pytest.raises(nextoken.Error, match="encoder_hidden_states must be a 2-D array of real numbers"):
        t5.forward([0, 5], encoder_hidden_states=complex_states)
    with pytest.raises(nextoken.Error, match="encoder_hidden_states must be a 2-D array"):
        t5.generate(encoder_hidden_states=DLPackOnly(np.zeros((1, 3, 32), np.float32)), max_new_tokens=1)
    with pytest.raises(nextoken.Error, match="encoder_hidden_states is in CUDA memory"):
        t5.beam_search(encoder_hidden_states=DLPackOnly(np.zeros((3, 32), np.float32), (2, 0)), num_beams=2)
    with pytest.raises(nextoken.Error, match="source must be a flat sequence"):
        t5.encode(DLPackOnly(np.zeros(3, np.float32)))
    model, _ = captioner
    with pytest.raises(nextoken.Error, match="pixel_values must be an array of real numbers"):
        model.encode(pixel_values=DLPackOnly(np.zeros((3, 32, 32), np.complex64)))
    with pytest.raises(nextoken.Error, match="pixel_values is in ROCm memory"):
        model.generate(pixel_values=DLPackOnly(np.zeros((3, 32, 32), np.float32), (10, 0)), max_new_tokens=1)
    with pytest.raises(nextoken.Error, match="logits must be a non-empty 1-D float array"):
        nextoken.sampling_distribution(DLPackOnly(np.zeros(4, np.complex64)))
    with pytest.raises(nextoken.Error, match="previous_ids: token id 9"):
        nextoken.sampling_distribution(np.zeros(4, np.float32), DLPackOnly(np.array([9])))


# ---- torch tensors (skipped without torch) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def test_torch_ids(tiny, torch, recorded):
    expected = tiny.generate(IDS, max_new_tokens=4, min_new_tokens=4)
    ids64 = torch.tensor(IDS)  # torch's default int64: converted to int32, a copy
    np.testing.assert_array_equal(tiny.forward(ids64), tiny.forward(IDS))
    assert tiny.generate(ids64, max_new_tokens=4, min_new_tokens=4) == expected
    batch = torch.tensor([IDS, IDS[::-1]])
    assert tiny.generate(batch, max_new_tokens=4, min_new_tokens=4) == \
        tiny.generate([IDS, IDS[::-1]], max_new_tokens=4, min_new_tokens=4)
    assert tiny.generate(list(batch), max_new_tokens=4, min_new_tokens=4)[0] == expected
    assert tiny.detokenize(ids64) == tiny.detokenize(IDS)
    session = recorded(tiny)
    ids32 = torch.tensor(IDS, dtype=torch.int32)
    tiny.forward(ids32)
    given = session.args("forward")[0][0]
    assert given.ctypes.data == ids32.data_ptr()  # the tensor's own memory reaches the core


def test_torch_arrays_and_outputs(t5, captioner, torch):
    states = t5.encode(torch.tensor([5, 9, 14, 1]))
    view = torch.from_dlpack(states)  # numpy out, torch in, no copy
    assert view.data_ptr() == states.ctypes.data and view.dtype == torch.float32
    np.testing.assert_array_equal(t5.forward(torch.tensor([0, 5]), encoder_hidden_states=view),
                                  t5.forward([0, 5], encoder_hidden_states=states))
    strided = torch.from_dlpack(np.ascontiguousarray(states.T)).t()  # same values, not C-contiguous: copied
    np.testing.assert_array_equal(t5.forward([0, 5], encoder_hidden_states=strided),
                                  t5.forward([0, 5], encoder_hidden_states=states))
    model, arrays = captioner
    pixels = arrays["src0_pixel_values"]
    np.testing.assert_array_equal(model.encode(pixel_values=torch.from_numpy(pixels)), model.encode(pixel_values=pixels))
    logits = torch.linspace(-2, 2, 50)
    np.testing.assert_array_equal(nextoken.sampling_distribution(logits, torch.tensor([3, 7]), temperature=0.5),
                                  nextoken.sampling_distribution(logits.numpy(), [3, 7], temperature=0.5))


def test_bad_torch_tensors_are_named(tiny, t5, torch):
    with pytest.raises(nextoken.Error, match="ids must be a flat sequence of integers"):
        tiny.forward(torch.tensor([1, 2], dtype=torch.complex64))
    with pytest.raises(nextoken.Error, match="ids must be a flat sequence of integers"):
        tiny.forward(torch.tensor([[1, 2]]))
    with pytest.raises(nextoken.Error, match="^ids"):
        tiny.forward(torch.tensor([1, 2], device="meta"))  # no DLPack device at all
    with pytest.raises(nextoken.Error, match="^encoder_hidden_states.*detach"):
        t5.forward([0, 5], encoder_hidden_states=torch.zeros(3, 32, requires_grad=True))
    with pytest.raises(nextoken.Error, match="^encoder_hidden_states"):
        t5.forward([0, 5], encoder_hidden_states=torch.zeros(3, 32, dtype=torch.bfloat16))
    with pytest.raises(nextoken.Error, match="encoder_hidden_states must be a 2-D array of real numbers"):
        t5.forward([0, 5], encoder_hidden_states=torch.zeros(3, 32, dtype=torch.complex64))
