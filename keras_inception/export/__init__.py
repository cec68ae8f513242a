"""Exporting models for serving (SavedModel), devices (TFLite / LiteRT) and ONNX runtimes,
and running the exported TFLite models.

Every export is written in a staging folder beside the destination (with all the
converters' temporary files), loaded back and compared with the Keras model, and
only then moved into place: a failed or killed export leaves nothing behind, and
an existing destination is replaced only with `overwrite=True`.

Modules: `saved_model`, `tflite` (with `calibration` for int8), `onnx`; `runtime`
(LiteRT `Classifier` and FaceNet `Embedder`, `load_interpreter`, op listing); `fold_bn`
(BatchNorm folding for inference); `staging` and `checks` (what the exporters share). The names below
are imported on first use (PEP 562): `import keras_inception.export` imports
neither TensorFlow nor Keras.
"""

from __future__ import annotations

from keras_inception._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "INPUT_NAME": "checks",
    "OUTPUT_NAME": "checks",
    "export_saved_model": "saved_model",
    "export_tflite": "tflite",
    "TFLITE_QUANTIZATIONS": "tflite",
    "INPUT_TYPES": "tflite",
    "Agreement": "tflite",
    "QuantizationWarning": "tflite",
    "TFLiteFile": "tflite",
    "calibration_dataset": "calibration",
    "export_onnx": "onnx",
    "onnx_memory_estimate": "onnx",
    "Classifier": "runtime",
    "Embedder": "runtime",
    "load_interpreter": "runtime",
    "list_ops": "runtime",
    "non_integer_ops": "runtime",
    "fuse_batchnorm": "fold_bn",
    "DestinationError": "staging",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
