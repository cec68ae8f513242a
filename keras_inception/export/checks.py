"""What every exporter shares: the input/output names, the model's image shape, and the
comparison of an exported artifact with the Keras model on probe inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "predictions"


def image_shape(model: Any) -> tuple[int | None, int | None, int]:
    """(height, width, channels) of a single-image-input, channels-last model."""
    shapes = model.input_shape
    if isinstance(shapes, list):
        if len(shapes) != 1:
            raise ValueError(f"Export needs a model with one image input; it has {len(shapes)}.")
        shapes = shapes[0]
    if len(shapes) != 4 or shapes[-1] not in (1, 3):
        raise ValueError(
            f"Export needs a channels-last image input (batch, height, width, channels); "
            f"the model's input shape is {shapes}."
        )
    return shapes[1], shapes[2], shapes[3]


def require_fixed_shape(model: Any, fmt: str) -> tuple[int, int, int]:
    """The model's (height, width, channels); a ValueError if height or width is None."""
    shape = image_shape(model)
    if None in shape:
        raise ValueError(
            f"{fmt} export needs a fixed input size; the model's input is {shape}. "
            "Build it with input_shape=(size, size, 3)."
        )
    return shape  # type: ignore[return-value]


# The two input conventions of the package: images scaled by `preprocess_input`, or raw
# pixels that the model's first layer scales itself.
SCALED_RANGE = (-1.0, 1.0)
PIXEL_RANGE = (0.0, 255.0)


def _first_layer(model: Any) -> Any:
    """The first layer after the input, looking into a nested model that comes first."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return None
    first = layers[0]
    return _first_layer(first) if isinstance(first, keras.Model) else first


def input_range(model: Any) -> tuple[float, float]:
    """The values `model` takes: `PIXEL_RANGE` (0-255) when its first layer scales raw
    pixels itself (FaceNet's `FaceStandardization`, a `Rescaling` such as the classifiers'
    `include_preprocessing=True` one), else `SCALED_RANGE` ([-1, 1], what
    `preprocess_input` gives: the package's classifiers and trained models)."""
    import keras

    from keras_inception.layers import FaceStandardization

    first = _first_layer(model)
    if isinstance(first, FaceStandardization):
        return PIXEL_RANGE
    if isinstance(first, keras.layers.Rescaling):
        try:
            scale = abs(float(np.max(np.abs(np.asarray(first.scale, dtype=np.float64)))))
        except (TypeError, ValueError):
            return SCALED_RANGE
        if scale * 255.0 <= 2.0 + 1e-6:  # maps 0-255 into a range of width 2 or less
            return PIXEL_RANGE
    return SCALED_RANGE


def is_embedding_model(model: Any) -> bool:
    """Whether `model` returns L2-normalised embeddings (FaceNet) rather than class scores."""
    from keras_inception.layers import L2Normalize

    return bool(model.layers) and isinstance(model.layers[-1], L2Normalize)


def probe_batch(shape: tuple, batch: int, *, raw: bool, seed: int = 0) -> np.ndarray:
    """Deterministic probe images: 0-255 uint8 when `raw`, else float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    if raw:
        return rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    return rng.uniform(-1.0, 1.0, (batch, *shape)).astype(np.float32)


def keras_outputs(model: Any, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """The Keras model's outputs for `images`, `batch_size` images a call."""
    return np.concatenate([np.asarray(model(images[i:i + batch_size], training=False),
                                      dtype=np.float32)
                           for i in range(0, max(len(images), 1), batch_size)])


def check_close(name: str, got: np.ndarray, expected: np.ndarray, *, atol: float) -> None:
    """A RuntimeError unless `got` has `expected`'s shape and is within `atol` of it."""
    if got.shape != expected.shape:
        raise RuntimeError(f"{name} returns shape {got.shape}; the Keras model {expected.shape}.")
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= atol:
        raise RuntimeError(
            f"{name} does not match the Keras model: max abs difference {diff:.3g} > {atol:g}; "
            "nothing was written."
        )
