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
        size = p.get("size", {"height": vision["image_size"], "width": vision["image_size"]})
        height, width = (size, size) if isinstance(size, int) else (size["height"], size["width"])
        method = getattr(Image.Resampling, RESAMPLE.get(p.get("resample", 2), "BILINEAR"))
        image = image.resize((width, height), resample=method)
    pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
    if p.get("do_rescale", True):
        pixels = pixels * np.float32(p.get("rescale_factor", 1 / 255))
    if p.get("do_normalize", True):
        mean = np.asarray(p.get("image_mean", [0.5, 0.5, 0.5]), np.float32)
        std = np.asarray(p.get("image_std", [0.5, 0.5, 0.5]), np.float32)
        pixels = (pixels - mean) / std
    return check_pixels(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32), vision)


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
