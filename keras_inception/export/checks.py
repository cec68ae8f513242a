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


# Input values may leave the model's range by this much (resampling, rounding).
PIXEL_TOLERANCE = 0.5
SCALED_TOLERANCE = 0.01
# A prewhitened face crop has mean 0 and standard deviation 1 (all zeros if flat); a
# resize after the standardisation smooths the std a little.
PREWHITEN_MEAN_TOLERANCE = 0.1
PREWHITEN_STD_TOLERANCE = 0.2
# FaceNet's standardisations (`embeddings.preprocess_input` modes), as the checks name them.
FACE_CROPS = {"prewhiten": "a prewhitened crop (mean 0, std 1)",
              "fixed": "a 'fixed' crop (within [-1, 1])"}


def stated_standardization(model: Any) -> str | None:
    """The face standardisation ("prewhiten" or "fixed") that `model` says it takes
    outside (its `keras_inception.metadata`: FaceNet without its standardisation layer
    records the one its weights were trained with), else None."""
    from keras_inception.metadata import of_model

    metadata = of_model(model)
    scaling = getattr(metadata, "input_scaling", None)
    return scaling if scaling in FACE_CROPS else None


def _face_kinds(image: np.ndarray) -> tuple[set[str], float, float]:
    """The standardisations `image` is consistent with, its mean and its std."""
    values = np.asarray(image, dtype=np.float64)
    mean, std, peak = float(values.mean()), float(values.std()), float(np.abs(values).max())
    kinds = set()
    if abs(mean) <= PREWHITEN_MEAN_TOLERANCE and (abs(std - 1.0) <= PREWHITEN_STD_TOLERANCE
                                                  or peak <= PREWHITEN_MEAN_TOLERANCE):
        kinds.add("prewhiten")
    if peak <= 1.0 + SCALED_TOLERANCE:
        kinds.add("fixed")
    return kinds, mean, std


def _face_crops_problem(images: list[np.ndarray], mode: str | None) -> str | None:
    """What is wrong with `images` as face crops standardised by `mode` (None: either
    mode, the same for all), or None. Prewhitened crops are unbounded (per image mean 0,
    std 1); "fixed" ones, `(x - 127.5) / 128`, lie within [-1, 1]."""
    wanted = {mode} if mode else set(FACE_CROPS)
    first: dict[str, int] = {}
    for index, image in enumerate(images):
        kinds, mean, std = _face_kinds(image)
        if not kinds & wanted:
            return (f"image {index} has mean {round(mean, 3):g} and std {round(std, 3):g}, not "
                    f"{' nor '.join(FACE_CROPS[kind] for kind in sorted(wanted, reverse=True))}")
        if len(kinds) == 1:
            first.setdefault(kinds.pop(), index)
    if len(first) > 1:
        return (f"it mixes prewhitened crops (image {first['prewhiten']}) with crops within "
                f"[-1, 1] (image {first['fixed']})")
    return None


def _face_hint(mode: str | None) -> tuple[str, str]:
    """What FaceNet without its standardisation layer takes (in `mode`, if known), and
    the hint."""
    if mode is None:
        return "standardised face crops", (
            "pass keras_inception.embeddings.preprocess_input(crops, mode) with the weights' "
            "mode ('prewhiten' for ms_celeb_1m / facenet_keras.h5, 'fixed' for vggface2 / "
            "casia_webface; calibration_dataset(..., crop_pct=1.0, preprocess=mode) does)")
    return f"{mode!r}-standardised face crops", (
        f"pass keras_inception.embeddings.preprocess_input(crops, {mode!r}) (calibration_dataset"
        f"(..., crop_pct=1.0, preprocess={mode!r}) does); for weights trained on the other "
        f"standardisation, build the model with FaceNet(..., standardization=...)")


def check_input_values(model: Any, images: list[np.ndarray],
                       argument: str = "representative_data") -> None:
    """A one-line ValueError when `images` are not the values `model` takes: 0-255 pixels
    for a model whose first layer scales them (`input_range`), standardised face crops for
    FaceNet without that layer (`embeddings.preprocess_input` in the mode the model states,
    prewhitened crops being unbounded), [-1, 1] for the classifiers
    (`preprocessing.preprocess_input`). Calibrating on other values gives activation
    ranges that real inputs never match."""
    low = float(min(image.min() for image in images))
    high = float(max(image.max() for image in images))
    problem = None
    if input_range(model) == PIXEL_RANGE:
        # All values within [0, 1] are scaled data (or black images), not pixels.
        if not (low >= PIXEL_RANGE[0] - PIXEL_TOLERANCE and 1.0 + 1e-6 < high
                <= PIXEL_RANGE[1] + PIXEL_TOLERANCE):
            problem = "takes raw 0-255 pixels (its first layer scales them)"
        hint = "pass 0-255 images (calibration_dataset(..., preprocess=False))"
    elif is_embedding_model(model):
        mode = stated_standardization(model)
        takes, hint = _face_hint(mode)
        reason = _face_crops_problem(images, mode)
        if reason is not None:
            problem = f"takes {takes} ({reason})"
    else:
        if not (low >= -1.0 - SCALED_TOLERANCE and high <= 1.0 + SCALED_TOLERANCE):
            problem = "takes images scaled to [-1, 1]"
        hint = ("pass keras_inception.preprocessing.preprocess_input(images) "
                "(calibration_dataset(...) does)")
    if problem is not None:
        raise ValueError(f"`{argument}` holds values in [{round(low, 3):g}, {round(high, 3):g}], "
                         f"but {model.name} {problem}: {hint}.")


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
