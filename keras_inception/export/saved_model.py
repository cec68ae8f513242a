"""TensorFlow SavedModel export for serving (TF Serving, `tf.saved_model.load`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from keras_inception.export.artifact_metadata import artifact_metadata
from keras_inception.export.checks import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_close,
    keras_outputs,
    probe_batch,
    require_fixed_shape,
)
from keras_inception.export.staging import staged_export
from keras_inception.metadata import ModelMetadata, write_saved_model_metadata
from keras_inception.preprocessing import preprocess_input

# Largest difference accepted when the SavedModel is reloaded and compared with Keras.
SAVED_MODEL_ATOL = 1e-5


def write_serving_archive(path: str, serve: Callable, spec: Any) -> None:
    """Writes a SavedModel at `path` whose `serving_default` signature is `serve`
    traced for `spec`, through Keras' `ExportArchive` (which also names the input after
    `spec` and lets `serve` hold preprocessing).

    The archive tracks only the variables `serve` uses (Keras finds them), not the
    model object: tracking the model serialises every layer's object graph and
    doubles the time of the write (Inception-ResNet-v2: 25 s instead of 12 s).
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.add_endpoint("serve", serve, input_signature=[spec])
    archive.write_out(path, verbose=False)


def export_saved_model(
    model: Any,
    path: str | os.PathLike,
    *,
    include_preprocessing: bool = False,
    overwrite: bool = False,
    create_parents: bool = False,
    metadata: ModelMetadata | None = None,
) -> str:
    """Exports `model` as a TensorFlow SavedModel for serving; returns the path.

    The `serving_default` signature takes `images` with a dynamic batch dimension,
    `(None, height, width, 3)`, and returns `{"predictions": ...}`. Inputs are
    float32 in [-1, 1], or, with `include_preprocessing=True`, raw uint8 0-255
    images that the signature scales itself. The export is reloaded and compared
    with the Keras model (batches of 1 and 2) before it is moved to `path` (a
    folder); `create_parents=True` creates the folders above `path`.

    The folder carries what the model means in `assets/keras_inception_metadata.json`
    (`keras_inception.metadata.read_metadata` reads it): `metadata` if given, else the
    model's own (`infer_metadata`), with the exported input size and, with
    `include_preprocessing=True`, `input_scaling="raw"` (see `artifact_metadata`).
    """
    import tensorflow as tf

    shape = require_fixed_shape(model, "SavedModel")
    meaning = artifact_metadata(model, metadata, shape, scales_pixels=include_preprocessing)
    dtype = tf.uint8 if include_preprocessing else tf.float32
    spec = tf.TensorSpec([None, *shape], dtype, name=INPUT_NAME)

    def serve(images):
        x = preprocess_input(images) if include_preprocessing else images
        return {OUTPUT_NAME: model(x, training=False)}

    with staged_export(path, overwrite=overwrite, kind="folder", what="a SavedModel",
                       create_parents=create_parents) as staged:
        write_serving_archive(staged, serve, spec)
        write_saved_model_metadata(staged, meaning)
        signature = tf.saved_model.load(staged).signatures["serving_default"]
        for batch in (1, 2):
            images = probe_batch(shape, batch, raw=include_preprocessing, seed=batch)
            x = preprocess_input(images) if include_preprocessing else images
            got = signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
            check_close("The SavedModel", got, keras_outputs(model, x), atol=SAVED_MODEL_ATOL)
    return os.path.abspath(os.fspath(path))


__all__ = ["export_saved_model", "write_serving_archive"]
