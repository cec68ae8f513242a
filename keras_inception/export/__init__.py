"""Exporting models for serving (SavedModel), devices (TFLite / LiteRT) and ONNX runtimes,
and running the exported TFLite models.

Every export is written in a staging folder beside the destination (with all the
converters' temporary files), loaded back and compared with the Keras model, and
only then moved into place: a failed or killed export leaves nothing behind, and
an existing destination is replaced only with `overwrite=True`.

Every export carries what the model means (`keras_inception.metadata.ModelMetadata`:
input size, crop, scaling, class names or embedding facts), in its own format: a
SavedModel's `assets/keras_inception_metadata.json`, a `.tflite` flatbuffer's metadata
(`tflite_metadata`), an ONNX model's `metadata_props` (`onnx_metadata`);
`keras_inception.metadata.read_metadata` reads any of them, and the runtimes use it.

Modules: `saved_model`, `tflite` (with `calibration` for int8 and `tflite_metadata`),
`onnx`; `openvino` (OpenVINO IR, float32 or NNCF int8, and its runner: the `openvino`
extra, imported only when used); `runtime` (LiteRT `Classifier` and FaceNet `Embedder`,
`load_interpreter`, op listing; OpenVINO `.xml` files too); `fold_bn` (BatchNorm folding
for inference); `staging`, `checks` and
`artifact_metadata` (what the exporters share). The names below
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
    "export_openvino": "openvino",
    "OPENVINO_QUANTIZATIONS": "openvino",
    "OpenVINOFile": "openvino",
    "OpenVINOImageModel": "openvino",
    "read_openvino_metadata": "openvino",
    "Classifier": "runtime",
    "Embedder": "runtime",
    "TFLiteImageModel": "runtime",
    "load_interpreter": "runtime",
    "list_ops": "runtime",
    "non_integer_ops": "runtime",
    "fuse_batchnorm": "fold_bn",
    "DestinationError": "staging",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
