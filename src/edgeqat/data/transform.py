"""Per-image preprocessing done once in ``prepare``: resize and channel count.

Normalisation is *not* baked into the stored pixels (kept as uint8, 4x smaller than
float32); it is applied when a split is read, and recorded in the model card so every
consumer maps raw pixels the same way: ``x = (pixel - mean) / std``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

NORMALIZATION = {
    "zero_one": {"mean": 0.0, "std": 255.0},
    "minus_one_one": {"mean": 127.5, "std": 127.5},
    "raw": {"mean": 0.0, "std": 1.0},
}


def to_model_pixels(img: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (size, size, channels)."""
    if img.shape[-1] != channels:
        if channels == 1:  # ITU-R 601 luma, as PIL's "L" conversion
            img = np.round(img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
            img = img.astype(np.uint8)[..., None]
        else:
            img = np.repeat(img, 3, axis=-1)
    if img.shape[0] != size or img.shape[1] != size:
        mode = "L" if channels == 1 else "RGB"
        pil = Image.fromarray(img[..., 0] if channels == 1 else img, mode=mode)
        img = np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.uint8)
        if channels == 1:
            img = img[..., None]
    return img


def normalize(x: np.ndarray, scheme: str) -> np.ndarray:
    n = NORMALIZATION[scheme]
    return (x.astype(np.float32) - n["mean"]) / n["std"]
