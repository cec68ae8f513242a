"""TensorFlow SavedModel export for serving (TF Serving, `tf.saved_model.load`)."""

from __future__ import annotations

import os
from typing import Any

from keras_inception.export.checks import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_close,
    keras_outputs,
    probe_batch,
    require_fixed_shape,
)
from keras_inception.export.staging import staged_export
from keras_inception.preprocessing import preprocess_input

# Largest difference accepted when the SavedModel is reloaded and compared with Keras.
SAVED_MODEL_ATOL = 1e-5


def export_saved_model(
    model: Any,
    path: str | os.PathLike,
    *,
    include_preprocessing: bool = False,
    overwrite: bool = False,
    create_parents: bool = False,
) -> str:
    """Exports `model` as a TensorFlow SavedModel for serving; returns the path.

    The `serving_default` signature takes `images` with a dynamic batch dimension,
    `(None, height, width, 3)`, and returns `{"predictions": ...}`. Inputs are
    float32 in [-1, 1], or, with `include_preprocessing=True`, raw uint8 0-255
    images that the signature scales itself. The export is reloaded and compared
    with the Keras model (batches of 1 and 2) before it is moved to `path` (a
    folder); `create_parents=True` creates the folders above `path`.
    """
    import keras
    import tensorflow as tf

    shape = require_fixed_shape(model, "SavedModel")
    dtype = tf.uint8 if include_preprocessing else tf.float32
    spec = tf.TensorSpec([None, *shape], dtype, name=INPUT_NAME)

    def serve(images):
        x = preprocess_input(images) if include_preprocessing else images
        return {OUTPUT_NAME: model(x, training=False)}

    with staged_export(path, overwrite=overwrite, kind="folder", what="a SavedModel",
                       create_parents=create_parents) as staged:
        # ExportArchive (what model.export(format="tf_saved_model") uses) gives the
        # input and output their names and lets the signature hold preprocessing.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=[spec])
        archive.write_out(staged, verbose=False)

        signature = tf.saved_model.load(staged).signatures["serving_default"]
        for batch in (1, 2):
            images = probe_batch(shape, batch, raw=include_preprocessing, seed=batch)
            x = preprocess_input(images) if include_preprocessing else images
            got = signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
            check_close("The SavedModel", got, keras_outputs(model, x), atol=SAVED_MODEL_ATOL)
    return os.path.abspath(os.fspath(path))


__all__ = ["export_saved_model"]
