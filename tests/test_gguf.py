"""nextoken's GGUF reader (csrc/loaders) against llama.cpp's own reader (gguf.GGUFReader) on the same files."""
import numpy as np
import pytest
from gguf import GGUFReader

from nextoken.loaders import gguf


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
