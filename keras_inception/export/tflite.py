"""TFLite (LiteRT) export: float32, float16, dynamic-range int8 and full-integer int8."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from keras_inception.export.artifact_metadata import artifact_metadata
from keras_inception.export.checks import (
    INPUT_NAME,
    PIXEL_RANGE,
    check_input_values,
    input_range,
    is_embedding_model,
    keras_outputs,
    probe_batch,
    require_fixed_shape,
)
from keras_inception.export.saved_model import write_serving_archive
from keras_inception.export.staging import staged_export
from keras_inception.export.tflite_metadata import with_entry
from keras_inception.metadata import METADATA_KEY, ModelMetadata

TFLITE_QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
INPUT_TYPES = ("float32", "uint8", "int8")

# Largest relative L2 difference from Keras on probe inputs. Float exports compute the
# same graph; float16 rounds the weights. dynamic_int8 exports are only checked to run and
# give finite scores; int8 exports are compared with Keras on their calibration images
# (`Agreement`), and a `QuantizationWarning` says when they agree too little.
TFLITE_REL_L2 = {None: 1e-4, "float16": 2e-2}

# Below these, an int8 export gets a QuantizationWarning.
MIN_CALIBRATION_IMAGES = 100
MIN_TOP1_AGREEMENT = 0.90  # classifiers: share of images whose top class is Keras'
MIN_MEAN_COSINE = 0.98  # embedding models: mean cosine to the Keras embeddings


class QuantizationWarning(UserWarning):
    """An int8 export agrees less with the Keras model than `MIN_TOP1_AGREEMENT` /
    `MIN_MEAN_COSINE` on its calibration images, or was calibrated on fewer than
    `MIN_CALIBRATION_IMAGES` images."""


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How closely an int8 export follows the Keras model on its calibration images.

    Classifiers: `top1`, the share of images whose top class is the Keras model's.
    Embedding models (FaceNet): `mean_cosine` and `min_cosine`, the cosine similarity of
    each image's embedding to the Keras embedding.
    """

    images: int
    top1: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None

    @property
    def acceptable(self) -> bool:
        """At or above `MIN_TOP1_AGREEMENT` / `MIN_MEAN_COSINE`."""
        if self.top1 is not None:
            return self.top1 >= MIN_TOP1_AGREEMENT
        return self.mean_cosine is not None and self.mean_cosine >= MIN_MEAN_COSINE

    def __str__(self) -> str:
        where = f"on its {self.images} calibration images"
        if self.top1 is not None:
            return f"top-1 agreement with the Keras model {self.top1:.1%} {where}"
        return (f"cosine to the Keras embeddings {where}: mean {self.mean_cosine:.3f}, "
                f"lowest {self.min_cosine:.3f}")


class TFLiteFile(str):
    """What `export_tflite` returns: the absolute path of the `.tflite` file (a `str`), with
    `agreement`, the `Agreement` measured on the calibration images (int8 exports; None
    for the others, which are compared with Keras on probe images or only run)."""

    agreement: Agreement | None

    def __new__(cls, path: str, agreement: Agreement | None = None) -> TFLiteFile:
        self = super().__new__(cls, path)
        self.agreement = agreement
        return self


def calibration_images(model: Any, quantization: str | None, representative_data: Any,
                       shape: tuple) -> list[np.ndarray] | None:
    """For int8 (TFLite or OpenVINO): the representative images, one `(1, H, W, C)` array
    each, checked against the values `model` takes (`check_calibration_range`); None
    for the other quantizations."""
    if quantization != "int8":
        return None
    calibration = _as_image_list(representative_data, shape)
    check_calibration_range(model, calibration)
    return calibration


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


def check_calibration_range(model: Any, images: list[np.ndarray]) -> None:
    """A one-line ValueError when calibration `images` are not the values the model takes
    (`checks.check_input_values`): activation ranges calibrated on other values are
    ranges that real inputs never match."""
    check_input_values(model, images, "representative_data")


def _configure(converter: Any, quantization: str | None, input_type: str,
               calibration: list[np.ndarray] | None) -> None:
    """Builtin ops only (the file runs on any LiteRT runtime), and the quantization."""
    import tensorflow as tf

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        def representative_dataset():
            for image in calibration:
                yield [image]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(
            tf, input_type)


def _convert(model: Any, spec: Any, quantization: str | None, input_type: str,
             calibration: list[np.ndarray] | None) -> bytes:
    """The TFLite flatbuffer of `model` for `spec`, through a SavedModel in a temporary
    folder (inside the staging folder while `staged_export` runs) and
    `TFLiteConverter.from_saved_model`, the conversion Keras' `format="litert"` export
    makes; `write_serving_archive` writes that SavedModel in half the time Keras takes."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        write_serving_archive(folder, lambda images: model(images, training=False), spec)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        _configure(converter, quantization, input_type, calibration)
        return converter.convert()


def _check_converted(staged: str, model: Any, quantization: str | None, shape: tuple) -> None:
    """RuntimeErrors for an int8 model with float ops, a shape or non-finite mismatch, or
    (float32 / float16) a relative L2 difference from Keras above `TFLITE_REL_L2`."""
    from keras_inception.export.runtime import TFLiteImageModel, non_integer_ops

    if quantization == "int8":
        offenders = non_integer_ops(staged)
        if offenders:
            raise RuntimeError(
                "The converter left floating-point ops in the int8 model, which would not "
                f"run on integer-only hardware: {', '.join(offenders[:10])}"
                f"{' ...' if len(offenders) > 10 else ''}. Nothing was written."
            )
    # Probes in the model's input range (0-255 or [-1, 1]): no preprocessing.
    probes = probe_batch(shape, 2, raw=input_range(model) == PIXEL_RANGE).astype(np.float32)
    got = TFLiteImageModel(staged).run(probes)
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


def measure_agreement(path: str, model: Any, images: list[np.ndarray]) -> Agreement:
    """The `Agreement` of the TFLite file at `path` with `model` on `images` (single
    images `(1, H, W, C)` in the model's input range): cosine of the outputs for an
    embedding model, top-1 agreement for a classifier."""
    from keras_inception.export.runtime import TFLiteImageModel

    batch = np.concatenate(images)
    got = TFLiteImageModel(path).run(batch)
    expected = keras_outputs(model, batch)
    if not is_embedding_model(model):
        top1 = float(np.mean(got.argmax(-1) == expected.argmax(-1)))
        return Agreement(len(images), top1=top1)
    norms = np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1)
    cosine = np.sum(got * expected, axis=-1) / np.maximum(norms, 1e-12)
    return Agreement(len(images), mean_cosine=float(cosine.mean()), min_cosine=float(cosine.min()))


def _warn_if_weak(agreement: Agreement) -> None:
    if not agreement.acceptable:
        wanted = (f"top-1 agreement {MIN_TOP1_AGREEMENT:.0%}" if agreement.top1 is not None
                  else f"mean cosine {MIN_MEAN_COSINE}")
        warnings.warn(
            f"The int8 model follows the Keras model poorly: {agreement} (expected at least "
            f"{wanted}). Calibrate on more images of the kind the model will see, or export "
            "with quantization='dynamic_int8' or 'float16'.", QuantizationWarning, stacklevel=3)
    if agreement.images < MIN_CALIBRATION_IMAGES:
        warnings.warn(
            f"int8 calibration used {agreement.images} images (fewer than "
            f"{MIN_CALIBRATION_IMAGES}): the activation ranges, and the agreement measured on "
            "the same images, may not hold for other inputs.", QuantizationWarning, stacklevel=3)


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
    metadata: ModelMetadata | None = None,
) -> TFLiteFile:
    """Exports `model` as a TFLite (LiteRT) flatbuffer; returns its path (a `TFLiteFile`).

    Converted as Keras' `model.export(format="litert")` converts (a SavedModel written
    by Keras' `ExportArchive`, then `TFLiteConverter.from_saved_model`), with builtin
    ops only so that the file runs on any LiteRT runtime. Every temporary file of the
    conversion lives in the staging folder beside `path` (see
    `keras_inception.export.staging`).

    Checks before the file is moved to `path`: float32 and float16 exports are compared
    with Keras on probe images (a RuntimeError if they differ); int8 exports must be
    integer-only, and their agreement with Keras on the calibration images is measured
    (`TFLiteFile.agreement`: top-1 agreement for a classifier, mean and lowest cosine for
    an embedding model), with a `QuantizationWarning` below `MIN_TOP1_AGREEMENT` /
    `MIN_MEAN_COSINE` or for fewer than `MIN_CALIBRATION_IMAGES` calibration images.

    Args:
        model: a Keras image classifier or embedding model with a fixed input size.
        path: destination, ending with `.tflite`.
        quantization: `None` (float32), `"float16"` (float16 weights),
            `"dynamic_int8"` (int8 weights, float activations) or `"int8"` (full
            integer: int8 weights and activations, calibrated on
            `representative_data`; refused if any op would stay in float).
        representative_data: for `"int8"` only: an iterable or `tf.data.Dataset`
            of images as the model takes them, single or batched, optionally with
            labels; ~100-500 images suffice. Classifiers take [-1, 1]
            (`preprocess_input`, `calibration_dataset(...)`); a model whose first layer
            scales raw pixels (FaceNet with `include_preprocessing=True`) takes 0-255
            (`calibration_dataset(..., preprocess=False)`); FaceNet without it takes crops
            standardised in its weights' mode (`embeddings.preprocess_input(crops, mode)`,
            `calibration_dataset(..., preprocess=mode)`; prewhitened crops are unbounded).
            Other values are a ValueError (`checks.check_input_values`).
        input_type: `"float32"` (default), or `"uint8"` / `"int8"` with
            `quantization="int8"`: the input and output tensors are then
            quantized too (see `keras_inception.export.runtime.Classifier`).
        batch_size: static batch dimension of the input (1 by default, what
            delegates expect); `None` for a dynamic batch.
        overwrite: replace an existing `path`.
        create_parents: create the folders above `path` if they do not exist.
        metadata: what the model means, written into the file's flatbuffer metadata
            (`keras_inception.export.tflite_metadata`) instead of the model's own
            (`infer_metadata`); either way `image_size` becomes the exported input's.
            `input_scaling` describes the real-valued input: with an integer
            `input_type`, the input tensor's quantization encodes those values.
    """
    import tensorflow as tf

    input_type = _check_arguments(quantization, representative_data, input_type, batch_size)
    shape = require_fixed_shape(model, "TFLite")
    meaning = artifact_metadata(model, metadata, shape)
    calibration = calibration_images(model, quantization, representative_data, shape)
    spec = tf.TensorSpec([batch_size, *shape], tf.float32, name=INPUT_NAME)
    agreement = None
    with staged_export(path, overwrite=overwrite, kind="file", what="a TFLite model",
                       suffix=".tflite", create_parents=create_parents) as staged:
        with open(staged, "wb") as file:
            flatbuffer = _convert(model, spec, quantization, input_type, calibration)
            file.write(with_entry(flatbuffer, METADATA_KEY, meaning.to_json().encode("utf-8")))
        _check_converted(staged, model, quantization, shape)
        if calibration is not None:
            agreement = measure_agreement(staged, model, calibration)
    if agreement is not None:
        _warn_if_weak(agreement)
    return TFLiteFile(os.path.abspath(os.fspath(path)), agreement)


__all__ = ["INPUT_TYPES", "MIN_CALIBRATION_IMAGES", "MIN_MEAN_COSINE", "MIN_TOP1_AGREEMENT",
           "TFLITE_QUANTIZATIONS", "Agreement", "QuantizationWarning", "TFLiteFile",
           "calibration_images", "check_calibration_range", "export_tflite", "measure_agreement"]
