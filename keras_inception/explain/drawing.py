"""Heatmaps drawn over their images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np


def jet(values: np.ndarray) -> np.ndarray:
    """The "jet" colour map (dark blue, cyan, yellow, dark red, as matplotlib's): values in
    [0, 1] -> RGB in [0, 1], shape `values.shape + (3,)`."""
    v = np.clip(np.asarray(values, dtype="float32"), 0, 1)[..., None]
    centers = np.array([3.0, 2.0, 1.0], dtype="float32")  # red, green, blue
    return np.clip(1.5 - np.abs(4 * v - centers), 0, 1)


def overlay(image: Any, heatmap: Any, alpha: float = 0.4,
            colormap: Callable[[np.ndarray], Any] = jet) -> np.ndarray:
    """`heatmap` in colour over `image`: a uint8 RGB array of the image's size.

    Args:
        image: RGB pixels 0-255, (H, W, 3) (not the preprocessed model input).
        heatmap: finite values in [0, 1] (others are clipped), (h, w) (a map of
            `grad_cam`); resized bilinearly to (H, W) when its size differs.
        alpha: opacity of the colours, in [0, 1].
        colormap: values in [0, 1] -> RGB (or RGBA, the alpha is dropped) in [0, 1];
            `jet` by default, or a matplotlib colour map such as
            `matplotlib.colormaps["turbo"]`.
    """
    pixels = np.asarray(keras.ops.convert_to_numpy(image), dtype="float32")
    heat = np.asarray(keras.ops.convert_to_numpy(heatmap), dtype="float32")
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"`image` must be RGB pixels (H, W, 3); received shape {pixels.shape}.")
    if heat.ndim != 2:
        raise ValueError(f"`heatmap` must be one map (h, w); received shape {heat.shape}.")
    if not np.isfinite(heat).all():
        raise ValueError(
            f"`heatmap` must hold finite values in [0, 1]; received a map of shape "
            f"{heat.shape} with {int(np.isnan(heat).sum())} NaN and "
            f"{int(np.isinf(heat).sum())} infinite values.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]; received alpha={alpha!r}.")
    if heat.shape != pixels.shape[:2]:
        heat = keras.ops.convert_to_numpy(keras.ops.image.resize(
            heat[..., None], pixels.shape[:2], interpolation="bilinear",
            data_format="channels_last"))[..., 0]
    colours = np.asarray(colormap(np.clip(heat, 0, 1)), dtype="float32")[..., :3] * 255
    blended = (1 - alpha) * np.clip(pixels, 0, 255) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype("uint8")
