"""ImageNet pre- and post-processing: "tf" mode scaling and class-name decoding."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np
from keras import ops


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """Scales RGB pixels from [0, 255] to [-1, 1] (`x / 127.5 - 1`, Keras "tf" mode).

    Works on NumPy arrays (uint8 or float; returns a new float32 array, the
    caller's array is never modified) and on backend tensors (returns a tensor of
    the same float dtype, or float32 for integer input). `data_format` is accepted
    for keras.applications compatibility; the scaling is the same per channel.
    """
    del data_format
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        array = np.asarray(x)
        dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.dtype(np.float32)
        return array.astype(dtype) / dtype.type(127.5) - dtype.type(1.0)
    dtype = x.dtype if "float" in str(x.dtype) else "float32"
    x = ops.cast(x, dtype)
    return x / ops.cast(127.5, dtype) - ops.cast(1.0, dtype)


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> dict[int, tuple[str, str]]:
    """{index: (wordnet_id, name)} for the 1000 ImageNet classes, from package data."""
    text = resources.files("keras_inception").joinpath("assets/imagenet_class_index.json").read_text()
    return {int(k): (v[0], v[1]) for k, v in json.loads(text).items()}


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Top-`top` `(wordnet_id, class_name, score)` per sample of a `(N, 1000)` array.

    Uses the class index shipped in the package; never downloads.
    """
    preds = np.asarray(ops.convert_to_numpy(preds) if not isinstance(preds, np.ndarray) else preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`preds` must be a 2D array of shape (samples, 1000) (ImageNet predictions); "
            f"received shape {preds.shape}."
        )
    if not isinstance(top, int) or not 1 <= top <= 1000:
        raise ValueError(f"`top` must be an integer in [1, 1000]; received top={top!r}.")
    classes = imagenet_classes()
    results = []
    for row in preds:
        indices = np.argsort(row)[::-1][:top]
        results.append([(*classes[int(i)], float(row[i])) for i in indices])
    return results
