"""Face embeddings with FaceNet: standardisation, distances and verification.

    import keras_inception as ki
    from keras_inception import embeddings

    model = ki.FaceNet(weights="ms_celeb_1m")              # 128-d, prewhitened input
    emb = model.predict(embeddings.preprocess_input(crops, "prewhiten"))
    embeddings.verify(emb[0], emb[1])                      # same person?

Inputs are face crops (e.g. 160x160 from an MTCNN detector), not whole photos:
detection and alignment are out of scope.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_inception._lazy import lazy_exports
from keras_inception.layers import STANDARDIZATIONS
from keras_inception.preprocessing import check_pixels
from keras_inception.registry import get_spec

DEFAULT_PRESET = "ms_celeb_1m"


def preprocess_input(x: Any, mode: str = "prewhiten") -> np.ndarray:
    """Standardises 0-255 RGB face crops `(N, H, W, 3)` or `(H, W, 3)` as FaceNet expects.

    `mode="prewhiten"` (keras-facenet / davidsandberg, preset `ms_celeb_1m`): per image
    `(x - mean) / max(std, 1 / sqrt(N))`; `mode="fixed"` (facenet-pytorch, presets
    `vggface2` and `casia_webface`): `(x - 127.5) / 128`. Returns float32; the same
    computation as the model's `include_preprocessing=True` layer.
    """
    if mode not in STANDARDIZATIONS:
        raise ValueError(f"`mode` must be one of {STANDARDIZATIONS}; received mode={mode!r}.")
    array = np.asarray(x)
    check_pixels(array)
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(
            f"`x` must be RGB face crops of shape (N, H, W, 3) or (H, W, 3); received {array.shape}."
        )
    array = array.astype(np.float32)
    if mode == "fixed":
        return (array - 127.5) / 128.0
    axes = tuple(range(array.ndim - 3, array.ndim))
    mean = array.mean(axis=axes, keepdims=True)
    std = array.std(axis=axes, keepdims=True)
    size = np.prod(array.shape[-3:])
    return ((array - mean) / np.maximum(std, 1.0 / np.sqrt(size))).astype(np.float32)


def _embeddings(a: Any, name: str) -> np.ndarray:
    array = np.asarray(a, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] < 1:
        raise ValueError(f"`{name}` must be embeddings of shape (D,) or (N, D); received {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or infinite values.")
    return array


def distance(a: Any, b: Any) -> np.ndarray | float:
    """Euclidean distance between embeddings (0 = same, 2 = opposite for unit vectors).

    `a` and `b` are `(D,)` or `(N, D)` (broadcast against each other); the embeddings
    are L2-normalised first, as the model's output already is.
    """
    a, b = _embeddings(a, "a"), _embeddings(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"Embedding sizes differ: a has {a.shape[-1]}, b has {b.shape[-1]}.")
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    d = np.linalg.norm(a - b, axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def default_threshold(preset: str = DEFAULT_PRESET) -> float:
    """The distance threshold a preset's source recommends."""
    return float(get_spec("facenet").preset(preset).distance_threshold)


def verify(a: Any, b: Any, threshold: float | None = None,
           preset: str = DEFAULT_PRESET) -> bool | np.ndarray:
    """Whether the faces of embeddings `a` and `b` are the same person:
    `distance(a, b) < threshold` (default: the preset's recommended threshold)."""
    if threshold is None:
        threshold = default_threshold(preset)
    if not 0 < float(threshold) <= 2:
        raise ValueError(f"`threshold` must be in (0, 2]; received threshold={threshold!r}.")
    d = distance(a, b)
    return bool(d < threshold) if np.ndim(d) == 0 else d < threshold


# The builder, without importing Keras for the helpers above.
__getattr__, __dir__ = lazy_exports(__name__, {"FaceNet": "keras_inception.models.facenet"})


__all__ = ["DEFAULT_PRESET", "default_threshold", "distance", "preprocess_input", "verify"]
