"""Arrays into the API: numpy arrays, lists, and any object with __dlpack__ (torch, JAX, CuPy, ... tensors in
CPU memory), read through np.from_dlpack, so torch is never imported. An input that already has the dtype
and C-contiguous layout the core reads (int32 ids, float32 vectors) goes on as a view of the caller's
memory; anything else is converted once here (a copy). Bad input is a nextoken.Error naming the argument.
Arrays out of the API are numpy arrays, which export DLPack themselves."""
from __future__ import annotations

import numpy as np

from ._core import Error

# DLPack device types numpy can read: kDLCPU, kDLCUDAHost, kDLROCMHost, kDLCUDAManaged (host-visible memory)
_HOST_DEVICES = (1, 3, 11, 13)
_DEVICE_NAMES = {2: "CUDA", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm", 12: "ext_dev", 14: "oneAPI",
                 15: "WebGPU", 16: "Hexagon"}
_ERRORS = (TypeError, ValueError, RuntimeError, BufferError)


def as_array(x, name: str) -> np.ndarray:
    """x as a numpy array, of its own dtype: numpy itself; an object with __dlpack__ as a view of its
    memory (numpy reads DLPack without copying); else np.asarray (lists, objects with __array__)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            device = x.__dlpack_device__()[0] if hasattr(x, "__dlpack_device__") else 1
        except _ERRORS as e:
            raise Error(f"{name}: its DLPack device is unknown ({e}); nextoken reads arrays in CPU memory") from None
        if device not in _HOST_DEVICES:
            raise Error(f"{name} is in {_DEVICE_NAMES.get(int(device), f'DLPack device type {int(device)}')} memory: "
                        "nextoken reads arrays in CPU memory; copy it there first (torch: tensor.cpu())")
        try:
            return np.from_dlpack(x)
        except _ERRORS as e:  # a dtype DLPack cannot carry (bfloat16), a tensor that requires grad, ...
            if not hasattr(x, "__array__"):
                raise Error(f"{name}: numpy cannot read it through DLPack ({e})") from None
    try:
        return np.asarray(x)  # its __array__ may still convert it, or say why not
    except _ERRORS as e:
        raise Error(f"{name}: not an array of numbers in CPU memory ({e})") from None


def float_array(x, name: str, ndim: int | None = 2) -> np.ndarray:
    """x as a C-contiguous float32 array of `ndim` dimensions (None: any): a view of x when it is one
    already, else a converted copy (float16/float64/integer input, strided views)."""
    arr = as_array(x, name)
    is_real = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if not is_real or (ndim is not None and arr.ndim != ndim):
        raise Error(f"{name} must be {'an' if ndim is None else f'a {ndim}-D'} array of real numbers, got shape "
                    f"{arr.shape} of {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def id_array(x, name: str, vocab_size: int | None = None) -> np.ndarray:
    """x as a C-contiguous 1-D int32 array of token ids in [0, vocab_size): a view of x when it is one
    already, else a converted copy (int64 ids, as torch makes them, are copied to int32)."""
    arr = as_array(x, name)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise Error(f"{name} must be a flat sequence of integers (token ids), got shape {arr.shape} of {arr.dtype}")
    if vocab_size is not None and arr.size:
        bad = (arr < 0) | (arr >= vocab_size)
        if bad.any():
            raise Error(f"{name}: token id {int(arr[bad][0])} is outside the vocabulary [0, {vocab_size})")
    return np.ascontiguousarray(arr, dtype=np.int32)
