"""load(compute_type="int8", packed_cache=...): the repacked weights kept in a file and read on the next
load. A cache is used only when it was made from the same file (path, size, mtime, header hash) by the
same packed layout; anything else — a changed model, a damaged or foreign cache, an unwritable place — is
repacked, and the model computes exactly what it computes without a cache."""
import os
import shutil

import numpy as np
import pytest

import nextoken

PROMPT = [5, 17, 90, 33, 2, 250]


def load(path, cache, **kw):
    return nextoken.load(path, n_ctx=64, n_threads=2, compute_type="int8", packed_cache=cache, **kw)


@pytest.fixture(scope="module")
def reference(tiny_model_path):
    return load(tiny_model_path[0], False).forward(PROMPT)


@pytest.fixture
def model_copy(tiny_model_path, tmp_path):
    path = tmp_path / "tiny.gguf"
    shutil.copy(tiny_model_path[0], path)
    return path


def test_second_load_reads_the_cache_and_computes_the_same(model_copy, tmp_path, reference):
    cache = tmp_path / "tiny.int8"
    first = load(model_copy, cache)
    assert not first._transformer.packed_from_cache and cache.is_file()
    second = load(model_copy, cache)
    assert second._transformer.packed_from_cache
    np.testing.assert_array_equal(second.forward(PROMPT), reference)  # bitwise: the same bytes, read back
    np.testing.assert_array_equal(first.forward(PROMPT), reference)


def test_a_changed_model_file_is_repacked(model_copy, tmp_path, reference):
    cache = tmp_path / "tiny.int8"
    load(model_copy, cache)
    stat = os.stat(model_copy)
    os.utime(model_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, another mtime
    again = load(model_copy, cache)
    assert not again._transformer.packed_from_cache
    np.testing.assert_array_equal(again.forward(PROMPT), reference)
    assert load(model_copy, cache)._transformer.packed_from_cache  # rewritten for the new identity


@pytest.mark.parametrize("damage", ["truncate", "header", "foreign"])
def test_a_damaged_cache_is_repacked(model_copy, tmp_path, reference, damage):
    cache = tmp_path / "tiny.int8"
    load(model_copy, cache)
    data = bytearray(cache.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    elif damage == "header":
        data[20] ^= 0xFF  # inside the key text
    else:
        data = b"GGUF" + bytes(len(data) - 4)
    cache.write_bytes(bytes(data))
    again = load(model_copy, cache)
    assert not again._transformer.packed_from_cache
    np.testing.assert_array_equal(again.forward(PROMPT), reference)


def test_an_unwritable_cache_place_only_costs_time(model_copy, tmp_path, reference):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder would have to be")
    m = load(model_copy, blocker / "sub" / "tiny.int8")
    assert not m._transformer.packed_from_cache
    np.testing.assert_array_equal(m.forward(PROMPT), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "tiny.gguf"]  # no temporary file left


def test_default_caches_only_pulled_models(model_copy, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NEXTOKEN_HOME", str(home))
    load(model_copy, None)  # a file outside nextoken's folder: nothing written
    assert not (home / "packed").exists()
    inside = home / "model.gguf"
    home.mkdir()
    shutil.copy(model_copy, inside)
    load(inside, None)
    assert load(inside, None)._transformer.packed_from_cache
    assert [p.suffix for p in (home / "packed").iterdir()] == [".int8"]


def test_bad_packed_cache_argument(model_copy):
    with pytest.raises(nextoken.Error, match="packed_cache must be"):
        load(model_copy, 3)
