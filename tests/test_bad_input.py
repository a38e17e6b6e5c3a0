"""Bad input raises a clear Python exception (nextoken.Error is a ValueError) and never crashes."""
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

import nextoken

from conftest import edited_copy, write_tiny_llama


def test_error_is_a_value_error():
    assert issubclass(nextoken.Error, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        nextoken.load(tmp_path / "nope.gguf")


def test_unknown_model_name():
    with pytest.raises(nextoken.Error, match="unknown model"):
        nextoken.pull("gpt-17")


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.99])
def test_truncated_file(tiny_model_path, tmp_path, keep):
    data = tiny_model_path[0].read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(nextoken.Error):
        nextoken.load(bad)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"this is not a model at all" * 100)
    with pytest.raises(nextoken.Error, match="not a readable GGUF"):
        nextoken.load(bad)


def test_corrupted_header(tiny_model_path, tmp_path):
    data = bytearray(tiny_model_path[0].read_bytes())
    data[8:16] = (10 ** 12).to_bytes(8, "little")  # tensor count
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(nextoken.Error):
        nextoken.load(bad)


def test_unsupported_tensor_type(tmp_path):
    path = tmp_path / "q2k.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    raw = np.zeros((4, 84), dtype=np.uint8)  # 4 rows of 256 Q2_K weights
    w.add_tensor("blk.0.attn_q.weight", raw, raw_shape=raw.shape, raw_dtype=GGMLQuantizationType.Q2_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(nextoken.Error, match="Q2_K"):
        nextoken.load(path)


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "falcon.gguf"
    write_tiny_llama(path, arch="falcon")
    with pytest.raises(nextoken.Error, match="unsupported architecture 'falcon'"):
        nextoken.load(path)


def test_missing_tensor(tmp_path):
    path = tmp_path / "missing.gguf"
    write_tiny_llama(path, drop=("blk.1.ffn_up.weight",))
    with pytest.raises(nextoken.Error, match="blk.1.ffn_up.weight"):
        nextoken.load(path)


def test_tensor_shape_disagrees_with_metadata(tiny_model_path, tmp_path):
    from nextoken.loaders import gguf
    spec = gguf.read(tiny_model_path[0]).spec
    config = dict(spec.config, hidden_dim=spec.config["hidden_dim"] * 2)
    with pytest.raises(nextoken.Error, match="ffn_gate' has shape"):
        nextoken._core.Transformer(config, spec.tensors, 64)


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return nextoken.load(tiny_model_path[0], n_ctx=32, n_threads=2)


@pytest.mark.parametrize("ids", [[1, 2, 300], [-1], [10 ** 6]])
def test_token_ids_out_of_range(tiny, ids):
    with pytest.raises(nextoken.Error, match="outside the vocabulary"):
        tiny.forward(ids)
    with pytest.raises(nextoken.Error, match="outside the vocabulary"):
        tiny.generate(ids)


def test_token_ids_must_be_integers(tiny):
    with pytest.raises(nextoken.Error, match="integers"):
        tiny.forward([1.5, 2.0])
    with pytest.raises(nextoken.Error, match="integers"):
        tiny.generate([[1, 2], [3.5, 4]], max_new_tokens=2)  # a batch whose second prompt is not ids


def test_context_overflow(tiny):
    with pytest.raises(nextoken.Error, match="context overflow"):
        tiny.forward(list(range(33)))
    with pytest.raises(nextoken.Error, match="context overflow"):
        tiny.forward([1, 2], start_pos=31)
    with pytest.raises(nextoken.Error, match="context overflow"):
        tiny.generate(list(range(30)), max_new_tokens=3)
    assert len(tiny.generate(list(range(30)), max_new_tokens=2, min_new_tokens=2)) == 2


def test_empty_prompt(tiny):
    with pytest.raises(nextoken.Error, match="empty"):
        tiny.generate([])
    with pytest.raises(nextoken.Error, match="empty"):
        tiny.generate("")
    with pytest.raises(nextoken.Error, match="at least one"):
        tiny.forward([])


@pytest.mark.parametrize("bad,match", [
    (dict(temperature=-0.5), "temperature"), (dict(temperature=float("inf")), "temperature"),
    (dict(temperature="hot"), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.01), "top_p"),
    (dict(top_p=-1.0), "top_p"), (dict(top_k=-3), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(min_new_tokens=-2), "min_new_tokens"),
    (dict(seed=-1), "seed"), (dict(stop=[""]), "stop"),
    (dict(temperature=1.0, num_return_sequences=10**9), r"num_return_sequences must be an integer in \[1, 512\]"),
])
def test_bad_generation_parameters(tiny, bad, match):
    with pytest.raises(nextoken.Error, match=match):
        tiny.generate("the", **bad)


@pytest.mark.parametrize("kw", [dict(n_ctx=0), dict(n_threads=0), dict(n_ctx="big")])
def test_bad_load_parameters(tiny_model_path, kw):
    with pytest.raises(nextoken.Error):
        nextoken.load(tiny_model_path[0], **kw)


def test_a_context_larger_than_memory_is_named_before_anything_is_sized_by_it(tiny_model_path):
    """n_ctx = 2**31 - 1 raised MemoryError from the RoPE tables, 2**26 ran for minutes filling 17 GB of them:
    both are now an Error that gives the KV cache one sequence would need (the tiny model: 2 layers x 2 KV
    heads x 16 x 4 bytes x 2 = 512 bytes per position, so 2**31 - 1 positions need 1024 GiB)."""
    with pytest.raises(nextoken.Error, match=r"n_ctx = 2147483647 needs 1024.0 GiB of KV cache for one sequence"):
        nextoken.load(tiny_model_path[0], n_ctx=2**31 - 1)


def test_ops_reject_non_numeric_input():
    with pytest.raises((TypeError, ValueError)):
        nextoken.ops.rmsnorm(np.array([["a"]]), np.ones(1, np.float32), 1e-5)


# ---- Hugging Face folders ------------------------------------------------------------------------------
HF = Path(__file__).parent / "fixtures" / "hf"


def llama_folder(tmp_path, edit_config=None, edit_tensors=None):
    """A copy of the llama fixture with its config and/or tensors edited."""
    return edited_copy(HF / "llama", tmp_path / "llama", "config.json", edit_config, edit_tensors)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(model_type="falcon"), "unsupported model_type 'falcon'.*supported: .*gemma3"),
    (lambda c: c.pop("hidden_size"), "config.json lacks 'hidden_size'"),
    (lambda c: c.update(num_hidden_layers="two"), "'num_hidden_layers' must be a positive integer"),
    (lambda c: c.update(hidden_act="mish"), "'hidden_act' is 'mish'"),
    (lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2}), "yarn"),
    (lambda c: c.update(num_hidden_layers=1), "'model.layers.1.*not used by this model"),
    (lambda c: c.update(num_hidden_layers=3), "has no tensor 'model.layers.2.input_layernorm.weight'"),
    (lambda c: c.update(intermediate_size=80), "'blk.0.ffn_gate' has shape \\(64, 32\\), expected \\(80, 32\\)"),
])
def test_bad_hf_config(tmp_path, edit, match):
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(llama_folder(tmp_path, edit_config=edit))


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.pop("model.layers.0.mlp.up_proj.weight"), "llama has no tensor 'model.layers.0.mlp.up_proj.weight'"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"].astype(np.float64)}), "F64"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"][:5]}), "output_norm' has 5 elements"),
    (lambda t: t.update({"lm_head.weight": t["lm_head.weight"][:, :8]}), "'output' has shape"),
])
def test_bad_hf_tensors(tmp_path, edit, match):
    with pytest.raises(nextoken.Error, match=match):
        nextoken.load(llama_folder(tmp_path, edit_tensors=edit))


def test_hf_folder_without_weights_or_config(tmp_path):
    with pytest.raises(nextoken.Error, match="no config.json"):
        nextoken.load(tmp_path)
    folder = llama_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(nextoken.Error, match="no model.safetensors"):
        nextoken.load(folder)


def test_truncated_safetensors(tmp_path):
    folder = llama_folder(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(nextoken.Error, match="truncated"):
        nextoken.load(folder)


@pytest.mark.parametrize("kw", [dict(max_new_tokens=2**31), dict(top_k=2**40), dict(min_new_tokens=2**33),
                                dict(seed=2**64)])
def test_integers_too_large_for_the_core_are_named(tiny, kw):
    with pytest.raises(nextoken.Error, match=next(iter(kw))):
        tiny.generate([1, 2], **kw)


def test_load_errors_from_the_core_name_the_file(tmp_path):
    folder = llama_folder(tmp_path, edit_config=lambda c: c.update(intermediate_size=80))
    with pytest.raises(nextoken.Error, match="^llama: weight 'blk.0.ffn_gate' has shape"):
        nextoken.load(folder)


def test_thread_counts_beyond_the_limit_are_named(tiny_model_path):
    """n_threads is bounded (512) so that asking for many cannot exhaust a process's thread limit; once the
    only way to die was libgomp aborting under a memory limit."""
    with pytest.raises(nextoken.Error, match=r"n_threads must be in \[1, 512\], got 1000"):
        nextoken.load(tiny_model_path[0], n_threads=1000)
    w = np.ones((4, 32), np.float32).view(np.uint8).reshape(-1)
    with pytest.raises(nextoken.Error, match="n_threads"):
        nextoken.ops.matmul(np.ones((2, 32), np.float32), w, 0, 4, n_threads=1000)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_sample_rejects_logits_without_a_softmax(bad):
    """+inf (once drawn as the wrong index) and NaN have no softmax; -inf is a removed token and allowed."""
    with pytest.raises(nextoken.Error, match=r"NaN or \+infinity"):
        nextoken.ops.sample(np.array([0.0, bad, 1.0], np.float32), 1.0, 0, 1.0, 0.5)
    assert nextoken.ops.sample(np.array([0.0, -np.inf, 1.0], np.float32), 0.0, 0, 1.0, 0.5) == 2
