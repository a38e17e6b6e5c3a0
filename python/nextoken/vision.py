"""Images into a ViT encoder, without torch: preprocessing as the folder's preprocessor_config.json says
(ViTImageProcessor: RGB, resize with Pillow, rescale, normalise, channels first), and the patch embedding
(a convolution with stride = kernel = patch size, i.e. one matrix product over the flattened patches) with
the CLS vector in front. Positions are added by the encoder itself (a learned table)."""
from __future__ import annotations

import os

import numpy as np

from ._core import Error

RESAMPLE = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}


def preprocess(image, vision: dict) -> np.ndarray:
    """(3, H, W) float32 pixel values of a path or PIL image."""
    try:
        from PIL import Image
    except ImportError:
        raise Error('reading images needs Pillow: pip install "nextoken[vision]"') from None
    if isinstance(image, (str, os.PathLike)):
        try:
            image = Image.open(image)
            image.load()
        except (OSError, ValueError) as e:
            raise Error(f"cannot read the image {image}: {e}") from None
    if not isinstance(image, Image.Image):
        raise Error("image must be a path or a PIL image (or give pixel_values=)")
    p = vision.get("processor") or {}
    image = image.convert("RGB")
    if p.get("do_resize", True):
        size, resample = _checked_size(p, vision["image_size"]), p.get("resample", 2)
        if isinstance(resample, bool) or not isinstance(resample, int):
            raise Error(f"preprocessor_config.json: 'resample' must be a PIL filter number, got {resample!r}")
        method = getattr(Image.Resampling, RESAMPLE.get(resample, "BILINEAR"))
        image = image.resize((size, size), resample=method)
    pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
    if p.get("do_rescale", True):
        pixels = pixels * _checked_numbers(p, "rescale_factor", 1 / 255, ((),))
    if p.get("do_normalize", True):
        mean = _checked_numbers(p, "image_mean", [0.5, 0.5, 0.5], ((), (1,), (3,)))
        std = _checked_numbers(p, "image_std", [0.5, 0.5, 0.5], ((), (1,), (3,)))
        pixels = (pixels - mean) / std
    return check_pixels(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32), vision)


def _checked_size(p: dict, image_size: int) -> int:
    """The side preprocessor_config.json resizes to: it must be the encoder's image size (an int, or
    height and width), which check_pixels() would refuse after the resize anyway."""
    size = p.get("size", image_size)
    sides = (size.get("height"), size.get("width")) if isinstance(size, dict) else (size, size)
    if any(isinstance(s, bool) or s != image_size for s in sides):
        raise Error(f"preprocessor_config.json: 'size' is {size!r}; the encoder takes {image_size} x {image_size}")
    return image_size


def _checked_numbers(p: dict, key: str, default, shapes) -> np.ndarray:
    """A finite float32 number (or list of them, per channel) of preprocessor_config.json."""
    value = p.get(key, default)
    try:
        ok = not isinstance(value, (str, bytes, bool, dict)) and not (isinstance(value, list) and
                                                                     any(isinstance(v, bool) for v in value))
        arr = np.asarray(value, np.float32) if ok else None
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape not in shapes or not np.isfinite(arr).all():
        raise Error(f"preprocessor_config.json: '{key}' must be a finite number"
                    f"{' or one per channel' if len(shapes) > 1 else ''}, got {value!r}")
    return arr


def check_pixels(pixels: np.ndarray, vision: dict) -> np.ndarray:
    """pixels (3, H, W) or (1, 3, H, W) of the encoder's image size, as (3, H, W) float32."""
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    c, size = vision["channels"], vision["image_size"]
    if pixels.shape != (c, size, size):
        raise Error(f"pixel_values must be ({c}, {size}, {size}) or (1, {c}, {size}, {size}), got {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise Error("pixel_values holds NaN or infinity")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def patch_embeddings(pixels: np.ndarray, vision: dict) -> np.ndarray:
    """(1 + patches, C) float32: the CLS vector, then each patch (row by row) projected as the ViT's
    convolution does (its weight (C, 3, P, P) flattened matches the patch flattened channel-first)."""
    c, size, p = vision["channels"], vision["image_size"], vision["patch_size"]
    n = size // p
    patches = pixels.reshape(c, n, p, n, p).transpose(1, 3, 0, 2, 4).reshape(n * n, c * p * p)
    embedded = patches @ vision["patch_weight"].T + vision["patch_bias"]
    return np.ascontiguousarray(np.vstack([vision["cls"][None, :], embedded]), dtype=np.float32)
