"""Per-architecture knowledge, as data: how a model file's keys and tensor names map onto the one
transformer of csrc/model/config.h and the weight roles of csrc/model/weights.h.

GGUF files and the decoder-only Hugging Face folders (llama, mistral, qwen2, gpt2, gemma3) are mapped in
C++ (csrc/loaders/gguf_models.cpp, hf_models.cpp), which the C API shares; loaders/gguf.py and from_hf
below return their Spec. The encoder-decoder families are mapped here, one small module each (t5.py,
bart.py, vision_encoder_decoder.py) with `from_hf(folder)` returning a `Spec`: the config dict
`_core.Transformer` takes and the weights by role. llama.py and gemma3.py hold `to_gguf` for nextoken
convert. The helpers here are what the modules share: handing out a file's tensors once each (so a missing
one and a left-over one are both reported by name), converting small vectors to float32.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .._core import Error

F32, F16, BF16 = 0, 1, 30


@dataclass
class Tensor:
    """A weight as stored: `rows` x `cols` elements (rows contiguous) of ggml type `type`, as bytes."""
    type: int
    rows: int
    cols: int
    data: np.ndarray  # uint8


@dataclass
class Spec:
    architecture: str
    config: dict                                   # what _core.Transformer takes
    tensors: list = field(default_factory=list)    # (role, ggml type, rows, cols, uint8 array)
    context_length: int = 0                        # what the model was trained for (0: unknown)
    rope_parameters: list = field(default_factory=list)  # per RoPE table, the rope_theta / scaling it came
                                                          # from (folders; what a GGUF writer needs)
    encoder: "Spec | None" = None                  # encoder-decoder models: the encoder (this spec: the decoder)
    generation: dict = field(default_factory=dict)  # decoder_start_token_id, forced_bos_token_id, eos_token_ids,
                                                    # bad_words_ids: what the folder's configs set
    vision: dict = field(default_factory=dict)      # image encoders: patch embedding and preprocessing


def split_roles(roles: list, prefix: str) -> tuple[list, list]:
    """The roles under `prefix` (prefix removed), and the others: an encoder's and a decoder's weights
    collected by one Weights (so that a tensor neither takes is reported)."""
    inside = [(r[len(prefix):], *rest) for r, *rest in roles if r.startswith(prefix)]
    return inside, [r for r in roles if not r[0].startswith(prefix)]


def as_float32(t: Tensor) -> np.ndarray:
    """A F32 / F16 / BF16 tensor as a float32 array (rows, cols); other types are matrices only."""
    if t.type == F32:
        return t.data.view(np.float32).reshape(t.rows, t.cols)
    if t.type == F16:
        return t.data.view(np.float16).astype(np.float32).reshape(t.rows, t.cols)
    if t.type == BF16:
        return (t.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(t.rows, t.cols)
    raise Error(f"a norm weight or bias must be F32, F16 or BF16, got ggml type {t.type}")


def transposed(t: Tensor) -> Tensor:
    """The (cols, rows) transpose of an unquantized tensor (GPT-2's Conv1D stores [in, out])."""
    item = {F32: 4, F16: 2, BF16: 2}.get(t.type)
    if item is None:
        raise Error(f"cannot transpose a tensor of ggml type {t.type}")
    view = t.data.view(np.float32 if item == 4 else np.uint16).reshape(t.rows, t.cols)
    return Tensor(t.type, t.cols, t.rows, np.ascontiguousarray(view.T).reshape(-1).view(np.uint8))


class Weights:
    """Hands out a file's tensors by name, once each, and collects the model's weights by role."""

    def __init__(self, tensors: dict, source: str):
        self._tensors, self._source = tensors, source
        self._taken: set = set()
        self.roles: list = []

    def has(self, name: str) -> bool:
        return name in self._tensors

    def take(self, name: str, required: bool = True) -> Tensor | None:
        if name not in self._tensors:
            if required:
                raise Error(f"{self._source} has no tensor '{name}'")
            return None
        self._taken.add(name)
        return self._tensors[name]

    def matrix(self, role: str, name: str, required: bool = True, tensor: Tensor | None = None):
        t = tensor if tensor is not None else self.take(name, required)
        if t is not None:
            self.roles.append((role, t.type, t.rows, t.cols, t.data))

    def vector(self, role: str, name: str, required: bool = True, offset: float = 0.0, tensor: Tensor | None = None):
        """A norm weight or bias, as float32; `offset` is added in float32 (Gemma stores w for 1 + w)."""
        t = tensor if tensor is not None else self.take(name, required)
        if t is None:
            return
        if t.rows != 1 and t.cols != 1:
            raise Error(f"{self._source}: tensor '{name}' should be a vector, has shape ({t.rows}, {t.cols})")
        v = as_float32(t).reshape(-1)
        if offset:
            v = (np.float32(offset) + v).astype(np.float32)
        v = np.ascontiguousarray(v, dtype=np.float32)
        self.roles.append((role, F32, 1, v.size, v.view(np.uint8)))

    def layer(self, role: str, name: str, norm_offset: float = 0.0):
        """A layer weight by its role: a norm (role ending in "norm") as a float32 vector plus
        `norm_offset`, anything else as a matrix with its bias if the file has one."""
        if role.endswith("norm"):
            self.vector(role, name + ".weight", offset=norm_offset)
        else:
            self.matrix(role, name + ".weight")
            self.vector(role + ".bias", name + ".bias", required=False)

    def check_all_taken(self, hint: str = ""):
        left = sorted(set(self._tensors) - self._taken)
        if left:
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            raise Error(f"{self._source}: tensor {', '.join(repr(n) for n in left[:3])}{more} not used by this "
                        f"model{hint}")


def base_config(**sizes) -> dict:
    """A config dict with every choice at the Llama default; modules override what differs."""
    config = dict(norm="rms", norm_placement="pre", norm_eps=1e-5, activation="silu", gated=True,
                  positions="rope", rope_layout="half", rope_inv_freq=[], position_offset=0,
                  attn_scale=0.0, qk_norm=False, embed_scale=1.0, final_softcap=0.0)
    config.update(sizes)
    n = config["n_layers"]
    config.setdefault("sliding_window", [0] * n)
    config.setdefault("rope_table", [0] * n)
    return config


def positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < int(value) < 2 ** 31:
        raise Error(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def positive_float(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise Error(f"{what} must be a positive number, got {value!r}")
    return float(value)


def write_gguf_sizes(writer, spec: Spec, default_context: int):
    """The size keys every GGUF architecture shares (nextoken convert)."""
    c = spec.config
    writer.add_block_count(c["n_layers"])
    writer.add_context_length(spec.context_length or default_context)
    writer.add_embedding_length(c["dim"])
    writer.add_feed_forward_length(c["hidden_dim"])
    writer.add_head_count(c["n_heads"])
    writer.add_head_count_kv(c["n_kv_heads"])
    writer.add_key_length(c["head_dim"])
    writer.add_value_length(c["head_dim"])
    writer.add_layer_norm_rms_eps(c["norm_eps"])
    writer.add_vocab_size(c["vocab_size"])


# ---- RoPE inverse frequencies, in float32 as transformers' modeling_rope_utils computes them -----------------
def rope_inv_freq(base: float, dim: int) -> np.ndarray:
    """1 / base^(2i / dim): the exponent in float32, the power rounded to float32 once."""
    exponent = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float32)
    power = np.power(np.float64(base), exponent.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / power).astype(np.float32)


# ---- the registry ------------------------------------------------------------------------------------------
def _modules():
    from . import bart, gemma3, llama, t5, vision_encoder_decoder
    return (llama, gemma3, t5, bart, vision_encoder_decoder)


def supported_hf() -> list:
    return list(_core.hf_model_types()) + [t for m in _modules() for t in getattr(m, "HF_MODEL_TYPES", ())]


def module_for(architecture: str):
    """The module that writes a spec of `architecture` as GGUF (llama.py for "mistral"), or None."""
    for m in _modules():
        if architecture in getattr(m, "CONVERTS", ()):
            return m
    return None


_LAYER_COUNTS = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers", "encoder_layers", "decoder_layers")


def _check_layer_counts(folder):
    """Every layer has tensors, so a config.json that claims more layers than the folder has tensors is wrong;
    said before the modules build their per-layer lists (2**31 - 1 layers would be gigabytes of them)."""
    n_tensors = len(folder.tensors)
    for values in (folder.config, *(folder.config.get(k) for k in ("text_config", "encoder", "decoder"))):
        for key in _LAYER_COUNTS if isinstance(values, dict) else ():
            n = values.get(key)
            if isinstance(n, int) and not isinstance(n, bool) and n > n_tensors:
                raise Error(f"{folder.config_source}: '{key}' is {n}, more layers than the folder has tensors "
                            f"({n_tensors})")


def from_hf(folder, n_ctx: int = 2048) -> Spec:
    """The Spec of a Hugging Face folder (loaders.safetensors.HFFolder), by config.json's model_type. n_ctx:
    the longest sequence, for the modules whose weights depend on it (T5's relative-bias table)."""
    model_type = folder.config.get("model_type")
    if model_type in _core.hf_model_types():
        f = _core.spec_from_hf(folder.config, {name: (t.type, t.rows, t.cols, t.data)
                                               for name, t in folder.tensors.items()}, folder.source)
        return Spec(f["architecture"], f["config"], f["tensors"], f["context_length"], f["rope_parameters"])
    _check_layer_counts(folder)
    for m in _modules():
        if model_type in getattr(m, "HF_MODEL_TYPES", ()):
            return m.from_hf(folder, n_ctx) if getattr(m, "TAKES_N_CTX", False) else m.from_hf(folder)
    raise Error(f"unsupported model_type '{model_type}' in {folder.config_source} "
                f"(supported: {', '.join(supported_hf())})")


# ---- quantization at load -----------------------------------------------------------------------------------
QUANTIZE_TO = {"q8_0": 8, "q4_0": 2, "q4_k": 12}
_MATRIX_ROLES = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                 "cross_attn_q", "cross_attn_k", "cross_attn_v", "cross_attn_output")


def is_matrix_role(role: str) -> bool:
    return role.rsplit(".", 1)[-1] in _MATRIX_ROLES


def quantize_roles(spec: Spec, weights: str, quantize, n_threads: int) -> Spec:
    """The spec with every F32 / F16 / BF16 weight matrix quantized to `weights` (q8_0, q4_0, q4_k) by
    `quantize(float32 (rows, cols), ggml type, n_threads) -> bytes`. Norms, biases and learned positions stay
    float32. A matrix whose rows are not whole blocks of the type (Q4_K: 256 weights) is quantized to Q8_0
    instead, or kept as it is if not even that fits, as llama.cpp's quantizer falls back."""
    if not isinstance(weights, str) or weights not in QUANTIZE_TO:
        raise Error(f"weights must be one of {', '.join(QUANTIZE_TO)} (or None: as stored), got {weights!r}")
    target = QUANTIZE_TO[weights]
    roles = []
    for role, type_id, rows, cols, data in spec.tensors:
        if is_matrix_role(role) and type_id in (F32, F16, BF16):
            to = target if cols % (256 if target == 12 else 32) == 0 else 8 if cols % 32 == 0 else None
            if to is not None:
                x = np.ascontiguousarray(as_float32(Tensor(type_id, rows, cols, data)))
                data, type_id = quantize(x, to, n_threads), to
        roles.append((role, type_id, rows, cols, data))
    encoder = quantize_roles(spec.encoder, weights, quantize, n_threads) if spec.encoder is not None else None
    return dataclasses.replace(spec, tensors=roles, encoder=encoder)
