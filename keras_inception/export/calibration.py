"""Calibration images for int8 TFLite export, through the one evaluation transform.

Each file is decoded and passed through `preprocessing.center_crop_tf` and
`preprocessing.tf_preprocess`: the images the quantizer calibrates on are the
images the model is evaluated on (and that `preprocessing.load_image` gives).
"""

from __future__ import annotations

import os
import random
from typing import Any

from keras_inception.preprocessing import DEFAULT_CROP_PCT, center_crop_tf, decode_image_tf, tf_preprocess

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _image_files(directory: str) -> list[str]:
    paths = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # staging folders, .git
        paths += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return paths


def _check_readable(paths: list[str]) -> None:
    """A one-line ValueError naming the first file that cannot be decoded."""
    import tensorflow as tf

    for path in paths:
        try:
            decode_image_tf(tf.io.read_file(path))
        except (tf.errors.OpError, OSError) as e:
            reason = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
            raise ValueError(
                f"Cannot read calibration image {path!r} ({reason}): remove or replace it."
            ) from None


def calibration_dataset(
    directory: str | os.PathLike,
    image_size: int | tuple[int, int],
    *,
    count: int = 100,
    seed: int = 0,
    crop_pct: float = DEFAULT_CROP_PCT,
    preprocess: bool | str = True,
) -> Any:
    """Up to `count` images found under `directory` (any depth, e.g. an ImageFolder
    train split; .jpg, .jpeg, .png, .bmp, .gif), a seeded random choice, as a
    `tf.data.Dataset` for `export_tflite(..., representative_data=...)`.

    Each image goes through the evaluation transform (short side resized to
    `image_size / crop_pct`, bicubic, center crop; `preprocessing.center_crop_tf`)
    and is scaled to [-1, 1] (`preprocessing.tf_preprocess`), what the classifiers
    take; `preprocess=False` keeps 0-255 pixels (float32), what a model that scales
    pixels itself takes (FaceNet with its standardisation inside; with `crop_pct=1.0`
    for face crops, as `Embedder.embed_files` loads them); `preprocess="prewhiten"` or
    `"fixed"` standardises each crop as FaceNet without that layer takes them
    (`embeddings.preprocess_input`, the mode of its weights). The chosen files
    are decoded once first: an unreadable one is a ValueError naming it.
    """
    import tensorflow as tf

    from keras_inception.embeddings import preprocess_input as face_preprocess_input
    from keras_inception.layers import STANDARDIZATIONS

    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Calibration directory not found: directory={directory!r}.")
    if preprocess not in (True, False, *STANDARDIZATIONS):
        raise ValueError(f"`preprocess` must be True, False or one of {STANDARDIZATIONS}; "
                         f"received preprocess={preprocess!r}.")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer; received count={count!r}.")
    if isinstance(image_size, int):
        size = image_size
    else:
        height, width = (int(s) for s in image_size)
        if height != width:
            raise ValueError(
                f"Calibration images are square center crops; received image_size={image_size}."
            )
        size = height
    paths = _image_files(directory)
    if not paths:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) under directory={directory!r}."
        )
    random.Random(seed).shuffle(paths)
    paths = paths[:count]
    _check_readable(paths)

    def load(path):
        image = center_crop_tf(decode_image_tf(tf.io.read_file(path)), size, crop_pct)
        image = tf.ensure_shape(image, [size, size, 3])
        if preprocess in STANDARDIZATIONS:
            return tf.ensure_shape(tf.numpy_function(
                lambda crop: face_preprocess_input(crop, preprocess), [image], tf.float32),
                [size, size, 3])
        return tf_preprocess(image) if preprocess else tf.cast(image, tf.float32)

    return tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)


__all__ = ["IMAGE_EXTENSIONS", "calibration_dataset"]
