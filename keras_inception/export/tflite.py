"""TFLite (LiteRT) export: float32, float16, dynamic-range int8 and full-integer int8."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from keras_inception.export.checks import INPUT_NAME, keras_outputs, probe_batch, require_fixed_shape
from keras_inception.export.staging import staged_export

TFLITE_QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
INPUT_TYPES = ("float32", "uint8", "int8")

# Largest relative L2 difference from Keras on probe inputs. Float exports compute the
# same graph; float16 rounds the weights. Quantized exports are only checked to run and
# give finite scores: their accuracy is a property of the data, measured on a validation set.
TFLITE_REL_L2 = {None: 1e-4, "float16": 2e-2}


def _as_image_list(data: Any, shape: tuple, limit: int | None = None) -> list[np.ndarray]:
    """Single float32 images `(1, H, W, C)` from an iterable / tf.data.Dataset of
    images or of batches, or of `(images, labels)` pairs."""
    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    if isinstance(data, np.ndarray):
        data = data if data.ndim == 4 else [data]
    if not isinstance(data, Iterable):
        raise ValueError(
            "`representative_data` must be an iterable or a tf.data.Dataset of images; "
            f"received {type(data).__name__}."
        )
    images = []
    for item in data:
        if isinstance(item, (tuple, list)):
            item = item[0]
        item = np.asarray(item, dtype=np.float32)
        batch = item[None] if item.ndim == len(shape) else item
        if batch.ndim != len(shape) + 1 or tuple(batch.shape[1:]) != tuple(shape):
            raise ValueError(
                f"`representative_data` must hold images of shape {tuple(shape)} (or batches "
                f"of them); received an element of shape {item.shape}."
            )
        images.extend(image[None] for image in batch)
        if limit is not None and len(images) >= limit:
            return images[:limit]
    if not images:
        raise ValueError("`representative_data` is empty; int8 calibration needs images.")
    return images


def _normalize_input_type(input_type: Any) -> str:
    name = getattr(input_type, "name", None) or getattr(input_type, "__name__", None)
    name = str(name or input_type)
    if name not in INPUT_TYPES:
        raise ValueError(
            f"`input_type` must be one of {INPUT_TYPES}; received input_type={input_type!r}."
        )
    return name


def _check_arguments(quantization, representative_data, input_type, batch_size) -> str:
    if quantization not in TFLITE_QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {TFLITE_QUANTIZATIONS}; "
            f"received quantization={quantization!r}."
        )
    input_type = _normalize_input_type(input_type)
    if input_type != "float32" and quantization != "int8":
        raise ValueError(
            f"input_type={input_type!r} needs quantization='int8' (integer input tensors exist "
            f"only in fully quantized models); received quantization={quantization!r}."
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' needs `representative_data` (calibration images, e.g. ~100 "
            "preprocessed training images) to choose activation ranges."
        )
    if quantization != "int8" and representative_data is not None:
        raise ValueError(
            f"`representative_data` is only used with quantization='int8'; "
            f"received quantization={quantization!r}."
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(
            f"`batch_size` must be a positive integer or None; received batch_size={batch_size!r}."
        )
    return input_type


def export_tflite(
    model: Any,
    path: str | os.PathLike,
    *,
    quantization: str | None = None,
    representative_data: Any = None,
    input_type: Any = "float32",
    batch_size: int | None = 1,
    overwrite: bool = False,
    create_parents: bool = False,
) -> str:
    """Exports `model` as a TFLite (LiteRT) flatbuffer; returns the path.

    Built on Keras' `model.export(format="litert")` (Keras SavedModel ->
    `TFLiteConverter.from_saved_model`), with builtin ops only so that the file
    runs on any LiteRT runtime. Every temporary file of the conversion lives in
    the staging folder beside `path` (see `keras_inception.export.staging`).

    Args:
        model: a Keras image classifier with a fixed input size.
        path: destination, ending with `.tflite`.
        quantization: `None` (float32), `"float16"` (float16 weights),
            `"dynamic_int8"` (int8 weights, float activations) or `"int8"` (full
            integer: int8 weights and activations, calibrated on
            `representative_data`; refused if any op would stay in float).
        representative_data: for `"int8"` only: an iterable or `tf.data.Dataset`
            of images as the model takes them (e.g. `calibration_dataset(...)` or
            `preprocess_input` output), single or batched, optionally with labels;
            ~100-500 images suffice.
        input_type: `"float32"` (default), or `"uint8"` / `"int8"` with
            `quantization="int8"`: the input and output tensors are then
            quantized too (see `keras_inception.export.runtime.Classifier`).
        batch_size: static batch dimension of the input (1 by default, what
            delegates expect); `None` for a dynamic batch.
        overwrite: replace an existing `path`.
        create_parents: create the folders above `path` if they do not exist.
    """
    import tensorflow as tf

    from keras_inception.export.runtime import Classifier, non_integer_ops

    input_type = _check_arguments(quantization, representative_data, input_type, batch_size)
    shape = require_fixed_shape(model, "TFLite")

    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options: dict[str, Any] = {"target_spec": {"supported_ops": builtins}}
    if quantization is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    probes = None
    if quantization == "int8":
        calibration = _as_image_list(representative_data, shape)
        probes = np.concatenate(calibration[:2])

        def representative_dataset():
            for image in calibration:
                yield [image]

        options["representative_dataset"] = representative_dataset
        options["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = getattr(tf, input_type)
        options["inference_input_type"] = io_type
        options["inference_output_type"] = io_type

    spec = tf.TensorSpec([batch_size, *shape], tf.float32, name=INPUT_NAME)
    with staged_export(path, overwrite=overwrite, kind="file", what="a TFLite model",
                       suffix=".tflite", create_parents=create_parents) as staged:
        model.export(staged, format="litert", input_signature=[spec], verbose=False, **options)

        if quantization == "int8":
            offenders = non_integer_ops(staged)
            if offenders:
                raise RuntimeError(
                    "The converter left floating-point ops in the int8 model, which would not "
                    f"run on integer-only hardware: {', '.join(offenders[:10])}"
                    f"{' ...' if len(offenders) > 10 else ''}. Nothing was written."
                )
        if probes is None:
            probes = probe_batch(shape, 2, raw=False)
        # Probes are already in the model's input range: no preprocessing.
        got = Classifier(staged, preprocess=False).predict(probes)
        expected = keras_outputs(model, probes)
        if got.shape != expected.shape or not np.all(np.isfinite(got)):
            raise RuntimeError(
                f"The TFLite model returns shape {got.shape} (finite: {np.isfinite(got).all()}); "
                f"the Keras model {expected.shape}. Nothing was written."
            )
        if quantization in TFLITE_REL_L2:
            rel = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
            if not rel <= TFLITE_REL_L2[quantization]:
                raise RuntimeError(
                    f"The TFLite model does not match the Keras model: relative L2 {rel:.3g} > "
                    f"{TFLITE_REL_L2[quantization]:g}. Nothing was written."
                )
    return os.path.abspath(os.fspath(path))


__all__ = ["INPUT_TYPES", "TFLITE_QUANTIZATIONS", "export_tflite"]
