"""PEFT LoRA adapters, merged into a Hugging Face folder's weights at load (before any quantization).

An adapter folder holds adapter_config.json (r, lora_alpha, target_modules, use_rslora, fan_in_fan_out)
and adapter_model.safetensors with, per adapted layer, lora_A (r, in) and lora_B (out, r) under the
base model's name prefixed by "base_model.model.". Merging replaces W by W + s (B A), s = lora_alpha / r
(lora_alpha / sqrt(r) with use_rslora), in float32 as PEFT's merge_and_unload() does; with fan_in_fan_out
(GPT-2's Conv1D, stored [in, out]) the delta is transposed. The merged matrices are float32 copies."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._core import Error
from .architectures import F32, Tensor, as_float32
from .loaders import safetensors

_A, _B = ".lora_A.weight", ".lora_B.weight"


def merge(folder, adapter) -> int:
    """Merges the adapter at path `adapter` into folder.tensors (a loaders.safetensors.HFFolder); returns
    how many matrices changed. Everything is checked before any weight is replaced."""
    if not isinstance(adapter, (str, os.PathLike)):
        raise Error(f"lora must be the path of a PEFT adapter folder, got {adapter!r}")
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise Error(f"{adapter} is not a PEFT adapter folder: it has no adapter_config.json")
    config = safetensors.read_json(adapter / "adapter_config.json")
    source = f"{adapter.name}/adapter_config.json"
    if config.get("peft_type", "LORA") != "LORA":
        raise Error(f"{source}: peft_type '{config.get('peft_type')}' is not supported (LORA)")
    if config.get("modules_to_save"):
        raise Error(f"{source}: modules_to_save ({config['modules_to_save']}) is not supported")
    if config.get("bias", "none") != "none":
        raise Error(f"{source}: bias '{config.get('bias')}' is not supported (none)")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise Error(f"{source}: 'r' must be a positive integer, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise Error(f"{source}: 'lora_alpha' must be a number, got {alpha!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise Error(f"{source}: '{key}' is not supported")
    scale = np.float32(alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r)
    transpose = bool(config.get("fan_in_fan_out", False))

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise Error(f"{adapter} has no adapter_model.safetensors")
    tensors = safetensors.read_file(weights)
    merged = {}
    for name in tensors:
        if name.endswith(_B):
            continue
        if not name.endswith(_A):
            raise Error(f"{weights.name}: tensor '{name}' is not a lora_A / lora_B weight (not supported)")
        stem = name[:-len(_A)]
        if stem + _B not in tensors:
            raise Error(f"{weights.name}: '{name}' has no '{stem + _B}'")
        target = stem.removeprefix("base_model.model.") + ".weight"
        base = folder.tensors.get(target)
        if base is None:
            raise Error(f"the adapter {adapter.name} adapts '{target}', which {folder.source} does not have "
                        "(an adapter for another model?)")
        a, b = as_float32(tensors[name]), as_float32(tensors[stem + _B])  # (r, in), (out, r)
        if a.shape[0] != r or b.shape[1] != r:
            raise Error(f"{weights.name}: '{stem}' has rank {a.shape[0]} / {b.shape[1]}, the config says r = {r}")
        delta = (b @ a) * scale  # float32, as PEFT
        if transpose:
            delta = delta.T
        if delta.shape != (base.rows, base.cols):
            raise Error(f"the adapter {adapter.name} changes '{target}' by a {delta.shape} delta, but {folder.source} "
                        f"stores it as ({base.rows}, {base.cols}) (an adapter for another model?)")
        w = np.ascontiguousarray(as_float32(base) + delta, dtype=np.float32)
        merged[target] = Tensor(F32, base.rows, base.cols, w.reshape(-1).view(np.uint8))
    for name in tensors:
        if name.endswith(_B) and name[:-len(_B)] + _A not in tensors:
            raise Error(f"{weights.name}: '{name}' has no lora_A")
    folder.tensors.update(merged)
    return len(merged)
