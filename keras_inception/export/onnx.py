"""ONNX export (tf2onnx through Keras' `model.export(format="onnx")`), checked with onnxruntime."""

from __future__ import annotations

import os
from typing import Any

from keras_inception import _compat
from keras_inception.export.artifact_metadata import artifact_metadata
from keras_inception.export.checks import (
    INPUT_NAME,
    check_close,
    keras_outputs,
    probe_batch,
    require_fixed_shape,
)
from keras_inception.export.onnx_metadata import ONNX_EXTRA, append_metadata_props
from keras_inception.export.staging import staged_export
from keras_inception.metadata import METADATA_KEY, ModelMetadata

# Largest difference accepted when onnxruntime's outputs are compared with Keras'.
ONNX_ATOL = 1e-4

# Peak memory (RSS) of an ONNX export: a fixed part (TensorFlow, tf2onnx, onnxruntime)
# plus a multiple of the float32 weights (the traced graph, the converter's graph, the
# ONNX proto, the onnxruntime session). Measured by benchmarks/onnx_memory.py, see
# benchmarks/RESULTS.md ("ONNX export: peak memory").
ONNX_MEMORY_BASE = 0.9 * 2**30
ONNX_MEMORY_PER_WEIGHT_BYTE = 22


def onnx_memory_estimate(model: Any) -> float:
    """Bytes of memory (peak RSS of the process) that exporting `model` to ONNX takes,
    about: `ONNX_MEMORY_BASE` + `ONNX_MEMORY_PER_WEIGHT_BYTE` x its float32 weights."""
    return ONNX_MEMORY_BASE + ONNX_MEMORY_PER_WEIGHT_BYTE * 4 * model.count_params()


def _import_onnx_packages() -> Any:
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401  (used by Keras' exporter)
    except ImportError as e:
        raise ImportError(
            "ONNX export needs the optional packages tf2onnx, onnx and onnxruntime "
            f"(missing: {e.name}); install them with: {ONNX_EXTRA}."
        ) from None
    return onnxruntime


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    overwrite: bool = False,
    create_parents: bool = False,
    metadata: ModelMetadata | None = None,
) -> str:
    """Exports `model` to ONNX through Keras' `model.export(format="onnx")`; returns the path.

    Needs the optional packages of the `onnx` extra (tf2onnx, onnx, onnxruntime).
    The graph takes `images` `(None, height, width, 3)` float32 in [-1, 1] and is
    checked with onnxruntime against the Keras model before it is moved to `path`
    (ending with `.onnx`); `create_parents=True` creates the folders above it.

    The model carries what it means in its `metadata_props`, under `METADATA_KEY`
    (`keras_inception.metadata.read_onnx_metadata`): `metadata` if given, else the model's own
    (`infer_metadata`), with the exported input size.
    """
    import tensorflow as tf

    shape = require_fixed_shape(model, "ONNX")
    meaning = artifact_metadata(model, metadata, shape)
    spec = tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)
    with staged_export(path, overwrite=overwrite, kind="file", what="an ONNX model",
                       suffix=".onnx", create_parents=create_parents) as staged:
        onnxruntime = _import_onnx_packages()  # inside: onnxruntime writes into TMPDIR on import
        with _compat.lean_tf2onnx():  # one copy of the weights, not dozens: see there
            model.export(staged, format="onnx", input_signature=[spec], opset_version=opset,
                         verbose=False)
        append_metadata_props(staged, {METADATA_KEY: meaning.to_json()})
        session = onnxruntime.InferenceSession(staged, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        for batch in (1, 2):
            images = probe_batch(shape, batch, raw=False, seed=batch)
            got = session.run(None, {input_name: images})[0]
            check_close("The ONNX model", got, keras_outputs(model, images), atol=ONNX_ATOL)
    return os.path.abspath(os.fspath(path))



__all__ = ["export_onnx", "onnx_memory_estimate"]
