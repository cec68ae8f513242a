"""Exporting models for serving (SavedModel), devices (TFLite / LiteRT) and ONNX runtimes.

Every export is staged in a temporary directory next to the destination, loaded
back and compared with the Keras model, and only then moved into place: a failed
export leaves nothing behind, and an existing destination is replaced only with
`overwrite=True`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from keras_inception.imagenet import preprocess_input

INPUT_NAME = "images"
OUTPUT_NAME = "predictions"
TFLITE_QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
INPUT_TYPES = ("float32", "uint8", "int8")

# Largest differences accepted when an export is loaded back and compared with
# Keras on probe inputs. Float exports compute the same graph; float16 rounds the
# weights. Quantized exports are only checked to run and give finite scores:
# their accuracy is a property of the data, measured on a validation set.
SAVED_MODEL_ATOL = 1e-5
ONNX_ATOL = 1e-4
TFLITE_REL_L2 = {None: 1e-4, "float16": 2e-2}


def _image_shape(model: Any) -> tuple[int | None, int | None, int]:
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


@contextlib.contextmanager
def _staged(path: str | os.PathLike, overwrite: bool, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary path next to `path`; moves it into place if the block succeeds."""
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"`path` must end with {suffix!r}; received path={path!r}.")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"`path` already exists: {path!r}. Pass overwrite=True (--overwrite) to replace it."
        )
    parent, name = os.path.split(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"The directory of `path` does not exist: {parent!r}.")
    # Same directory, hence same filesystem: the final move is an atomic rename.
    workdir = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        staged = os.path.join(workdir, name)
        yield staged
        if not os.path.lexists(staged):
            raise RuntimeError(f"The exporter wrote nothing for {path!r}.")
        previous = os.path.join(workdir, "previous")
        if os.path.lexists(path):
            os.replace(path, previous)
        try:
            os.replace(staged, path)
        except OSError:
            if os.path.lexists(previous):
                os.replace(previous, path)
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _probe_batch(shape: tuple, batch: int, *, raw: bool, seed: int = 0) -> np.ndarray:
    """Deterministic probe images: 0-255 uint8 when `raw`, else float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    if raw:
        return rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    return rng.uniform(-1.0, 1.0, (batch, *shape)).astype(np.float32)


def _keras_outputs(model: Any, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images, training=False), dtype=np.float32)


def _check_close(name: str, got: np.ndarray, expected: np.ndarray, *, atol: float) -> None:
    if got.shape != expected.shape:
        raise RuntimeError(f"{name} returns shape {got.shape}; the Keras model {expected.shape}.")
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= atol:
        raise RuntimeError(
            f"{name} does not match the Keras model: max abs difference {diff:.3g} > {atol:g}; "
            "nothing was written."
        )


def _require_shape(shape: tuple, fmt: str) -> tuple[int, int, int]:
    if None in shape:
        raise ValueError(
            f"{fmt} export needs a fixed input size; the model's input is {shape}. "
            "Build it with input_shape=(size, size, 3)."
        )
    return shape  # type: ignore[return-value]


def export_saved_model(
    model: Any,
    path: str | os.PathLike,
    *,
    include_preprocessing: bool = False,
    overwrite: bool = False,
) -> str:
    """Exports `model` as a TensorFlow SavedModel for serving; returns the path.

    The `serving_default` signature takes `images` with a dynamic batch dimension,
    `(None, height, width, 3)`, and returns `{"predictions": ...}`. Inputs are
    float32 in [-1, 1], or, with `include_preprocessing=True`, raw uint8 0-255
    images that the signature scales itself. The export is reloaded and compared
    with the Keras model (batches of 1 and 2) before it is moved to `path`.
    """
    import keras
    import tensorflow as tf

    shape = _require_shape(_image_shape(model), "SavedModel")
    dtype = tf.uint8 if include_preprocessing else tf.float32
    spec = tf.TensorSpec([None, *shape], dtype, name=INPUT_NAME)

    def serve(images):
        x = preprocess_input(images) if include_preprocessing else images
        return {OUTPUT_NAME: model(x, training=False)}

    with _staged(path, overwrite) as staged:
        # ExportArchive (what model.export(format="tf_saved_model") uses) gives the
        # input and output their names and lets the signature hold preprocessing.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=[spec])
        archive.write_out(staged, verbose=False)

        signature = tf.saved_model.load(staged).signatures["serving_default"]
        for batch in (1, 2):
            images = _probe_batch(shape, batch, raw=include_preprocessing, seed=batch)
            x = preprocess_input(images) if include_preprocessing else images
            got = signature(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
            _check_close("The SavedModel", got, _keras_outputs(model, x), atol=SAVED_MODEL_ATOL)
    return os.path.abspath(os.fspath(path))


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


def export_tflite(
    model: Any,
    path: str | os.PathLike,
    *,
    quantization: str | None = None,
    representative_data: Any = None,
    input_type: Any = "float32",
    batch_size: int | None = 1,
    overwrite: bool = False,
) -> str:
    """Exports `model` as a TFLite (LiteRT) flatbuffer; returns the path.

    Built on Keras' `model.export(format="litert")` (Keras SavedModel ->
    `TFLiteConverter.from_saved_model`), with builtin ops only so that the file
    runs on any LiteRT runtime.

    Args:
        model: a Keras image classifier with a fixed input size.
        path: destination, ending with `.tflite`.
        quantization: `None` (float32), `"float16"` (float16 weights),
            `"dynamic_int8"` (int8 weights, float activations) or `"int8"` (full
            integer: int8 weights and activations, calibrated on
            `representative_data`; refused if any op would stay in float).
        representative_data: for `"int8"` only: an iterable or `tf.data.Dataset`
            of images as the model takes them (e.g. `preprocess_input` output),
            single or batched, optionally with labels; ~100-500 images suffice.
        input_type: `"float32"` (default), or `"uint8"` / `"int8"` with
            `quantization="int8"`: the input and output tensors are then
            quantized too (see `keras_inception.lite.Classifier`).
        batch_size: static batch dimension of the input (1 by default, what
            delegates expect); `None` for a dynamic batch.
        overwrite: replace an existing `path`.
    """
    import tensorflow as tf

    from keras_inception.lite import Classifier, non_integer_ops

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
    shape = _require_shape(_image_shape(model), "TFLite")

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
    with _staged(path, overwrite, suffix=".tflite") as staged:
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
            probes = _probe_batch(shape, 2, raw=False)
        # Probes are already in the model's input range: no preprocessing.
        got = Classifier(staged, preprocess=False).predict(probes)
        expected = _keras_outputs(model, probes)
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


def export_onnx(
    model: Any, path: str | os.PathLike, *, opset: int | None = None, overwrite: bool = False
) -> str:
    """Exports `model` to ONNX through Keras' `model.export(format="onnx")`; returns the path.

    Needs the optional packages of the `onnx` extra (tf2onnx, onnx, onnxruntime).
    The graph takes `images` `(None, height, width, 3)` float32 in [-1, 1] and is
    checked with onnxruntime against the Keras model before it is moved to `path`.
    """
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401  (used by Keras' exporter)
    except ImportError as e:
        raise ImportError(
            "ONNX export needs the optional packages tf2onnx, onnx and onnxruntime "
            f"(missing: {e.name}); install them with: pip install 'keras_inception[onnx]'."
        ) from None
    import tensorflow as tf

    shape = _require_shape(_image_shape(model), "ONNX")
    spec = tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)
    with _staged(path, overwrite, suffix=".onnx") as staged:
        model.export(staged, format="onnx", input_signature=[spec], opset_version=opset,
                     verbose=False)
        session = onnxruntime.InferenceSession(staged, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        for batch in (1, 2):
            images = _probe_batch(shape, batch, raw=False, seed=batch)
            got = session.run(None, {input_name: images})[0]
            _check_close("The ONNX model", got, _keras_outputs(model, images), atol=ONNX_ATOL)
    return os.path.abspath(os.fspath(path))


def calibration_dataset(
    directory: str | os.PathLike,
    image_size: int | tuple[int, int],
    *,
    count: int = 100,
    seed: int = 0,
) -> Any:
    """Up to `count` images found under `directory` (any depth, e.g. an ImageFolder
    train split), center-cropped to `image_size` and preprocessed to [-1, 1]: a
    `tf.data.Dataset` for `export_tflite(..., representative_data=...)`."""
    import keras

    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Calibration directory not found: directory={directory!r}.")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer; received count={count!r}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    try:
        images = keras.utils.image_dataset_from_directory(
            directory, labels=None, image_size=size, batch_size=None, shuffle=True, seed=seed,
            crop_to_aspect_ratio=True, verbose=False,
        )
    except ValueError as e:
        raise ValueError(f"No usable images in directory={directory!r}: {e}") from None
    return images.take(count).map(preprocess_input)


__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "calibration_dataset",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
]
