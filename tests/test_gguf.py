"""nextoken's GGUF reader (csrc/loaders) against llama.cpp's own reader (gguf.GGUFReader) on the same files."""
import numpy as np
import pytest
from gguf import GGUFReader

import nextoken
from nextoken.loaders import gguf

from conftest import write_tiny_llama


def reader_value(field):
    """A GGUFReader field as a plain value (strings decoded, arrays as lists)."""
    kind = field.types[0].name
    if kind == "ARRAY":
        if field.types[-1].name == "STRING":
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if kind == "STRING":
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


@pytest.fixture(params=["tiny", "smollm2"])
def gguf_path(request, tiny_model_path):
    return tiny_model_path[0] if request.param == "tiny" else request.getfixturevalue("smollm2_path")


def test_metadata_agrees_with_gguf_reader(gguf_path):
    ours = gguf.read(gguf_path)
    theirs = GGUFReader(gguf_path)
    keys = [k for k in theirs.fields if not k.startswith("GGUF.")]
    assert sorted(ours.metadata) == sorted(keys)
    for key in keys:
        mine = ours.metadata[key]
        mine = mine.tolist() if isinstance(mine, np.ndarray) else mine
        expected = reader_value(theirs.fields[key])
        if isinstance(expected, float):
            assert mine == pytest.approx(expected, rel=1e-7), key
        else:
            assert mine == expected, key


def test_tensors_agree_with_gguf_reader(gguf_path):
    """Every tensor of the file reaches the model once, by role (its GGUF name less '.weight'), as stored:
    these files keep their norms in F32, so no role is a converted copy."""
    ours = {role: (ty, rows, cols, data) for role, ty, rows, cols, data in gguf.read(gguf_path).spec.tensors}
    theirs = GGUFReader(gguf_path).tensors
    role = {t.name: t.name.removesuffix(".weight") for t in theirs}
    assert sorted(ours) == sorted(role.values())
    for t in theirs:
        ty, rows, cols, data = ours[role[t.name]]
        assert ty == int(t.tensor_type)
        assert cols == int(t.shape[0]) and rows == int(np.prod(t.shape[1:]))
        np.testing.assert_array_equal(data, np.asarray(t.data).reshape(-1).view(np.uint8))


# ---- files that would load and compute something else: each rejected by name -----------------------------
@pytest.mark.parametrize("config, match", [
    (dict(rope_base=-1.0), "rope.freq_base must be a positive number"),
    (dict(rope_base=float("nan")), "rope.freq_base must be a positive number"),
    (dict(norm_eps=0.0), "layer_norm_rms_epsilon must be a positive number"),
    (dict(norm_eps=float("nan")), "layer_norm_rms_epsilon must be a positive number"),
    (dict(eos_token_id=300), "eos_token_id is 300, not a token of the 300-token vocabulary"),
    (dict(block_count=1), r"tensor 'blk.1.attn_k.weight', .* not used by this model \(a llama model of 1 layers\)"),
    (dict(block_count=2**32 - 1), "block_count must be a positive integer"),
])
def test_inconsistent_metadata_is_rejected(tmp_path, config, match):
    path = tmp_path / "bad.gguf"
    write_tiny_llama(path, config=config)
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(path)


@pytest.mark.parametrize("extra, match", [
    (lambda w: w.add_string("llama.attention.sliding_window", "wide"), "sliding_window must be a positive integer"),
    (lambda w: w.add_uint32("llama.rope.scaling.type", 1), "rope.scaling.type must be a string"),
    (lambda w: w.add_custom_alignment(2), "alignment is not a power of two of at least 8"),
    (lambda w: w.add_string("llama.rope.scaling.type", "linear"), "lacks 'llama.rope.scaling.factor'"),
])
def test_keys_of_the_wrong_type_or_value_are_rejected(tmp_path, extra, match):
    path = tmp_path / "bad.gguf"
    write_tiny_llama(path, extra=extra)
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(path)


def test_duplicate_tensor_names_are_rejected(tiny_model_path, tmp_path):
    """Once the last of two equal names won silently."""
    data = tiny_model_path[0].read_bytes()
    assert data.count(b"blk.1.ffn_up.weight") == 1  # its tensor info: renamed to an existing tensor's name
    path = tmp_path / "dup.gguf"
    path.write_bytes(data.replace(b"blk.1.ffn_up.weight", b"blk.0.ffn_up.weight"))
    with pytest.raises(nextoken.Error, match="two tensors named 'blk.0.ffn_up.weight'"):
        nextoken.load(path)


def test_deeply_nested_arrays_are_rejected(tmp_path):
    """A metadata array nested deeper than any real file: a named error, not a recursion to the stack's end."""
    import struct
    kv = b"".join([struct.pack("<Q", 4), b"deep", struct.pack("<I", 9)] +
                  [struct.pack("<IQ", 9, 1)] * 100 + [struct.pack("<IQ", 4, 0)])
    path = tmp_path / "deep.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv + bytes(64))
    with pytest.raises(nextoken.Error, match="nested deeper"):
        nextoken.load(path)
