"""Reading images from disk for prediction (center crop with the model's crop_pct)."""

from __future__ import annotations

import os
from importlib import resources

import numpy as np
from PIL import Image


def sample_image_path() -> str:
    """A real photo shipped with the package (a daisy, CC BY 2.0, see assets/CREDITS.txt)."""
    return str(resources.files("keras_inception").joinpath("assets/sample_daisy.jpg"))


def load_image(path: str | os.PathLike, size: int, crop_pct: float = 0.875) -> np.ndarray:
    """Loads an RGB image as float32 0-255, resized so the short side is
    `size / crop_pct` (bicubic), then center-cropped to `size x size`."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"`crop_pct` must be in (0, 1]; received crop_pct={crop_pct}.")
    try:
        image = Image.open(path)
        image = image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"Image not found: {os.fspath(path)!r}.") from None
    except OSError as e:
        raise ValueError(f"Cannot read {os.fspath(path)!r} as an image: {e}") from None
    scale_size = int(round(size / crop_pct))
    w, h = image.size
    ratio = scale_size / min(w, h)
    image = image.resize(
        (max(size, round(w * ratio)), max(size, round(h * ratio))), Image.Resampling.BICUBIC
    )
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32)
