"""Shared fixtures: tiny random Llama models written as real GGUF files, the real SmolLM2 model, and
edited copies of the Hugging Face fixture folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

import nextoken
from nextoken import reference as ref

# Where the kernels and models are tested: the CPU, and a GPU where one is visible to this build (or the CPU
# emulation of one that tools/cuda_emulated/check.sh builds); elsewhere only "cpu" is collected.
DEVICES = ["cpu"] + (["cuda"] if nextoken.cuda_devices() else [])

TINY = dict(n_layers=2, dim=64, hidden_dim=96, n_heads=4, n_kv_heads=2, head_dim=16, vocab_size=300,
            rope_base=10000.0, norm_eps=1e-5)


def tiny_vocab(n):
    """A byte-level BPE vocabulary: the 256 byte symbols, a few merges, and the rest as control tokens."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = sorted(ByteLevel.alphabet())
    tokens = ["<|endoftext|>", "<|im_end|>"] + alphabet
    merges = ["Ġ t", "h e", "Ġt he"]
    tokens += ["Ġt", "he", "Ġthe"]
    tokens += [f"<|extra_{i}|>" for i in range(n - len(tokens))]
    types = [3, 3] + [1] * (len(alphabet) + 3) + [3] * (n - len(alphabet) - 5)
    return tokens[:n], types[:n], merges


def write_tiny_llama(path, matrix_type=ref.Q4_1, embd_type=ref.Q8_0, tied=True, seed=0, arch="llama",
                     drop=(), config=None, extra=None, tokenizer=None):
    """Writes a tiny random Llama GGUF; returns (config, {name: dequantized float32 weights}). config may
    also set block_count and eos_token_id apart from the layers written; extra(writer) adds keys;
    tokenizer(writer) writes the tokenizer keys instead of tiny_vocab's (config's vocab_size tokens)."""
    c = dict(TINY, **(config or {}))
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), arch)
    w.add_block_count(c.get("block_count", c["n_layers"]))
    w.add_context_length(256)
    w.add_embedding_length(c["dim"])
    w.add_feed_forward_length(c["hidden_dim"])
    w.add_head_count(c["n_heads"])
    w.add_head_count_kv(c["n_kv_heads"])
    w.add_rope_freq_base(c["rope_base"])
    w.add_layer_norm_rms_eps(c["norm_eps"])
    w.add_rope_dimension_count(c["head_dim"])
    if tokenizer is None:
        tokens, types, merges = tiny_vocab(c["vocab_size"])
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_eos_token_id(c.get("eos_token_id", 1))
        w.add_bos_token_id(0)
        w.add_add_bos_token(False)
    else:
        tokenizer(w)
    if extra is not None:
        extra(w)

    C, q_dim, kv_dim, hid = c["dim"], c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"], c["hidden_dim"]
    shapes = {"token_embd.weight": (c["vocab_size"], C), "output_norm.weight": (C,)}
    if not tied:
        shapes["output.weight"] = (c["vocab_size"], C)
    for i in range(c["n_layers"]):
        p = f"blk.{i}."
        shapes.update({p + "attn_norm.weight": (C,), p + "ffn_norm.weight": (C,),
                       p + "attn_q.weight": (q_dim, C), p + "attn_k.weight": (kv_dim, C),
                       p + "attn_v.weight": (kv_dim, C), p + "attn_output.weight": (C, q_dim),
                       p + "ffn_gate.weight": (hid, C), p + "ffn_up.weight": (hid, C),
                       p + "ffn_down.weight": (C, hid)})
    weights = {}
    for name, shape in shapes.items():
        if name in drop:
            continue
        if len(shape) == 1:
            arr = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            w.add_tensor(name, arr)
            weights[name] = arr
            continue
        ty = embd_type if name == "token_embd.weight" else matrix_type
        arr = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        if name == "token_embd.weight":
            arr *= 4.0
        raw = ref.quantize(arr, ty)
        weights[name] = ref.dequantize(raw, ty, *shape)
        if ty == ref.F32:
            w.add_tensor(name, raw.view(np.float32).reshape(shape))
        elif ty == ref.F16:
            w.add_tensor(name, raw.view(np.float16).reshape(shape))
        else:
            w.add_tensor(name, raw.reshape(shape[0], -1), raw_shape=raw.reshape(shape[0], -1).shape,
                         raw_dtype=GGMLQuantizationType(ty))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return c, weights


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf"
    config, weights = write_tiny_llama(path)
    return path, config, weights


@pytest.fixture(scope="session")
def smollm2_path():
    """The real model, fetched through `nextoken pull` when it is not cached yet."""
    return nextoken.pull("smollm2", quiet=True)


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    return nextoken.load(smollm2_path, n_ctx=512, n_threads=2)


# ---- edited copies of fixture folders --------------------------------------------------------------------
def write_safetensors(path, tensors):
    """The documented layout: 8-byte header length, JSON header, data. tensors: name -> numpy array."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": {np.float32: "F32", np.float64: "F64", np.float16: "F16"}[arr.dtype.type],
                        "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # as writers pad it
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def edited_copy(src, dst, json_name=None, edit_json=None, edit_tensors=None):
    """A copy of fixture folder `src` at `dst` with the JSON file `json_name` passed through edit_json(dict)
    and/or its model.safetensors tensors (as float32 arrays, name -> array) through edit_tensors(dict)."""
    shutil.copytree(src, dst)
    if edit_json:
        values = json.loads((dst / json_name).read_text())
        edit_json(values)
        (dst / json_name).write_text(json.dumps(values))
    if edit_tensors:
        from nextoken.architectures import as_float32
        from nextoken.loaders import safetensors
        tensors = {name: as_float32(t).reshape(-1) if t.rows == 1 else as_float32(t).copy()  # 1-row tensors are 1-D
                   for name, t in safetensors.read(dst).tensors.items()}
        edit_tensors(tensors)
        write_safetensors(dst / "model.safetensors", tensors)
    return dst
