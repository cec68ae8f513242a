"""OpenVINO IR export: float32, or int8 through NNCF post-training quantization.

An OpenVINO model is two files: `PATH.xml` (the graph) and `PATH.bin` (its weights).
`export_openvino` converts the same SavedModel that the TFLite export converts
(`saved_model.write_serving_archive`: Keras' `ExportArchive`, on the TensorFlow or the
JAX backend) with `openvino.convert_model`, stores the model's metadata in the IR's
runtime information (`<rt_info>` of the `.xml`, under `METADATA_KEY`:
`keras_inception.metadata.read_openvino_metadata` reads it), checks the result against
Keras with OpenVINO's CPU plugin at f32 precision and moves both files into place, the
`.bin` first. `OpenVINOImageModel`, `runtime.Classifier` and `runtime.Embedder` run the
files (`openvino_runtime`; the CPU plugin's bf16 default is opt-in there).

Nothing here imports OpenVINO or NNCF at import time (`import keras_inception.export`
stays light); they come with the `openvino` extra (`OPENVINO_EXTRA`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from typing import Any

import numpy as np

from keras_inception.export.artifact_metadata import artifact_metadata
from keras_inception.export.checks import (
    INPUT_NAME,
    OUTPUT_NAME,
    PIXEL_RANGE,
    input_range,
    keras_outputs,
    probe_batch,
    require_fixed_shape,
)
from keras_inception.export.openvino_runtime import (
    INFERENCE_PRECISIONS,
    OPENVINO_EXTRA,
    import_openvino,
    openvino_class,
    require_packages,
    weights_path,
)
from keras_inception.export.runtime import TFLiteImageModel
from keras_inception.export.saved_model import write_serving_archive
from keras_inception.export.staging import EXPORT_COMMAND, staged_export
from keras_inception.export.tflite import (
    MIN_CALIBRATION_IMAGES,
    MIN_MEAN_COSINE,
    MIN_TOP1_AGREEMENT,
    Agreement,
    QuantizationWarning,
    calibration_images,
    measure_agreement,
)
from keras_inception.files import checked_path, staged_path
from keras_inception.metadata import (
    METADATA_KEY,
    MetadataError,
    ModelMetadata,
    read_openvino_metadata,
)

OPENVINO_QUANTIZATIONS = (None, "int8")
# Largest relative L2 difference from Keras (float32 export, f32 inference) on probes.
OPENVINO_REL_L2 = 1e-4
# The op types whose weights NNCF quantizes; what runs before the first of them on the
# input's path is the model's own preprocessing (`input_preprocessing_ops`).
WEIGHTED_OP_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")

# A `TFLiteImageModel` of an OpenVINO IR: `input_size`, `metadata`, `run`, with
# `num_threads` and `inference_precision` ("f32" by default; see `openvino_runtime`).
OpenVINOImageModel = openvino_class(TFLiteImageModel)


def check_openvino_destination(path: str | os.PathLike, *, overwrite: bool,
                               arg: str = "path") -> tuple[str, str]:
    """(`.xml`, `.bin`) absolute paths of an export to `path`, checked before any work.

    The `.xml` and its `.bin` are one model: without `overwrite`, either one existing is
    refused; with it, they are replaced only when the `.xml` is an IR that this package
    exported (it carries the metadata) and nothing else sits where the `.bin` goes: an
    IR made elsewhere, a lone `.bin`, or a `.bin` without its `.xml` are refused, one
    line naming the file (`files.check_replaceable` allows any file with the right
    suffix; a `.bin` could be anything)."""
    xml = checked_path(path, suffix=".xml", arg=arg)
    weights = weights_path(xml)
    option = "--overwrite" if arg.startswith("-") else "overwrite=True (--overwrite)"
    existing = [p for p in (xml, weights) if os.path.lexists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"`{arg}` already exists: {existing[0]!r}. Pass {option} to "
                              "replace the OpenVINO model (its .xml and .bin).")
    reason = _not_ours(xml, weights) if existing else None
    if reason is not None:
        raise FileExistsError(f"{option} does not replace `{arg}` {xml!r}: {reason}. Choose "
                              f"another `{arg}`.")
    return xml, weights


def _not_ours(xml: str, weights: str) -> str | None:
    """Why the existing `.xml` / `.bin` pair is not an export of this package, or None."""
    if not os.path.lexists(xml):
        return f"{weights!r} exists without {xml!r}: no export wrote it"
    for path in (xml, weights):
        if os.path.lexists(path) and not os.path.isfile(path):
            return f"{path!r} is not a file"
    try:
        ours = read_openvino_metadata(xml) is not None
    except (MetadataError, OSError) as e:
        return str(e).rstrip(".")
    return None if ours else f"{xml!r} is an OpenVINO IR that keras_inception did not export"


# --- export --------------------------------------------------------------------------------


class OpenVINOFile(str):
    """What `export_openvino` returns: the absolute path of the `.xml` (a `str`; its weights
    are `weights`, the `.bin` beside it), with what the export measured: `rel_l2`, the
    relative L2 difference from Keras on probe images (float32 exports), and `agreement`,
    the int8 model's `Agreement` with Keras on the calibration images (int8 exports)."""

    rel_l2: float | None
    agreement: Agreement | None

    def __new__(cls, path: str, *, rel_l2: float | None = None,
                agreement: Agreement | None = None) -> OpenVINOFile:
        self = super().__new__(cls, path)
        self.rel_l2, self.agreement = rel_l2, agreement
        return self

    @property
    def weights(self) -> str:
        return weights_path(self)


def _check_arguments(quantization: Any, representative_data: Any,
                     fast_bias_correction: Any) -> None:
    if quantization not in OPENVINO_QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {OPENVINO_QUANTIZATIONS}; received "
                         f"quantization={quantization!r}.")
    if quantization == "int8" and representative_data is None:
        raise ValueError("quantization='int8' needs `representative_data` (calibration images, "
                         "e.g. ~100-300 preprocessed training images) to choose activation ranges.")
    if quantization is None and representative_data is not None:
        raise ValueError("`representative_data` is only used with quantization='int8'; "
                         "received quantization=None.")
    if not isinstance(fast_bias_correction, bool):
        raise ValueError(f"`fast_bias_correction` must be True or False; received "
                         f"fast_bias_correction={fast_bias_correction!r}.")
    if quantization is None and fast_bias_correction:
        raise ValueError("`fast_bias_correction` is only used with quantization='int8'; "
                         "received quantization=None.")


def _convert(model: Any, shape: tuple) -> Any:
    """The `openvino.Model` of `model` (input `images`, dynamic batch; output
    `predictions`), converted from a SavedModel written in a temporary folder (inside
    the staging folder while `staged_export` runs), the one the TFLite export converts."""
    import tensorflow as tf

    ov = import_openvino()
    spec = tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)
    with tempfile.TemporaryDirectory() as folder:
        write_serving_archive(folder, lambda images: {OUTPUT_NAME: model(images, training=False)},
                              spec)
        return ov.convert_model(folder)


def input_preprocessing_ops(ov_model: Any) -> list[str]:
    """Friendly names of the ops of `ov_model` between its inputs and its first weighted
    ops (`WEIGHTED_OP_TYPES`): the preprocessing the model does itself (a `Rescaling`,
    FaceNet's per-image standardisation `FaceStandardization`), which int8 export keeps in
    float (`export_openvino`). Found by the graph, not by name: the SavedModel conversion
    keeps no Keras layer names. Shape computations (`ShapeOf`) are not followed."""
    names: dict[str, None] = {}
    todo = [target.get_node() for parameter in ov_model.get_parameters()
            for output in parameter.outputs() for target in output.get_target_inputs()]
    while todo:
        node = todo.pop()
        name, kind = node.get_friendly_name(), node.get_type_name()
        if kind in WEIGHTED_OP_TYPES or kind in ("Result", "ShapeOf") or name in names:
            continue
        names[name] = None
        todo += [target.get_node() for output in node.outputs()
                 for target in output.get_target_inputs()]
    return list(names)


def _quantize(ov_model: Any, calibration: list[np.ndarray], fast_bias_correction: bool) -> Any:
    """NNCF's post-training int8 quantization of `ov_model` (weights and activations),
    calibrated on `calibration` (single images as the model takes them), for the CPU,
    with the model's own input preprocessing left in float (`input_preprocessing_ops`)."""
    require_packages("int8")
    import nncf

    ignored = nncf.IgnoredScope(names=input_preprocessing_ops(ov_model))
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNCF's notices about its own optional backends
        nncf.set_log_level(40)  # errors only: its INFO lines and progress bars
        return nncf.quantize(ov_model, nncf.Dataset(calibration), subset_size=len(calibration),
                             target_device=nncf.TargetDevice.CPU, ignored_scope=ignored,
                             fast_bias_correction=fast_bias_correction)


def _check_exported(staged: str, model: Any, shape: tuple, calibration: list | None
                    ) -> tuple[float | None, Agreement | None]:
    """Runs the staged IR (f32 inference) against Keras: a RuntimeError for a wrong shape,
    non-finite outputs or (float32) a relative L2 difference above `OPENVINO_REL_L2`;
    returns (rel L2, None) for float32, (None, agreement on `calibration`) for int8."""
    runner = OpenVINOImageModel(staged)
    probes = probe_batch(shape, 2, raw=input_range(model) == PIXEL_RANGE).astype(np.float32)
    got, expected = runner.run(probes), keras_outputs(model, probes)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        raise RuntimeError(f"The OpenVINO model returns shape {got.shape} (finite: "
                           f"{bool(np.isfinite(got).all())}); the Keras model {expected.shape}. "
                           "Nothing was written.")
    if calibration is not None:  # `TFLiteImageModel` opens an `.xml` with OpenVINO (f32)
        return None, measure_agreement(staged, model, calibration)
    rel = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
    if not rel <= OPENVINO_REL_L2:
        raise RuntimeError(f"The OpenVINO model does not match the Keras model: relative L2 "
                           f"{rel:.3g} > {OPENVINO_REL_L2:g}. Nothing was written.")
    return rel, None


def _warn_if_weak(agreement: Agreement) -> None:
    if not agreement.acceptable:
        wanted = (f"top-1 agreement {MIN_TOP1_AGREEMENT:.0%}" if agreement.top1 is not None
                  else f"mean cosine {MIN_MEAN_COSINE}")
        warnings.warn(f"The int8 OpenVINO model follows the Keras model poorly: {agreement} "
                      f"(expected at least {wanted}). Calibrate on more images of the kind the "
                      "model will see, or export float32.", QuantizationWarning, stacklevel=3)
    if agreement.images < MIN_CALIBRATION_IMAGES:
        warnings.warn(f"int8 calibration used {agreement.images} images (fewer than "
                      f"{MIN_CALIBRATION_IMAGES}): the activation ranges, and the agreement "
                      "measured on the same images, may not hold for other inputs.",
                      QuantizationWarning, stacklevel=3)


def export_openvino(
    model: Any,
    path: str | os.PathLike,
    *,
    quantization: str | None = None,
    representative_data: Any = None,
    overwrite: bool = False,
    create_parents: bool = False,
    metadata: ModelMetadata | None = None,
    fast_bias_correction: bool = False,
) -> OpenVINOFile:
    """Exports `model` as an OpenVINO IR, `PATH.xml` + `PATH.bin`; returns the `.xml`'s path
    (an `OpenVINOFile`, with what was measured).

    Converted with `openvino.convert_model` from the SavedModel the TFLite export
    converts; the input is `images` `(None, height, width, 3)` float32 as the model takes
    it (no preprocessing inside), the output `predictions`. The IR carries what the model
    means in its runtime information (`read_openvino_metadata`): `metadata` if given, else
    the model's own (`infer_metadata`), with the exported input size.

    Checked with OpenVINO's CPU plugin at f32 inference precision before anything is
    moved: a float32 export within `OPENVINO_REL_L2` (relative L2) of Keras on probe
    images (`OpenVINOFile.rel_l2`), else a RuntimeError; an int8 export (NNCF
    post-training quantization of weights and activations, calibrated on
    `representative_data`) gets its `Agreement` with Keras on the calibration images
    (`OpenVINOFile.agreement`: top-1 for a classifier, cosine for an embedding model), with
    a `QuantizationWarning` below `MIN_TOP1_AGREEMENT` / `MIN_MEAN_COSINE` or for fewer
    than `MIN_CALIBRATION_IMAGES` images.

    int8 keeps in float what small errors would spoil: the preprocessing the model does
    itself before its first convolution (`input_preprocessing_ops`: a `Rescaling`, and
    FaceNet's per-image standardisation, whose mean, square, variance and divide NNCF
    would otherwise each round to 8 bits); it runs in float on the CPU either way, so
    this costs no speed. Biases are corrected by NNCF's full bias correction, which
    runs the model layer by layer (a longer export, no cost at inference). Measured on
    the `make demo` model (FaceNet backbone, 50 flower val photos), both together cut the
    int8 model's error to a third (relative L2 of the probabilities 0.23 -> 0.07, top-1
    agreement with Keras 0.82 -> 0.98, NNCF's step 15 -> 60 s); `fast_bias_correction=True`
    trades some of that for a shorter export.

    Both files are written in the staging folder beside `path` and moved into place
    together, the `.bin` first; an existing model is replaced only with `overwrite=True`
    and only when this package exported it (`check_openvino_destination`).

    Args:
        model: a Keras image classifier or embedding model with a fixed input size.
        path: destination, ending with `.xml` (the `.bin` goes beside it).
        quantization: None (float32) or "int8".
        representative_data: for "int8" only: images as the model takes them (single or
            batched, an iterable or a `tf.data.Dataset`, optionally with labels), as for
            `export_tflite` (`calibration_dataset(...)` makes them); ~100-300 suffice.
        overwrite: replace an existing model that this package exported.
        create_parents: create the folders above `path`.
        metadata: what the model means (default: the model's own, `infer_metadata`).
        fast_bias_correction: for "int8" only: NNCF's fast bias correction (a shorter
            export, a less accurate model) instead of the full one.
    """
    _check_arguments(quantization, representative_data, fast_bias_correction)
    require_packages(quantization)
    shape = require_fixed_shape(model, "OpenVINO")
    meaning = artifact_metadata(model, metadata, shape)
    calibration = calibration_images(model, quantization, representative_data, shape)
    xml, weights = check_openvino_destination(path, overwrite=overwrite)
    with staged_export(xml, overwrite=overwrite, kind="file", what="an OpenVINO model",
                       suffix=".xml", create_parents=create_parents) as staged, \
            staged_path(weights, overwrite=overwrite, suffix=".bin", command=EXPORT_COMMAND,
                        kind="file") as staged_weights:
        rel_l2, agreement = _write(model, staged, shape, meaning, calibration,
                                   fast_bias_correction)
        check_openvino_destination(xml, overwrite=overwrite)  # unchanged while we worked
        os.replace(weights_path(staged), staged_weights)  # moved first, then the .xml
    if agreement is not None:
        _warn_if_weak(agreement)
    return OpenVINOFile(xml, rel_l2=rel_l2, agreement=agreement)


def _write(model: Any, staged: str, shape: tuple, meaning: ModelMetadata,
           calibration: list | None, fast_bias_correction: bool
           ) -> tuple[float | None, Agreement | None]:
    """Converts (and quantizes), writes the IR with its metadata at `staged`, checks it."""
    ov = import_openvino()
    ov_model = _convert(model, shape)
    if calibration is not None:
        ov_model = _quantize(ov_model, calibration, fast_bias_correction)
    ov_model.set_rt_info(meaning.to_json(), [METADATA_KEY])
    ov.save_model(ov_model, staged, compress_to_fp16=False)
    return _check_exported(staged, model, shape, calibration)


__all__ = ["INFERENCE_PRECISIONS", "OPENVINO_EXTRA", "OPENVINO_QUANTIZATIONS", "OPENVINO_REL_L2",
           "OpenVINOFile", "OpenVINOImageModel", "WEIGHTED_OP_TYPES", "check_openvino_destination",
           "export_openvino", "input_preprocessing_ops", "read_openvino_metadata", "weights_path"]
