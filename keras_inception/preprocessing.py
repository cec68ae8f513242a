"""Pre- and post-processing shared by prediction, training, evaluation and export.

* the one scaling of pixels to the networks' input range, `x / 127.5 - 1` (Keras'
  "tf" mode): `preprocess_input` (NumPy and backend tensors), `tf_preprocess`
  (TensorFlow ops, for tf.data whatever the Keras backend) and the `Rescaling`
  layer of `include_preprocessing=True`, all from `PIXEL_SCALE` / `PIXEL_OFFSET`;
* the one evaluation transform (resize the short side to `size / crop_pct`,
  bicubic, then crop the center `size x size`): `center_crop_pil` for image files
  and `center_crop_tf` for tf.data, tested to agree;
* the one image decoder, `read_image` (files, PIL) and `decode_image_tf` (bytes,
  tf.data), tested to give the same pixels, and `load_image` (decode + crop);
* ImageNet class decoding (`decode_predictions`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image

# The evaluation crop where a model says none: one value for the package.
from keras_inception.metadata import DEFAULT_CROP_PCT

# x / 127.5 - 1 maps 0-255 pixels to [-1, 1].
PIXEL_SCALE = 1.0 / 127.5
PIXEL_OFFSET = -1.0


def check_pixels(array: np.ndarray) -> None:
    """Refuses what cannot be 0-255 pixels: NaN/inf, integers outside 0-255, or floats
    below 0 or above 255 (typically data that was already preprocessed)."""
    if array.size == 0:
        return
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                "`x` holds NaN or infinite values; preprocess_input expects RGB pixels in 0-255."
            )
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        raise ValueError(f"`x` must hold numbers (RGB pixels in 0-255); received dtype {array.dtype}.")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        hint = " (already preprocessed?)" if low >= -1.0 and high <= 1.0 else ""
        raise ValueError(
            f"preprocess_input expects RGB pixels in 0-255; received values in [{low:g}, {high:g}]"
            f"{hint}. Scale {array.dtype} data to 0-255 first (e.g. 16-bit: x / 257)."
        )


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """Scales RGB pixels from [0, 255] to [-1, 1] (`x / 127.5 - 1`, Keras "tf" mode).

    Works on NumPy arrays (uint8 or float; returns a new float32 array, the
    caller's array is never modified) and on backend tensors (returns a tensor of
    the same float dtype, or float32 for integer input). `data_format` is accepted
    for keras.applications compatibility; the scaling is the same per channel.

    Arrays are checked: NaN/inf and values outside 0-255 (16-bit data, or data that
    was already preprocessed) raise a ValueError. Tensors are not (they may be
    symbolic, inside a model).
    """
    del data_format
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        array = np.asarray(x)
        check_pixels(array)
        dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.dtype(np.float32)
        return array.astype(dtype) * dtype.type(PIXEL_SCALE) + dtype.type(PIXEL_OFFSET)
    from keras import ops  # only for backend tensors: NumPy users need no Keras

    dtype = x.dtype if "float" in str(x.dtype) else "float32"
    x = ops.cast(x, dtype)
    return x * ops.cast(PIXEL_SCALE, dtype) + ops.cast(PIXEL_OFFSET, dtype)


def tf_preprocess(image: Any) -> Any:
    """`preprocess_input` in TensorFlow ops, for tf.data pipelines on any Keras backend
    (keras.ops would be JAX's or torch's there)."""
    import tensorflow as tf

    return tf.cast(image, tf.float32) * PIXEL_SCALE + PIXEL_OFFSET


def check_crop_pct(crop_pct: float) -> None:
    """Raises ValueError unless `crop_pct` is in (0, 1]."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"`crop_pct` must be in (0, 1]; received crop_pct={crop_pct}.")


def resized_shape(height: int, width: int, size: int, crop_pct: float) -> tuple[int, int]:
    """(height, width) with the short side at `size / crop_pct`, never below `size`."""
    ratio = round(size / crop_pct) / min(height, width)
    return max(size, round(height * ratio)), max(size, round(width * ratio))


def center_crop_pil(image: Image.Image, size: int, crop_pct: float = DEFAULT_CROP_PCT) -> np.ndarray:
    """The evaluation transform on a PIL RGB image: float32 `(size, size, 3)`, 0-255."""
    check_crop_pct(crop_pct)
    height, width = resized_shape(image.height, image.width, size, crop_pct)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    top, left = (height - size) // 2, (width - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32)


def center_crop_tf(image: Any, size: int, crop_pct: float = DEFAULT_CROP_PCT) -> Any:
    """The evaluation transform in TensorFlow ops (tf.data): float32 `(size, size, 3)`, 0-255.

    Bicubic with antialiasing, as PIL resizes, so both variants give the same crop.
    """
    import tensorflow as tf

    check_crop_pct(crop_pct)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    ratio = tf.round(size / crop_pct) / tf.reduce_min(shape)
    new = tf.maximum(tf.cast(tf.round(shape * ratio), tf.int32), size)
    if image.dtype != tf.uint8:  # uint8 is resized as it is: no float copy of a whole photo
        image = tf.cast(image, tf.float32)
    image = tf.image.resize(image, new, method="bicubic", antialias=True)
    top = (new[0] - size) // 2
    left = (new[1] - size) // 2
    return tf.clip_by_value(image[top:top + size, left:left + size], 0.0, 255.0)


def sample_image_path() -> str:
    """A real photo shipped with the package (a daisy, CC BY 2.0, see assets/CREDITS.txt)."""
    return str(resources.files("keras_inception").joinpath("assets/sample_daisy.jpg"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to uint8 RGB `(H, W, 3)`: the one decoder of the package
    (prediction, training, evaluation and calibration read files through it).

    Grayscale, palette and alpha images become RGB; 16-bit images keep their high
    byte (what TensorFlow's PNG decoder does for uint8), instead of being clipped. An
    image of more pixels than `PIL.Image.MAX_IMAGE_PIXELS` is refused like a damaged
    file (a ValueError naming it): decoding it could take gigabytes (a decompression bomb).
    """
    try:
        with _open_within_pixel_limit(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                array = np.asarray(image).astype(np.int64)
                # PIL gives 16-bit PNGs as I;16 or I (32-bit): both hold 0-65535 values.
                array = np.clip(array, 0, 65535) >> 8
                array = np.repeat(array.astype(np.uint8)[..., None], 3, axis=-1)
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image not found: {os.fspath(path)!r}.") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for damaged files
        raise ValueError(f"Cannot read {os.fspath(path)!r} as an image: {e}") from None
    return array


def _open_within_pixel_limit(path: str | os.PathLike) -> Image.Image:
    """`Image.open(path)`, with PIL's decompression bomb warning (more pixels than
    `Image.MAX_IMAGE_PIXELS`) raised as its error (twice that): a ValueError saying the
    pixel count and the limit (`read_image` names the file), instead of a warning and
    gigabytes of pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # PIL's message says "Image size (N pixels) exceeds limit of ...".
        count = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(count.group(1))} pixels" if count else "more pixels"
        raise ValueError(
            f"it has {pixels}, more than PIL's limit of {Image.MAX_IMAGE_PIXELS} "
            "(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?); shrink it first") from None


def decode_image_tf(data: Any) -> Any:
    """`read_image` in TensorFlow ops, for tf.data: uint8 RGB `(H, W, 3)` from encoded
    bytes, with the same pixels (JPEG through the accurate integer DCT, as PIL decodes
    it; 16-bit PNGs keep their high byte)."""
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def load_image(path: str | os.PathLike, size: int, crop_pct: float = DEFAULT_CROP_PCT) -> np.ndarray:
    """Loads an RGB image file as float32 0-255 through the evaluation transform
    (`center_crop_pil`): short side resized to `size / crop_pct`, center `size x size`."""
    return crop_pixels(read_image(path), size, crop_pct)


def crop_pixels(pixels: np.ndarray, size: int, crop_pct: float = DEFAULT_CROP_PCT) -> np.ndarray:
    """Decoded uint8 RGB `pixels` (as `read_image` gives them) through the evaluation
    transform of `load_image`."""
    check_crop_pct(crop_pct)
    return center_crop_pil(Image.fromarray(pixels), size, crop_pct)


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> dict[int, tuple[str, str]]:
    """{index: (wordnet_id, name)} for the 1000 ImageNet classes, from package data."""
    text = resources.files("keras_inception").joinpath("assets/imagenet_class_index.json").read_text()
    return {int(k): (v[0], v[1]) for k, v in json.loads(text).items()}


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Top-`top` `(wordnet_id, class_name, score)` per sample of a `(N, 1000)` array.

    Uses the class index shipped in the package; never downloads.
    """
    if not isinstance(preds, np.ndarray):
        from keras import ops

        preds = ops.convert_to_numpy(preds)
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "`preds` must be a 2D array of shape (samples, 1000) (ImageNet predictions); "
            f"received shape {preds.shape}."
        )
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 1000:
        raise ValueError(f"`top` must be an integer in [1, 1000]; received top={top!r}.")
    if not np.all(np.isfinite(preds)):
        rows = sorted({int(r) for r in np.argwhere(~np.isfinite(preds))[:, 0]})
        raise ValueError(
            f"`preds` holds NaN or infinite scores (rows {rows[:5]}{' ...' if len(rows) > 5 else ''}): "
            "there is no ranking to decode; check the model's inputs and weights."
        )
    classes = imagenet_classes()
    results = []
    for row in preds:
        indices = np.argsort(row)[::-1][:top]
        results.append([(*classes[int(i)], float(row[i])) for i in indices])
    return results
