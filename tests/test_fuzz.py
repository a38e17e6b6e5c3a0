"""Fuzz targets (hypothesis): whatever a model file or an argument holds, nextoken either does its job or
raises nextoken.Error (a ValueError) with a message; never another exception, never a crash, never a hang.

  1. GGUF files: a tiny valid llama file and a tiny gemma3 one, mutated field by field (metadata values
     of any type, deleted / duplicated / inserted keys, deeply nested arrays, tensor dims, types, offsets
     and names) and byte by byte (integers overwritten at header offsets, flipped bytes, truncations,
     insertions), through nextoken.load(); a file that loads also generates two tokens.
  2. Hugging Face folders: the fixture folders with config.json, generation_config.json and the other
     JSON files edited (values of wrong types, huge, negative, NaN, nested; deleted and added keys;
     broken text), safetensors headers edited (dtype, shape, data_offsets, entries) and files truncated.
  3. Text: arbitrary strings (lone surrogates, NUL, special-token spellings, rare and huge text) through
     tokenize(), generate() and detokenize(), and arbitrary id lists through detokenize().
  4. Generation: generate() / stream() / add_sequence() + step() with arbitrary values (ints beyond 32
     and 64 bits, negative, NaN / inf, bools, strings, None, lists, numpy scalars and arrays) for every
     parameter, and arbitrary prompts (id lists and arrays of any dtype and shape, batches, text).
     Also load()'s own parameters (n_ctx, n_threads, compute_type, weights, kv_cache, lora).

Each runs NEXTOKEN_FUZZ_EXAMPLES inputs (default 2000), derandomized so that CI sees the same inputs every
run; tests/fuzz_long.py runs the same targets with many more, from fresh random seeds. An input slower
than the deadline (10 s: inputs take 1-80 ms, so only a near-hang, even on a loaded machine) fails; a true
hang trips a watchdog that ends the process with every thread's stack. Defects found where they are not
fixed yet would be listed in KNOWN_DEFECTS, each with a strict xfail test that reproduces it:
the fix makes that test XPASS (a failure) and the entry must go. Below the targets: a regression test for
each defect they found and fixed.
"""
from __future__ import annotations

import contextlib
import faulthandler
import inspect
import json
import math
import os
import re
import struct
import subprocess
import sys
import traceback
import warnings
from datetime import timedelta
from pathlib import Path

import hypothesis
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import nextoken

from conftest import edited_copy

FIXTURES = Path(__file__).parent / "fixtures"
HF_FOLDERS = sorted(p for p in (FIXTURES / "hf").iterdir() if (p / "config.json").is_file()) + \
    sorted(p for p in (FIXTURES / "seq2seq").iterdir() if (p / "config.json").is_file())

EXAMPLES = int(os.environ.get("NEXTOKEN_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=os.environ.get("NEXTOKEN_FUZZ_RANDOM") != "1", database=None,
                deadline=timedelta(seconds=float(os.environ.get("NEXTOKEN_FUZZ_DEADLINE_S", "10"))), print_blob=True,
                phases=[p for p in Phase if p != Phase.explain],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])
WATCHDOG_S = int(os.environ.get("NEXTOKEN_FUZZ_WATCHDOG_S", max(600, EXAMPLES // 5)))  # per target: see watchdog()

INTERESTING_INTS = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256, 299, 300, 301, 319, 320,
                    512, 513, 1024, 2**15, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
                    2**64 - 1, 2**64, 2**100, -1, -2, -2**31, -2**31 - 1, -2**63, -2**63 - 1]
ODD_FLOATS = [0.0, -0.0, 0.5, 1.0, 2.0, 1e-45, 1e-300, 1e30, 1e31, 1e300, 1.7976931348623157e308, math.nan,
              math.inf, -math.inf, -1.0, -1e30]
F32_FLOATS = [x for x in ODD_FLOATS if not abs(x) < math.inf or abs(x) < 3e38]  # those a float32 holds


# ---- the property ------------------------------------------------------------------------------------------
# Defects the targets find and that are not fixed yet: (what, exception types, the file under python/nextoken/,
# the function (None: any) and pieces of the source line (one must appear) of the innermost frame of the package
# the exception passes). The targets tolerate it;
# each entry has a strict-xfail reproducer at the end of this file.
KNOWN_DEFECTS = []  # none left: each one found was fixed, with its reproducer kept below as a regression test


def known_defect(e: BaseException):
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/nextoken/" in f.filename.replace(os.sep, "/")]
    if not frames:
        return None
    last = frames[-1]
    for name, types, path, function, line in KNOWN_DEFECTS:
        if isinstance(e, types) and last.filename.replace(os.sep, "/").endswith("/nextoken/" + path) and \
                function in (None, last.name) and any(piece in (last.line or "") for piece in line):
            return name
    return None


def attempt(call, *args, **kwargs):
    """call's result, or the nextoken.Error it raised (which must carry a message). Any other exception
    propagates: that is what the targets look for. (Two other exceptions are right where Python has them: a
    missing file is FileNotFoundError and an unknown keyword argument TypeError; the targets give neither.)"""
    try:
        return call(*args, **kwargs)
    except nextoken.Error as e:
        assert isinstance(e, ValueError)
        assert str(e).strip(), f"{getattr(call, '__name__', call)} raised a nextoken.Error without a message"
        return e
    except Exception as e:
        if known_defect(e):
            return e
        raise


def event(target: str, outcome):
    """Tallies outcomes for --hypothesis-show-statistics: how often the inputs get how far."""
    if isinstance(outcome, BaseException):
        words = " ".join(re.sub(r"\S*/", "", str(outcome)).replace("'", " ").split()[:4])
        words = words.encode("utf-8", "backslashreplace").decode()  # a message may quote a lone surrogate
        hypothesis.event(f"{target}: {type(outcome).__name__} {words[:40]}")
    else:
        hypothesis.event(f"{target}: {type(outcome).__name__}")


@pytest.fixture(autouse=True)
def watchdog():
    """A target still running after WATCHDOG_S is hung on an input: the process ends, printing every thread's
    stack (a hang in the core never returns to Python, so nothing softer would see it). Armed once per target:
    re-arming per input would cost more than most inputs take."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def memory_limit(extra: int = 2 << 30):
    """At most `extra` more bytes of address space inside: an allocation sized by what an input claims fails
    as MemoryError (std::bad_alloc), which the property refuses, instead of taking the machine's memory."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):  # not Linux: no limit
        yield
        return
    limit = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def guarded():
    """One input: warnings silenced (a short n_ctx warns, weights may overflow), memory bounded."""
    with warnings.catch_warnings(), np.errstate(all="ignore"), memory_limit():
        warnings.simplefilter("ignore")
        yield


# ---- values of every kind ----------------------------------------------------------------------------------
ints = st.one_of(st.integers(-3, 40), st.sampled_from(INTERESTING_INTS), st.integers(-2**70, 2**70))
floats = st.one_of(st.sampled_from(ODD_FLOATS), st.floats(), st.floats(0, 2))
short_text = st.one_of(st.text(max_size=6), st.sampled_from(["", " ", "the", "never", "true", "1", "nan", "\x00",
                                                             "\ud800", "<|im_end|>", "</s>"]))
u64 = st.one_of(st.integers(0, 40), st.sampled_from([v for v in INTERESTING_INTS if 0 <= v < 2**64]),
                st.integers(0, 2**64 - 1))
numpy_scalars = st.one_of(st.sampled_from([v for v in INTERESTING_INTS if -2**63 <= v < 2**63]).map(np.int64),
                          u64.map(np.uint64), st.sampled_from(F32_FLOATS).map(np.float32),
                          floats.map(np.float64), st.booleans().map(np.bool_))


@st.composite
def numpy_arrays(draw):
    """Arrays of any dtype and shape (0-3 dims), small values, sometimes strided."""
    dtype = draw(st.sampled_from([np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32,
                                  np.float64, np.bool_, np.complex64, ">i4", "<U2", object]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    n = int(np.prod(shape))
    values = np.array(draw(st.lists(st.integers(-2, 400), min_size=n, max_size=n)), np.int64).reshape(shape)
    with np.errstate(all="ignore"):
        arr = values.astype(dtype)
    if arr.ndim and arr.shape[0] > 1 and draw(st.booleans()):
        arr = arr[::2]  # not contiguous
    return arr


scalars = st.one_of(st.none(), st.booleans(), ints, floats, short_text, numpy_scalars)
anything = st.one_of(scalars, st.lists(scalars, max_size=4), st.lists(st.lists(ints, max_size=3), max_size=3),
                     st.dictionaries(ints | short_text, scalars, max_size=3), numpy_arrays(),
                     st.tuples(ints, ints), st.sampled_from([b"bytes", object(), {1, 2}, range(3), 1j]))


# ---- 1. GGUF files -----------------------------------------------------------------------------------------
# A small writer of the container (llama.cpp's docs/gguf.md), independent of the reader under test, so that a
# mutation can edit any field and the file is written back with the right sizes.
SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


def _parse_gguf(data: bytes):
    """(version, [[key, type, value]], [[name, dims, type, offset]], tensor data) of a GGUF file (an exception
    if it is not one). Array values are (element type, [items])."""
    pos = 4

    def take(fmt):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)[0]  # struct.error past the end
        pos += struct.calcsize("<" + fmt)
        return value

    def string():
        nonlocal pos
        n = take("Q")
        if pos + n > len(data):
            raise ValueError("a string past the end")
        pos += n
        return data[pos - n:pos].decode(errors="replace")

    def value(type_id):
        if type_id in SCALAR_FORMATS:
            return take(SCALAR_FORMATS[type_id])
        if type_id == STRING:
            return string()
        elem, n = take("I"), take("Q")
        return (elem, [value(elem) for _ in range(n)])

    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    entries = []
    for _ in range(n_kv):
        key = string()
        type_id = take("I")
        entries.append([key, type_id, value(type_id)])
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append([name, dims, take("I"), take("Q")])
    alignment = dict((k, v) for k, _, v in entries).get("general.alignment", 32)
    return version, entries, infos, data[-(-pos // alignment) * alignment:]


class GGUFImage:
    """A GGUF file as parts to edit; write() lays them out again and records where each integer lies."""

    def __init__(self, version, entries, infos, data):
        self.version, self.entries, self.infos, self.data = version, entries, infos, data

    def copy(self):
        return GGUFImage(self.version, [list(e) for e in self.entries],
                         [[n, list(d), t, o] for n, d, t, o in self.infos], self.data)

    def write(self):
        """(bytes, [(offset, struct format)] of every integer and float in the header)."""
        out, fields = bytearray(b"GGUF"), []

        def put(fmt, value, record=True):
            if record:
                fields.append((len(out), fmt))
            out.extend(struct.pack("<" + fmt, value))

        def put_string(s):
            raw = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else bytes(s)
            put("Q", len(raw))
            out.extend(raw)

        def put_value(type_id, value):
            if isinstance(value, bytes) and type_id == ARRAY:  # a raw, pre-encoded array (deep nesting)
                out.extend(value)
            elif type_id in SCALAR_FORMATS:
                put(SCALAR_FORMATS[type_id], value)
            elif type_id == STRING:
                put_string(value)
            else:
                elem, items = value
                put("I", elem)
                put("Q", len(items))
                for item in items:
                    put_value(elem, item)

        put("I", self.version)
        put("Q", len(self.infos))
        put("Q", len(self.entries))
        for key, type_id, value in self.entries:
            put_string(key)
            put("I", type_id)
            put_value(type_id, value)
        for name, dims, type_id, offset in self.infos:
            put_string(name)
            put("I", len(dims))
            for d in dims:
                put("Q", d)
            put("I", type_id)
            put("Q", offset)
        alignment = next((v for k, t, v in self.entries if k == "general.alignment" and t in SCALAR_FORMATS), 32)
        alignment = alignment if isinstance(alignment, int) and 8 <= alignment <= 4096 and \
            not alignment & (alignment - 1) else 32
        out.extend(b"\0" * (-len(out) % alignment))
        return bytes(out + self.data), fields


@pytest.fixture(scope="module")
def gguf_seeds(tiny_model_path, tmp_path_factory):
    """The tiny llama of conftest (Q4_1 / Q8_0 matrices, byte-level BPE) and a tiny gemma3 converted from
    the Hugging Face fixture (Q8_0 and F32, sliding-window pattern, two RoPE bases), as GGUFImages."""
    from nextoken.convert import convert
    tmp = tmp_path_factory.mktemp("gguf_seeds")
    folder = edited_copy(FIXTURES / "hf" / "gemma3", tmp / "gemma3", "config.json",
                         lambda c: c.update(query_pre_attn_scalar=c["head_dim"]))
    gemma3 = convert(folder, tmp / "gemma3.gguf", weights="q8_0")  # Q8_0: a quarter of the bytes to rewrite
    seeds = [GGUFImage(*_parse_gguf(Path(p).read_bytes())) for p in (tiny_model_path[0], gemma3)]
    for seed, path in zip(seeds, (tiny_model_path[0], gemma3)):
        assert seed.write()[0] == Path(path).read_bytes()  # the writer reproduces the files it parsed
    return seeds


def gguf_value(depth=0):
    """(GGUF type, value) of any type: scalars across their range, strings (invalid UTF-8 too), arrays."""
    def scalar(type_id):
        fmt = SCALAR_FORMATS[type_id]
        if fmt == "?":
            return st.booleans()
        if fmt in "fd":
            return floats if fmt == "d" else st.sampled_from(F32_FLOATS) | st.floats(width=32)
        bits = struct.calcsize(fmt) * 8
        low, high = (-2**(bits - 1), 2**(bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
        return st.one_of(st.integers(low, high), st.sampled_from([v for v in INTERESTING_INTS if low <= v <= high]))

    scalar_types = st.sampled_from(sorted(SCALAR_FORMATS))
    scalars_ = scalar_types.flatmap(lambda t: scalar(t).map(lambda v: (t, v)))
    strings = st.one_of(short_text, st.binary(max_size=8), st.sampled_from(["llama", "gpt2", "gemma3", "smollm",
                                                                             "starcoder", "none", "linear", "yarn"]))
    strings = strings.map(lambda s: (STRING, s))
    if depth >= 2:
        return st.one_of(scalars_, strings)
    arrays = st.one_of(
        scalar_types.flatmap(lambda t: st.lists(scalar(t), max_size=6).map(lambda v: (ARRAY, (t, v)))),
        st.lists(strings.map(lambda s: s[1]), max_size=6).map(lambda v: (ARRAY, (STRING, v))),
        st.lists(gguf_value(depth + 1), min_size=0, max_size=3).map(
            lambda items: (ARRAY, (ARRAY, [v for t, v in items if t == ARRAY]))),
        # long arrays: token types or tokens one past the vocabulary, or far longer
        st.tuples(st.sampled_from([0, 4, 5, 6]), st.sampled_from([1, 3, 299, 301, 4096])).map(
            lambda p: (ARRAY, (p[0], [1] * p[1]))),
        st.sampled_from([299, 301]).map(lambda n: (ARRAY, (STRING, [f"t{i}" for i in range(n)]))))
    return st.one_of(scalars_, strings, arrays)


def deep_array(depth: int) -> bytes:
    """An array nested `depth` times (pre-encoded), holding one u32."""
    return struct.pack("<IQ", ARRAY, 1) * depth + struct.pack("<IQ", 4, 1) + struct.pack("<I", 7)


GGUF_KEYS = [f"{a}.{k}" for a in ("llama", "gemma3") for k in (
    "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "attention.value_length", "rope.freq_base",
    "rope.freq_base_swa", "attention.layer_norm_rms_epsilon", "rope.dimension_count", "vocab_size",
    "rope.scaling.type", "rope.scaling.factor", "attention.sliding_window", "attention.sliding_window_pattern",
    "final_logit_softcapping")] + [
    "general.architecture", "general.alignment", "general.name", "tokenizer.ggml.model", "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.scores",
    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template"]

index = st.integers(0, 2**16)  # taken modulo the number of entries / tensors / bytes
gguf_edits = st.one_of(
    st.tuples(st.just("set"), st.one_of(st.sampled_from(GGUF_KEYS), short_text), gguf_value()),
    st.tuples(st.just("retype"), index, gguf_value()),          # an existing key, another value (type)
    st.tuples(st.just("delete"), index),
    st.tuples(st.just("duplicate"), index, st.one_of(st.none(), gguf_value())),  # the key twice
    st.tuples(st.just("nest"), st.sampled_from(GGUF_KEYS[:3] + ["x.nested"]), st.sampled_from([2, 8, 64, 5000])),
    st.tuples(st.just("dims"), index, st.lists(u64, max_size=5)),
    st.tuples(st.just("tensor_type"), index, st.one_of(st.integers(0, 40), st.sampled_from([2**31, 2**32 - 1]))),
    st.tuples(st.just("offset"), index, st.one_of(st.integers(0, 2**17), st.sampled_from([2**63, 2**64 - 1, 31]))),
    st.tuples(st.just("rename"), index, st.one_of(index, short_text)),  # another tensor's name, or any
    st.tuples(st.just("tensor_duplicate"), index),
    st.tuples(st.just("tensor_delete"), index),
    st.tuples(st.just("version"), st.sampled_from([0, 1, 2, 4, 2**32 - 1])),
)
byte_edits = st.one_of(
    st.tuples(st.just("int"), index, ints, floats),   # an integer / float of the header overwritten
    st.tuples(st.just("flip"), index, st.integers(0, 255), st.booleans()),  # True: within the header
    st.tuples(st.just("truncate"), index, st.booleans()),
    st.tuples(st.just("insert"), index, st.binary(min_size=1, max_size=9)),
    st.tuples(st.just("cut"), index, st.integers(1, 16)),
)


def apply_gguf_edit(image: GGUFImage, edit):
    kind, *args = edit
    entries, infos = image.entries, image.infos
    if kind == "set":
        key, (type_id, value) = args
        for e in entries:
            if e[0] == key:
                e[1:] = [type_id, value]
                return
        entries.append([key, type_id, value])
    elif kind == "retype" and entries:
        e = entries[args[0] % len(entries)]
        e[1:] = list(args[1])
    elif kind == "delete" and entries:
        del entries[args[0] % len(entries)]
    elif kind == "duplicate" and entries:
        i = args[0] % len(entries)
        type_id, value = args[1] if args[1] is not None else entries[i][1:]
        entries.insert(i + 1, [entries[i][0], type_id, value])
    elif kind == "nest":
        key, depth = args
        entries.append([key, ARRAY, deep_array(depth)])
    elif kind == "dims" and infos:
        infos[args[0] % len(infos)][1] = list(args[1])
    elif kind == "tensor_type" and infos:
        infos[args[0] % len(infos)][2] = args[1]
    elif kind == "offset" and infos:
        infos[args[0] % len(infos)][3] = args[1]
    elif kind == "rename" and infos:
        new = args[1] if isinstance(args[1], str) else infos[args[1] % len(infos)][0]
        infos[args[0] % len(infos)][0] = new
    elif kind == "tensor_duplicate" and infos:
        i = args[0] % len(infos)
        infos.insert(i + 1, [infos[i][0], list(infos[i][1]), infos[i][2], infos[i][3]])
    elif kind == "tensor_delete" and infos:
        del infos[args[0] % len(infos)]
    elif kind == "version":
        image.version = args[0]


def apply_byte_edit(data: bytes, fields, edit) -> bytes:
    kind, *args = edit
    buf = bytearray(data)
    fields = [(offset, fmt) for offset, fmt in fields if offset + struct.calcsize("<" + fmt) <= len(buf)]
    header_end = max((offset + struct.calcsize("<" + fmt) for offset, fmt in fields), default=len(buf))
    if kind == "int" and fields:
        offset, fmt = fields[args[0] % len(fields)]
        if fmt in "fd":
            struct.pack_into("<" + fmt, buf, offset, args[2] if fmt == "d" or abs(args[2]) < 3e38 else math.inf)
        else:
            unsigned = {"b": "B", "h": "H", "i": "I", "q": "Q", "?": "B"}.get(fmt, fmt)
            value = args[1] % 2 ** (8 * struct.calcsize(unsigned))
            struct.pack_into("<" + unsigned, buf, offset, value)
    elif kind == "flip" and buf:
        pos = args[0] % (header_end if args[2] else len(buf))
        buf[pos] ^= args[1] or 0xFF
    elif kind == "truncate":
        del buf[args[0] % ((header_end + 1) if args[1] else (len(buf) + 1)):]
    elif kind == "insert":
        pos = args[0] % (header_end + 1)
        buf[pos:pos] = args[1]
    elif kind == "cut" and header_end:
        pos = args[0] % header_end
        del buf[pos:pos + args[1]]
    return bytes(buf)


def run_loaded(model):
    """A model that loaded: two tokens from text and from ids."""
    attempt(model.generate, "the cat", max_new_tokens=2)
    attempt(model.generate, [0, 1, 2], max_new_tokens=2)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def tiny_path(tiny_model_path):
    return tiny_model_path[0]  # the path alone: hypothesis prints the arguments of a failing input


@FUZZ
@given(seed=st.integers(0, 1), edits=st.lists(gguf_edits, max_size=4),
       raw=st.one_of(st.just([]), st.lists(byte_edits, min_size=1, max_size=3)))
@example(seed=0, edits=[("nest", "x.nested", 5000)], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.tokens", (4, 5))], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.merges", (ARRAY, (4, [1])))], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.token_type", (ARRAY, (STRING, ["a"] * 300)))], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.eos_token_id", (STRING, "x"))], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.eos_token_id", (6, math.nan))], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.pre", (ARRAY, (4, [1])))], raw=[])
@example(seed=0, edits=[("set", "llama.block_count", (4, 2**32 - 1))], raw=[])
@example(seed=0, edits=[("tensor_duplicate", 1)], raw=[])
@example(seed=0, edits=[("set", "tokenizer.ggml.add_bos_token", (ARRAY, (0, [])))], raw=[])
def test_fuzz_gguf_file(gguf_seeds, scratch, seed, edits, raw):
    image = gguf_seeds[seed].copy()
    for edit in edits:
        apply_gguf_edit(image, edit)
    data, fields = image.write()
    for edit in raw:
        data = apply_byte_edit(data, fields, edit)
    path = scratch / "mutated.gguf"
    path.unlink(missing_ok=True)  # a new file: a model of an earlier input may still map the old one
    path.write_bytes(data)
    with guarded():
        model = attempt(nextoken.load, path, n_ctx=16, n_threads=1)
        event("gguf", model)
        if isinstance(model, nextoken.Model):
            run_loaded(model)


# ---- 2. Hugging Face folders -------------------------------------------------------------------------------
JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors.index.json",
              "preprocessor_config.json", "vocab.json")


def _json_keys_and_strings():
    """Every key and short string value of the fixtures' JSON files (tokenizer_config.json aside): the names
    the readers look up and the values they branch on."""
    keys, strings = set(), set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                keys.add(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) < 40:
            strings.add(v)
    for folder in HF_FOLDERS:
        for name in ("config.json", "generation_config.json", "preprocessor_config.json"):
            if (folder / name).is_file():
                walk(json.loads((folder / name).read_text()))
    return sorted(keys), sorted(strings)


HF_KEYS, HF_STRINGS = _json_keys_and_strings()
json_leaves = st.one_of(st.none(), st.booleans(), ints, floats, short_text, st.sampled_from(HF_STRINGS))
json_values = st.recursive(json_leaves, lambda kids: st.lists(kids, max_size=3) |
                           st.dictionaries(st.sampled_from(HF_KEYS) | short_text, kids, max_size=3), max_leaves=5)


def json_nodes(value, path=()):
    """The path of every node of a JSON document, the root first."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from json_nodes(v, path + (k,))


json_edits = st.one_of(
    st.tuples(st.just("set"), index, st.sampled_from(HF_KEYS) | short_text, json_values),  # a key into an object
    st.tuples(st.just("replace"), index, json_values),                                     # any node's value
    st.tuples(st.just("delete"), index),
    st.tuples(st.just("document"), json_values),                                           # not an object at all
)
text_edits = st.one_of(
    st.tuples(st.just("truncate"), index),
    st.tuples(st.just("deep"), st.sampled_from([100, 10**5])),  # nested that deep, at the end of the document
    st.tuples(st.just("bytes"), st.sampled_from([b"", b"\xff\xfe", b"{\"a\": \xc3}", b"\x00", b"NaN", b"[]"])),
)


def apply_json_edit(doc, edit):
    kind, *args = edit
    if kind == "document":
        return args[0]
    paths = list(json_nodes(doc))
    path = paths[args[0] % len(paths)]
    parent = None
    node = doc
    for step in path:
        parent, node = node, node[step]
    if kind == "set" and isinstance(node, dict):
        node[args[1]] = args[2]
    elif kind == "replace":
        if not path:
            return args[1]
        parent[path[-1]] = args[1]
    elif kind == "delete" and path:
        del parent[path[-1]]
    return doc


def apply_text_edit(text: bytes, edit) -> bytes:
    kind, arg = edit
    if kind == "truncate":
        return text[:arg % (len(text) + 1)]
    if kind == "deep":
        inner = b"[" * arg + b"]" * arg
        return text.rstrip()[:-1] + b', "deep": ' + inner + b"}" if text.rstrip().endswith(b"}") else inner
    return arg


# A safetensors header: {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}.
DTYPES = ["F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "f32", ""]
header_edits = st.one_of(
    st.tuples(st.just("dtype"), index, st.one_of(st.sampled_from(DTYPES), json_values)),
    st.tuples(st.just("shape"), index, st.one_of(st.lists(st.one_of(st.integers(0, 70), ints), max_size=4),
                                                  json_values)),
    st.tuples(st.just("data_offsets"), index, st.one_of(st.lists(st.one_of(st.integers(0, 2**18), ints),
                                                                 max_size=3), json_values)),
    st.tuples(st.just("shift"), index, st.integers(-64, 64)),   # both offsets moved by the same amount
    st.tuples(st.just("entry"), index, json_values),             # the whole entry replaced
    st.tuples(st.just("rename"), index, st.one_of(index, short_text)),
    st.tuples(st.just("drop"), index),
    st.tuples(st.just("json"), json_edits),                      # anywhere in the header
)
blob_edits = st.one_of(
    st.tuples(st.just("header_length"), st.one_of(u64, st.integers(-8, 8))),
    st.tuples(st.just("truncate"), index),
    st.tuples(st.just("flip"), index, st.integers(1, 255)),
)


def apply_header_edit(header: dict, edit):
    kind, *args = edit
    if kind == "json":
        return apply_json_edit(header, args[0])
    if not isinstance(header, dict):
        return header
    names = [n for n in header if n != "__metadata__"]
    if not names:
        return header
    name = names[args[0] % len(names)]
    entry = header[name]
    if kind in ("dtype", "shape", "data_offsets") and isinstance(entry, dict):
        entry[kind] = args[1]
    elif kind == "shift" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list):
        entry["data_offsets"] = [v + args[1] if isinstance(v, int) else v for v in entry["data_offsets"]]
    elif kind == "entry":
        header[name] = args[1]
    elif kind == "rename":
        new = args[1] if isinstance(args[1], str) else names[args[1] % len(names)]
        header[new] = header.pop(name)
    elif kind == "drop":
        del header[name]
    return header


def write_safetensors_edited(data: bytes, header_edits_, blob_edits_) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    for edit in header_edits_:
        header = apply_header_edit(header, edit)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    out = bytearray(len(head).to_bytes(8, "little") + head + body)
    for kind, *args in blob_edits_:
        if kind == "header_length":
            out[:8] = ((len(head) + args[0]) % 2**64 if -8 <= args[0] <= 8 else args[0]).to_bytes(8, "little")
        elif kind == "truncate":
            del out[args[0] % (len(out) + 1):]
        elif kind == "flip" and out:
            out[args[0] % min(len(out), 8 + len(head))] ^= args[1]
    return bytes(out)


@pytest.fixture(scope="module")
def link_farms(tmp_path_factory):
    """Per fixture folder, a folder of links to its files, where an input replaces the files it edits (and
    puts the links back): cheaper than a copy per input."""
    root = tmp_path_factory.mktemp("folders")
    farms = {}
    for folder in HF_FOLDERS:
        farm = root / folder.parent.name / folder.name
        farm.mkdir(parents=True)
        for src in folder.iterdir():
            (farm / src.name).symlink_to(src)
        farms[folder] = farm
    return farms


def exercise(model, folder: Path):
    """A folder that loaded: a few tokens, as its kind of model takes its input."""
    if model.vision:
        attempt(model.generate, image=folder / "image.png", max_new_tokens=2)
    else:
        run_loaded(model)


@FUZZ
@given(folder=st.sampled_from(HF_FOLDERS),
       json_edits_=st.lists(st.tuples(st.sampled_from(JSON_FILES[:1] * 4 + JSON_FILES), json_edits), max_size=3),
       text_edit=st.one_of(st.none(), st.none(), st.tuples(st.sampled_from(JSON_FILES), text_edits)),
       tensor_file=index, header_edits_=st.one_of(st.just([]), st.lists(header_edits, min_size=1, max_size=2)),
       blob_edits_=st.one_of(st.just([]), st.just([]), st.lists(blob_edits, min_size=1, max_size=2)))
@example(folder=FIXTURES / "hf" / "llama", json_edits_=[], text_edit=("tokenizer_config.json", ("deep", 10**5)),
         tensor_file=0, header_edits_=[], blob_edits_=[])
@example(folder=FIXTURES / "hf" / "llama", json_edits_=[("config.json", ("set", 0, "rms_norm_eps", math.nan))],
         text_edit=None, tensor_file=0, header_edits_=[], blob_edits_=[])
def test_fuzz_hf_folder(link_farms, folder, json_edits_, text_edit, tensor_file, header_edits_, blob_edits_):
    changed = {}
    for name, edit in json_edits_:
        if (folder / name).is_file():
            doc = changed.get(name, json.loads((folder / name).read_text()))
            changed[name] = apply_json_edit(doc, edit)
    changed = {name: json.dumps(doc).encode() for name, doc in changed.items()}
    if text_edit and (folder / text_edit[0]).is_file():
        name = text_edit[0]
        changed[name] = apply_text_edit(changed.get(name, (folder / name).read_bytes()), text_edit[1])
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if header_edits_ or blob_edits_:
        shard = shards[tensor_file % len(shards)]
        changed[shard] = write_safetensors_edited((folder / shard).read_bytes(), header_edits_, blob_edits_)
    out = link_farms[folder]
    try:
        for name, data in changed.items():  # a new file in place of the link (a loaded model may map the old one)
            (out / name).unlink()
            (out / name).write_bytes(data)
        with guarded():
            model = attempt(nextoken.load, out, n_ctx=16, n_threads=1)
            event("hf", model)
            if isinstance(model, nextoken.Model):
                exercise(model, out)
    finally:
        for name in changed:
            (out / name).unlink()
            (out / name).symlink_to(folder / name)


# ---- 2b. a folder's tokenizer.json as the core reads it (the C API's nt_tokenize; Python uses tokenizers) -----
TOKENIZER_JSON = json.loads((FIXTURES / "hf" / "llama" / "tokenizer.json").read_text())
TJ_KEYS = ["type", "model", "vocab", "merges", "normalizer", "pre_tokenizer", "pretokenizers", "individual_digits",
           "use_regex", "add_prefix_space", "post_processor", "single", "SpecialToken", "Sequence", "id",
           "special_tokens", "added_tokens", "content", "special", "lstrip", "rstrip", "single_word", "byte_fallback",
           "ignore_merges", "dropout", "continuing_subword_prefix", "end_of_word_suffix"]
TJ_STRINGS = ["BPE", "ByteLevel", "Sequence", "Digits", "TemplateProcessing", "Metaspace", "WordPiece", "<s>", "</s>",
              "a b", "\u0120 t", "A"]
tj_values = st.recursive(st.one_of(json_leaves, st.sampled_from(TJ_STRINGS)), lambda kids: st.lists(kids, max_size=3) |
                         st.dictionaries(st.sampled_from(TJ_KEYS) | short_text, kids, max_size=3), max_leaves=5)
tj_edits = st.one_of(st.tuples(st.just("set"), index, st.sampled_from(TJ_KEYS), tj_values),
                     st.tuples(st.just("replace"), index, tj_values), st.tuples(st.just("delete"), index))


@FUZZ
@given(edits=st.lists(tj_edits, max_size=3), text_edit=st.one_of(st.none(), st.none(), text_edits),
       text=st.text(st.characters(exclude_categories=["Cs"]), max_size=12), ids=st.lists(st.integers(-3, 330), max_size=8),
       vocab_size=st.sampled_from([320, 320, 1, 400]))
def test_fuzz_tokenizer_json(scratch, edits, text_edit, text, ids, vocab_size):
    doc = json.loads(json.dumps(TOKENIZER_JSON))
    for edit in edits:
        doc = apply_json_edit(doc, edit)
    data = json.dumps(doc).encode()
    if text_edit:
        data = apply_text_edit(data, text_edit)
    folder = scratch / "tokenizer_json"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_bytes(data)
    with guarded():
        tokenizer = attempt(nextoken._core.folder_tokenizer, str(folder), vocab_size, [1])
        event("tokenizer.json", tokenizer)
        if not isinstance(tokenizer, nextoken.Error):
            for parse_special in (True, False):
                attempt(tokenizer.encode, text, parse_special, True)
            attempt(tokenizer.decode, ids, True)


# ---- 3. text -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_models(tiny_path):
    """One model per tokenizer kind: GGUF byte-level BPE (built from the file's vocabulary), tokenizer.json
    BPEs (GPT-2, Llama, Gemma 3 with byte fallback), T5's Unigram and Marian's SentencePiece pair."""
    folders = {name: FIXTURES / kind / name for kind, name in
               (("hf", "gpt2"), ("hf", "llama"), ("hf", "gemma3"), ("seq2seq", "t5"), ("seq2seq", "marian"))}
    models = {name: nextoken.load(path, n_ctx=64, n_threads=1) for name, path in folders.items()}
    models["gguf"] = nextoken.load(tiny_path, n_ctx=64, n_threads=1)
    return models


ODD_TEXT = ["\x00", "\ud800", "\udfff", "\ud83d\ude00", "\ufffd", "\ufeff", "\u200b", "\U0010ffff", "\uffff", "\r\n",
            "\t", " ", "   ", "<|endoftext|>", "<|im_end|>", "<|extra_0|>", "<s>", "</s>", "<pad>", "<unk>", "<bos>",
            "<eos>", "<mask>", "<start_of_turn>", ">>de<<", ">>", "<<", "\u2581", "\u0120", "\u010a", "\u0301",
            "e\u0301", "\U0001f3f3\ufe0f\u200d\U0001f308", "\u00df", "\u0130", "\ufb03", "\u0085", "\u2028",
            "0123456789", "<0x41>", "the", " the", "\\", "\"", "{{", "%s"]
pieces = st.one_of(st.text(max_size=8), st.text(st.characters(codec=None), max_size=8), st.sampled_from(ODD_TEXT),
                   st.integers(0xD800, 0xDFFF).map(chr), st.text(st.characters(min_codepoint=0x10000), max_size=3))
texts = st.one_of(st.lists(pieces, max_size=8).map("".join),
                  st.tuples(st.lists(pieces, min_size=1, max_size=3).map(lambda p: "".join(p) or "x"),
                            st.integers(50, 2000)).map(lambda p: (p[0] * p[1])[:4000]))   # long text
id_lists = st.one_of(st.lists(st.integers(-3, 330), max_size=12), st.lists(ints, max_size=4), numpy_arrays(),
                     anything)


@FUZZ
@given(name=st.sampled_from(["gguf", "gpt2", "llama", "gemma3", "t5", "marian"]), text=texts, ids=id_lists,
       parse_special=st.booleans())
@example(name="gguf", text="a\ud800b", ids=[2**70], parse_special=True)
@example(name="marian", text=">>de<< \x00", ids=[-1], parse_special=False)
def test_fuzz_text(text_models, name, text, ids, parse_special):
    model = text_models[name]
    with guarded():
        tokens = attempt(model.tokenize, text, parse_special=parse_special)
        event("tokenize", tokens)
        if isinstance(tokens, list):
            assert all(isinstance(t, int) and 0 <= t < model.vocab_size for t in tokens), tokens
            for skip in (True, False):
                assert isinstance(model.detokenize(tokens, skip_special_tokens=skip), str)
        else:
            assert "Unicode" in str(tokens), tokens  # the one reason a str is refused: it is not valid Unicode
        out = attempt(model.generate, text, max_new_tokens=2, parse_special=parse_special)
        assert isinstance(out, (str, nextoken.Error))
        decoded = attempt(model.detokenize, ids)
        event("detokenize", decoded)
        assert isinstance(decoded, (str, nextoken.Error))


# ---- 4. generation parameters and token ids ----------------------------------------------------------------
@pytest.fixture(scope="module")
def generation_models(tiny_path):
    """A decoder-only GGUF llama (RoPE: context shift works), a GPT-2 folder (learned positions), a T5
    (encoder-decoder: prompts are sources, encoder_hidden_states taken) and a ViT-GPT2 (images)."""
    return {"gguf": nextoken.load(tiny_path, n_ctx=32, n_threads=1),
            "gpt2": nextoken.load(FIXTURES / "hf" / "gpt2", n_ctx=32, n_threads=1),
            "t5": nextoken.load(FIXTURES / "seq2seq" / "t5", n_ctx=32, n_threads=1),
            "vit": nextoken.load(FIXTURES / "seq2seq" / "vit_gpt2", n_ctx=32, n_threads=1)}


IMAGE = FIXTURES / "seq2seq" / "vit_gpt2" / "image.png"
small_ids = st.integers(0, 99)
PLAUSIBLE = {
    "max_new_tokens": st.one_of(st.integers(0, 6), st.none()),
    "min_new_tokens": st.integers(0, 6),
    "temperature": st.floats(0, 2),
    "top_k": st.integers(0, 50),
    "top_p": st.floats(0.01, 1),
    "min_p": st.floats(0, 1),
    "typical_p": st.floats(0.01, 1),
    "repetition_penalty": st.floats(0.5, 2),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "no_repeat_ngram_size": st.integers(0, 4),
    "logit_bias": st.dictionaries(small_ids, st.floats(-100, 100), max_size=3),
    "bad_words_ids": st.lists(st.lists(small_ids, min_size=1, max_size=3), max_size=3),
    "seed": st.one_of(st.integers(0, 2**64 - 1), st.lists(st.integers(0, 99), max_size=3)),
    "stop": st.one_of(short_text, st.lists(short_text, max_size=3)),
    "stop_token_ids": st.lists(small_ids, max_size=3),
    "eos_token_id": st.one_of(small_ids, st.lists(small_ids, max_size=3)),
    "context_shift": st.booleans(),
    "n_keep": st.integers(0, 40),
    "parse_special": st.booleans(),
    "logprobs": st.integers(0, 20),
    "num_return_sequences": st.integers(1, 3),
    "num_beams": st.integers(1, 4),
    "length_penalty": st.floats(-2, 2),
    "early_stopping": st.sampled_from([True, False, "never"]),
    "return_scores": st.booleans(),
    "encoder_hidden_states": st.tuples(st.integers(0, 4), st.sampled_from([16, 32, 64])).map(
        lambda s: np.ones(s, np.float32)),
    "pixel_values": st.sampled_from([(3, 16, 16), (1, 3, 16, 16), (3, 8, 8), (3, 16), ()]).map(
        lambda s: np.zeros(s, np.float32)),
    "image": st.sampled_from([IMAGE, str(IMAGE), "no such image.png", "", IMAGE.parent]),
}
# An unknown keyword is Python's TypeError, as for any function, so only these names are drawn.
PARAMETER_NAMES = sorted(PLAUSIBLE)


def bounded(params: dict) -> dict:
    """Values that are valid but only cost time or memory kept small (their limits are the machine's, not the
    API's: see the report of the targets): more continuations than 8, more beams than 8, and with context
    shift (which runs until max_new_tokens, or EOS) more than 8 new tokens."""
    def valid_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v < 2**64
    for name in ("num_return_sequences", "num_beams"):
        if valid_int(params.get(name)) and params[name] > 8:
            params[name] = 8
    if params.get("context_shift") is True or isinstance(params.get("context_shift"), np.bool_):
        if params.get("max_new_tokens") is None or valid_int(params["max_new_tokens"]):
            params["max_new_tokens"] = min(int(params.get("max_new_tokens") or 8), 8)
    return params


tame_text = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz .,\n"), min_size=1, max_size=24)
tame_prompts = st.one_of(
    tame_text,
    st.lists(small_ids, min_size=1, max_size=12),
    st.lists(small_ids, min_size=1, max_size=12).map(lambda ids: np.array(ids, np.int32)),
    st.lists(st.one_of(tame_text, st.lists(small_ids, min_size=1, max_size=6)), min_size=1, max_size=3))  # a batch
wild_prompts = st.one_of(
    st.lists(st.one_of(st.integers(-3, 340), ints, floats, st.none(), st.booleans(), short_text), max_size=5),
    numpy_arrays(),
    st.lists(st.one_of(st.lists(pieces, max_size=3).map("".join), st.lists(small_ids, max_size=6), numpy_arrays(),
                       anything), min_size=1, max_size=3),
    anything)
ENCODER_INPUTS = ("encoder_hidden_states", "pixel_values", "image")
BEAM_ONLY = ("num_return_sequences", "num_beams", "length_penalty", "early_stopping", "return_scores")


@st.composite
def generation_cases(draw):
    """(model name, entry point, prompt, parameters). Half the cases are wild (any prompt, any values); the
    other half are inputs the model takes, with at most one value drawn wild, so that the checks deep inside
    (the core's own) are reached too."""
    name = draw(st.sampled_from(["gguf", "gguf", "gpt2", "t5", "vit"]))
    entry = draw(st.sampled_from(["generate", "generate", "stream", "step", "forward"]))
    wild = draw(st.booleans())
    if wild:
        names = PARAMETER_NAMES
    elif entry == "generate" and draw(st.booleans()):  # beam search: its own parameters and the shared processors
        names = ("num_beams",) + BEAM_ONLY + ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                                              "logit_bias", "min_new_tokens", "stop_token_ids", "eos_token_id")
    else:
        names = [n for n in PARAMETER_NAMES if n not in BEAM_ONLY + ENCODER_INPUTS + ("stop",) * (entry == "step")]
    names = draw(st.lists(st.sampled_from(names), unique=True, max_size=6 if wild else 4))
    wild_one = draw(st.sampled_from(names + [None] * 2)) if names and not wild else None
    params = {n: draw(st.one_of(PLAUSIBLE[n], anything) if wild or n == wild_one else PLAUSIBLE[n]) for n in names}
    params.setdefault("max_new_tokens", draw(st.one_of(PLAUSIBLE["max_new_tokens"], ints) if wild else
                                             st.integers(0, 6)))
    if wild:
        prompt = draw(st.one_of(tame_prompts, wild_prompts))
    elif name == "vit":
        prompt = None
        params.setdefault("image", IMAGE)
    else:
        prompt = draw(tame_prompts if entry != "forward" else st.lists(small_ids, min_size=1, max_size=12))
    return name, entry, prompt, bounded(params)


def drive(model, entry, prompt, params):
    """One generation through `entry` (with the parameters it takes: another name is a TypeError, as for any
    Python function); a sequence added for step() is always freed again."""
    if entry == "stream":
        params = {k: v for k, v in params.items() if k in inspect.signature(model.stream).parameters}
    elif entry == "step":
        params = {k: v for k, v in params.items() if k not in BEAM_ONLY}
    if entry == "generate":
        return model.generate(prompt, **params)
    if entry == "stream":
        return list(model.stream(prompt, **params))
    if entry == "step":
        sequence = model.add_sequence(prompt, **params)
        try:
            for _ in range(model.n_ctx + 2):
                if not model.step():
                    break
            else:
                raise AssertionError("step() still returned tokens after n_ctx steps")
            return model.sequence_tokens(sequence)
        finally:
            model.free_sequence(sequence)
    if entry == "forward":
        return model.forward(prompt, start_pos=params.get("n_keep", 0))
    raise AssertionError(entry)


@FUZZ
@given(case=generation_cases(), sequence_ids=st.one_of(st.lists(ints, max_size=3), anything))
@example(case=("gguf", "generate", [1, 2], {"max_new_tokens": 2, "num_beams": np.array([1, 2])}), sequence_ids=5)
@example(case=("gguf", "generate", [1, 2], {"max_new_tokens": 2, "stop_token_ids": 5}), sequence_ids=-1)
@example(case=("gguf", "stream", "ab", {"max_new_tokens": 2, "stop": 5}), sequence_ids="a")
@example(case=("gguf", "generate", [1, 2], {"max_new_tokens": 2, "eos_token_id": 1.5}), sequence_ids=[2**70])
@example(case=("gguf", "step", [1, 2], {"max_new_tokens": 2, "seed": 3}), sequence_ids=np.array(7))
def test_fuzz_generation(generation_models, case, sequence_ids):
    name, entry, prompt, params = case
    model = generation_models[name]
    with guarded():
        out = attempt(drive, model, entry, prompt, params)
        event(entry, out)
        # the step API's own ids: unknown, finished or malformed sequence ids
        for call in (model.step, model.free_sequence, model.fork_sequence, model.sequence_tokens):
            attempt(call, sequence_ids)
    assert model.step() == []  # no sequence left behind (add_sequence()'s is freed, generate()'s are driven)
    assert model.generate([1, 2, 3] if name != "vit" else None, max_new_tokens=1,
                          **({"image": IMAGE} if name == "vit" else {})) is not None


# ---- 4b. load()'s own parameters ---------------------------------------------------------------------------
@FUZZ
@given(folder=st.sampled_from(["gguf", "llama"]),
       kwargs=st.fixed_dictionaries({}, optional={
           "n_ctx": st.one_of(st.integers(1, 256), anything),
           "n_threads": st.one_of(st.none(), st.integers(1, 3), anything),
           "compute_type": st.one_of(st.sampled_from(["float32", "int8"]), anything),
           "weights": st.one_of(st.sampled_from([None, "q8_0", "q4_0", "q4_k"]), anything),
           "kv_cache": st.one_of(st.sampled_from(["f32", "f16", "bf16", "q8_0"]), anything),
           "lora": st.one_of(st.sampled_from([None, FIXTURES / "lora" / "llama", FIXTURES / "lora" / "gpt2",
                                              FIXTURES / "nothing"]), anything)}),
       n_threads=st.one_of(st.integers(1, 3), anything))
@example(folder="gguf", kwargs={"n_ctx": 2**31, "n_threads": 2**31}, n_threads=2**31)
@example(folder="gguf", kwargs={"n_ctx": "big"}, n_threads=0)
def test_fuzz_load_parameters(tiny_path, folder, kwargs, n_threads):
    # Valid but only costly values are kept small: n_ctx sizes the KV cache (2**31 - 1 asks for a terabyte:
    # MemoryError, see the report) and every n_threads starts that many threads for good.
    if isinstance(kwargs.get("n_ctx"), (int, np.integer)) and 256 < kwargs["n_ctx"] < 2**31:
        kwargs["n_ctx"] = 256
    for value in (kwargs.get("n_threads"), n_threads):
        if isinstance(value, (int, np.integer)) and 3 < value < 2**31:
            return
    path = tiny_path if folder == "gguf" else FIXTURES / "hf" / folder
    with guarded():
        model = attempt(nextoken.load, path, **kwargs)
        event("load", model)
        if isinstance(model, nextoken.Model):
            attempt(setattr, model, "n_threads", n_threads)
            assert isinstance(attempt(model.generate, [1, 2], max_new_tokens=2), (list, nextoken.Error))


# ---- regressions: defects the targets found, fixed, each pinned by its message ------------------------------
def gguf_with(tiny_path, tmp_path, key, type_id, value):
    """The tiny llama with metadata `key` set to `value` of GGUF type `type_id` (added if absent)."""
    image = GGUFImage(*_parse_gguf(Path(tiny_path).read_bytes()))
    apply_gguf_edit(image, ("set", key, (type_id, value)))
    path = tmp_path / "edited.gguf"
    path.write_bytes(image.write()[0])
    return path


@pytest.mark.parametrize("key,type_id,value,match", [
    ("tokenizer.ggml.pre", ARRAY, (4, [1]), "'tokenizer.ggml.pre' must be a string"),
    ("tokenizer.ggml.tokens", ARRAY, (4, [1, 2, 3]), "'tokenizer.ggml.tokens' must be an array of strings"),
    ("tokenizer.ggml.merges", ARRAY, (4, [1]), "'tokenizer.ggml.merges' must be an array of strings"),
    ("tokenizer.ggml.token_type", ARRAY, (STRING, ["a"] * 300), "'tokenizer.ggml.token_type' must be an array of int"),
    ("tokenizer.ggml.token_type", ARRAY, (6, [math.nan] * 300), "'tokenizer.ggml.token_type' must be an array of int"),
    ("tokenizer.ggml.scores", ARRAY, (STRING, ["a"] * 300), "'tokenizer.ggml.scores' must be an array of numbers"),
    ("tokenizer.chat_template", 4, 1, "'tokenizer.chat_template' must be a string"),
    ("tokenizer.ggml.add_bos_token", ARRAY, (0, []), "'tokenizer.ggml.add_bos_token' must be true or false"),
    ("tokenizer.ggml.merges", ARRAY, (STRING, ["h e", "zzqq"]), "tokenizer.ggml.merges holds 'zzqq': a merge is two"),
])
def test_gguf_tokenizer_metadata_of_the_wrong_type(tiny_path, tmp_path, key, type_id, value, match):
    """Were TypeError / ValueError / AttributeError from the tokenizer built out of the metadata (and for a
    merge without a space, an Error quoting the tokenizers package's internals)."""
    with pytest.raises(nextoken.Error, match=re.escape(match)):
        nextoken.load(gguf_with(tiny_path, tmp_path, key, type_id, value), n_ctx=16)


def folder_with(tmp_path, folder, name, edit=None, text=None):
    """A copy of fixture `folder` with its JSON file `name` edited (edit(dict)) or replaced by `text`."""
    out = edited_copy(folder, tmp_path / folder.name, name, edit)
    if text is not None:
        (out / name).write_bytes(text)
    return out


HF, SEQ2SEQ = FIXTURES / "hf", FIXTURES / "seq2seq"


@pytest.mark.parametrize("folder,name,edit,text,match", [
    (HF / "llama", "tokenizer_config.json", None, b"[" * 10**5 + b"]" * 10**5, "tokenizer_config.json is not a JSON"),
    (HF / "llama", "config.json", lambda c: c.update(hidden_act=["silu"]), None, "'hidden_act' is '\\['silu'\\]'"),
    (SEQ2SEQ / "t5_gated", "config.json", lambda c: c.update(feed_forward_proj=[]), None,
     "feed_forward_proj '\\[\\]' is not supported"),
    (SEQ2SEQ / "bart", "generation_config.json", lambda c: c.update(decoder_start_token_id=""), None,
     "bart: decoder_start_token_id must be an integer in \\[0, "),
    (SEQ2SEQ / "bart", "generation_config.json", lambda c: c.update(decoder_start_token_id=2**31), None,
     "decoder_start_token_id must be an integer"),
    (SEQ2SEQ / "marian", "tokenizer_config.json", None, b"1.5", "tokenizer_config.json: expected a JSON object"),
    (SEQ2SEQ / "marian", "tokenizer_config.json", lambda c: c.update(eos_token=["</s>"]), None,
     "eos_token, unk_token and pad_token must be strings"),
    (SEQ2SEQ / "marian", "vocab.json", lambda c: c.update({"x": "y"}), None, "vocab.json: expected an object of piece"),
    (HF / "llama", "config.json", lambda c: c.update(num_hidden_layers=2**31 - 1), None,
     "'num_hidden_layers' is 2147483647, more layers than the folder has tensors \\(21\\)"),
    (SEQ2SEQ / "vit_gpt2", "config.json", lambda c: c["decoder"].update(n_layer=10**9), None,
     "'n_layer' is 1000000000"),
    (HF / "gpt2", "config.json", lambda c: c.update(n_positions=[None]), None,
     "gpt2: the context length it was trained for must be an integer >= 0, got \\[None\\]"),
    (SEQ2SEQ / "vit_gpt2", "config.json", lambda c: c.update(encoder=[]), None,
     "config.json \\(encoder\\): expected a JSON object, got list"),
    (HF / "gemma3", "config.json", lambda c: c.update(rope_parameters=False), None,
     "'rope_parameters' must be an object, got False"),
    (HF / "llama", "config.json", lambda c: c.update(rope_parameters=None, rope_scaling=[1, 2]), None,
     "'rope_scaling' must be an object, got \\[1, 2\\]"),
])
def test_hf_json_values_of_the_wrong_type(tmp_path, folder, name, edit, text, match):
    """Were RecursionError, TypeError (unhashable, not iterable), ValueError / OverflowError at generate(),
    AttributeError, and for a layer count of 2**31 - 1 lists of that length (MemoryError, or the machine's
    memory)."""
    with pytest.raises(nextoken.Error, match=match), memory_limit():
        model = nextoken.load(folder_with(tmp_path, folder, name, edit, text), n_ctx=16, n_threads=1)
        model.generate("the cat", max_new_tokens=2)


@pytest.mark.parametrize("entry,match", [
    ({"dtype": ["F32"]}, "malformed header entry"),
    ({"shape": [2**64]}, "has a dimension of 2\\*\\*31 or more"),
    ({"data_offsets": [0, math.inf]}, "malformed header entry"),
])
def test_safetensors_header_entries_of_the_wrong_type(tmp_path, entry, match):
    """Were TypeError (an unhashable dtype) and OverflowError (int() of Infinity, np.prod of 2**64)."""
    folder = edited_copy(HF / "llama", tmp_path / "llama")
    data = (folder / "model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["model.norm.weight"].update(entry)
    (folder / "model.safetensors").write_bytes(write_safetensors_edited(data, [("json", ("document", header))], []))
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(folder, n_ctx=16)


def test_gpt2_attention_bias_of_the_wrong_size(tmp_path):
    """Was ValueError (a float32 view of a third of its bytes) when c_attn.bias is not 3 x n_embd values."""
    folder = edited_copy(HF / "gpt2", tmp_path / "gpt2", edit_tensors=lambda t: t.update(
        {"transformer.h.0.attn.c_attn.bias": t["transformer.h.0.mlp.c_fc.bias"]}))
    with pytest.raises(nextoken.Error, match="'transformer.h.0.attn.c_attn.bias' has 64 values, expected 96"):
        nextoken.load(folder, n_ctx=16)


@pytest.mark.parametrize("edit,match", [
    (dict(size=[32, 32]), "'size' is \\[32, 32\\]; the encoder takes 32 x 32"),
    (dict(size={"shortest_edge": 32}), "'size' is"),
    (dict(size=10**6), "'size' is 1000000"),
    (dict(resample=[2]), "'resample' must be a PIL filter number"),
    (dict(rescale_factor="0.5"), "'rescale_factor' must be a finite number"),
    (dict(image_mean=["a", "b", "c"]), "'image_mean' must be a finite number or one per channel"),
    (dict(image_std=[0.5, 0.5]), "'image_std' must be a finite number or one per channel"),
])
def test_preprocessor_config_values_of_the_wrong_type(tmp_path, edit, match):
    """Were TypeError / KeyError / ValueError inside the image preprocessing (and a resize to any size asked)."""
    folder = folder_with(tmp_path, SEQ2SEQ / "vit_gpt2", "preprocessor_config.json", lambda c: c.update(edit))
    model = nextoken.load(folder, n_ctx=16, n_threads=1)
    with pytest.raises(nextoken.Error, match=match):
        model.generate(image=folder / "image.png", max_new_tokens=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lora=False), "lora must be the path of a PEFT adapter folder, got False"),
    (dict(weights=[]), "weights must be one of"),
    (dict(kv_cache=np.array([])), "kv_cache must be"),
    (dict(compute_type=np.array([])), "compute_type must be"),
])
def test_load_parameters_of_the_wrong_type(kwargs, match):
    """Were TypeError (Path(False), unhashable list) and ValueError (truth value of an array)."""
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(HF / "llama", n_ctx=16, n_threads=1, **kwargs)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return nextoken.load(tiny_path, n_ctx=32, n_threads=1)


@pytest.mark.parametrize("call,match", [
    (lambda m: m.generate([1, 2], max_new_tokens=2, num_beams=np.array([1, 2])), "num_beams must be an integer"),
    (lambda m: m.generate([1, 2], max_new_tokens=2, num_beams=1.0), "num_beams must be an integer"),
    (lambda m: m.generate([1, 2], max_new_tokens=2, stop_token_ids=5), "stop_token_ids must be a list of token ids"),
    (lambda m: m.generate([1, 2], max_new_tokens=2, stop_token_ids=np.array([[1]])), "stop_token_ids must be a list"),
    (lambda m: m.generate([1, 2], max_new_tokens=2, eos_token_id=1.5), "eos_token_id must be a list of token ids"),
    (lambda m: m.generate("ab", max_new_tokens=2, stop=5), "stop must be a non-empty string or a list of them, got 5"),
    (lambda m: list(m.stream("ab", max_new_tokens=2, stop={"a": 1})), "stop must be a non-empty string"),
    (lambda m: m.generate("a", max_new_tokens=None, context_shift=np.array([])), "context_shift must be True or"),
    (lambda m: m.step(5), "step\\(\\) takes a list of sequence ids"),
    (lambda m: m.step(np.array(7)), "step\\(\\) takes a list of sequence ids"),
    (lambda m: m.free_sequence(-1), "sequence_id must be an integer"),
    (lambda m: m.free_sequence("a"), "sequence_id must be an integer"),
    (lambda m: m.fork_sequence(2**64), "sequence_id must be an integer"),
    (lambda m: m.sequence_tokens(None), "sequence_id must be an integer"),
])
def test_generation_arguments_of_the_wrong_type(tiny, call, match):
    """Were TypeError ('int' is not iterable, the binding's incompatible arguments) and ValueError (truth value
    of an array)."""
    with pytest.raises(nextoken.Error, match=match):
        call(tiny)


@pytest.mark.parametrize("where", ["key", "tensor name"])
def test_gguf_names_not_utf8(tiny_path, tmp_path, where):
    """Were UnicodeDecodeError (a key cast to str; a tensor name inside an error message): GGUF names are
    UTF-8, so the reader rejects others, by position (the name itself is not text)."""
    image = GGUFImage(*_parse_gguf(Path(tiny_path).read_bytes()))
    if where == "key":
        image.entries.append([b"general.\xff", 4, 1])
    else:
        image.infos[0][0] = b"blk.\x80"
    path = tmp_path / "name.gguf"
    path.write_bytes(image.write()[0])
    with pytest.raises(nextoken.Error, match="is not UTF-8 text"):
        nextoken.load(path, n_ctx=16)


def test_error_messages_quoting_bytes_that_are_not_utf8(tiny_path, tmp_path):
    """Was UnicodeDecodeError (found by test_fuzz_gguf_file flipping a byte of tokenizer.ggml.pre): an Error
    whose message quotes a file's value reaches Python with U+FFFD for the bytes that are not UTF-8."""
    data = Path(tiny_path).read_bytes()
    assert data.count(b"smollm") == 1
    path = tmp_path / "pre.gguf"
    path.write_bytes(data.replace(b"smollm", b"\x8cmollm"))
    with pytest.raises(nextoken.Error, match="pre-tokenizer '\ufffdmollm' is not supported"):
        nextoken.load(path, n_ctx=16)


# ---- defects a review of the C++ folder readers found, fixed: their reproducers ----------------------------------
@pytest.mark.parametrize("folder,edit,match", [
    (SEQ2SEQ / "t5", lambda c: c.update(relative_attention_max_distance=1),
     "relative_attention_max_distance \\(1\\) more than half of it"),
    (SEQ2SEQ / "marian", lambda c: c.update(d_model=2**30), "d_model is 1073741824 but the token embeddings have 32"),
    (HF / "llama", lambda c: c.update(head_dim=2**30), "has 32 rows, not num_attention_heads x head_dim = 2147483648"),
])
def test_folder_values_that_sized_tables_before_the_tensors_were_checked(tmp_path, folder, edit, match):
    """Were a heap read before T5's bias table (a negative bucket: max_distance below the exact buckets), and
    tables sized by config values alone (Marian's sinusoids by d_model, RoPE by head_dim): gigabytes."""
    with pytest.raises(nextoken.Error, match=match), memory_limit():
        nextoken.load(folder_with(tmp_path, folder, "config.json", edit), n_ctx=16, n_threads=1)


def test_marian_positions_past_n_ctx_are_not_built(tmp_path):
    """max_position_embeddings sizes the sinusoid table only up to n_ctx (positions past it are never looked up):
    2**31 - 1 positions loaded in gigabytes before."""
    folder = folder_with(tmp_path, SEQ2SEQ / "marian", "config.json", lambda c: c.update(max_position_embeddings=2**31 - 1))
    with memory_limit():
        reference = nextoken.load(SEQ2SEQ / "marian", n_ctx=16, n_threads=1)
        model = nextoken.load(folder, n_ctx=16, n_threads=1)
        assert model.generate([5, 6, 7], max_new_tokens=4) == reference.generate([5, 6, 7], max_new_tokens=4)


def test_safetensors_header_larger_than_the_format_allows(tmp_path):
    """A header is parsed into ~50x its size in memory: above safetensors' own 100 MB limit it is refused
    (a sparse file: no disk is written)."""
    folder = edited_copy(HF / "llama", tmp_path / "llama")
    n = 150_000_000
    with open(folder / "model.safetensors", "wb") as f:
        f.write(n.to_bytes(8, "little"))
        f.truncate(8 + n)
    with pytest.raises(nextoken.Error, match="safetensors allows 100 MB"):
        nextoken.load(folder, n_ctx=16)


# ---- defects the targets found in the C++ loaders and gemma3.py, fixed: their reproducers ----------------------
def test_gguf_empty_tensor_dims_are_named(tiny_path, tmp_path):
    """Was "has rows of 64 weights, not whole F32 blocks" for dims [64, 0]."""
    image = GGUFImage(*_parse_gguf(Path(tiny_path).read_bytes()))
    next(info for info in image.infos if info[0] == "output_norm.weight")[1] = [64, 0]
    path = tmp_path / "empty.gguf"
    path.write_bytes(image.write()[0])
    with pytest.raises(nextoken.Error, match="'output_norm.weight' has an empty shape"):
        nextoken.load(path, n_ctx=16)


def test_known_gguf_row_bytes_wrap(tiny_path, tmp_path):
    image = GGUFImage(*_parse_gguf(Path(tiny_path).read_bytes()))
    next(info for info in image.infos if info[0] == "output_norm.weight")[1] = [2**63, 2]  # F32
    path = tmp_path / "wrap.gguf"
    path.write_bytes(image.write()[0])
    run = subprocess.run([sys.executable, "-c", f"import nextoken; nextoken.load({str(path)!r}, n_ctx=16)"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 1 and "nextoken._core.Error" in run.stderr, (run.returncode, run.stderr[-300:])


def test_known_gguf_block_count(tiny_path, tmp_path):
    image = GGUFImage(*_parse_gguf(Path(tiny_path).read_bytes()))
    apply_gguf_edit(image, ("set", "llama.block_count", (4, 2**31 - 1)))  # the file has 2 layers
    path = tmp_path / "layers.gguf"
    path.write_bytes(image.write()[0])
    # 4 GiB of address space: tables sized by block_count before it is checked would need far more. Not
    # under AddressSanitizer (tools/sanitize.sh), whose shadow memory alone reserves terabytes of it.
    limit = "" if "libasan" in os.environ.get("LD_PRELOAD", "") else \
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY)); "
    code = limit + f"import nextoken; nextoken.load({str(path)!r}, n_ctx=16)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 1 and "nextoken._core.Error" in run.stderr, (run.returncode, run.stderr[-300:])


@pytest.mark.parametrize("edit", [dict(model_type="gemma3", text_config=[1, 2]),
                                  dict(model_type="gemma3", text_config="ab"),
                                  dict(model_type="gemma3", text_config=5), dict(final_logit_softcapping=[1])])
def test_known_gemma3_config_values(tmp_path, edit):
    folder = folder_with(tmp_path, HF / "gemma3", "config.json", lambda c: c.update(edit))
    with pytest.raises(nextoken.Error):
        nextoken.load(folder, n_ctx=16)

