"""The private APIs of `keras_inception._compat` still behave as the package expects.

A failure here means a Keras / TensorFlow / LiteRT release changed a private API:
fix `keras_inception/_compat.py`, not the callers.
"""

from __future__ import annotations

import h5py
import keras
import numpy as np

from keras_inception import _compat


def _tiny_model() -> keras.Model:
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, name="dense_a")(keras.layers.Dense(5, name="dense_b")(inputs))
    return keras.Model(inputs, outputs)


def test_legacy_h5_weights_have_the_release_layout_and_load(tmp_path):
    source, target = _tiny_model(), _tiny_model()
    path = tmp_path / "legacy.h5"
    _compat.save_legacy_h5_weights(source, path)
    with h5py.File(path, "r") as f:
        assert [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]] == [
            layer.name for layer in source.layers
        ]
    target.load_weights(str(path))
    for a, b in zip(source.weights, target.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def _tflite_conv(tmp_path, *, int8: bool) -> str:
    """A conv + relu TFLite model converted by TensorFlow's converter itself (not ours)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    bias = tf.constant(rng.normal(size=(4,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def conv(x):
        return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / f"conv_{'int8' if int8 else 'float'}.tflite"
    path.write_bytes(converter.convert())
    return str(path)


def test_tflite_schema_reader_lists_ops_with_tensor_dtypes(tmp_path):
    """`tflite_ops` (reading the flatbuffer with LiteRT's generated schema module, in place
    of `Interpreter._get_ops_details`) names the ops and their tensors' dtypes."""
    schema = _compat.tflite_schema()
    assert schema.BuiltinOperator.CONV_2D == 3 and schema.TensorType.INT8 == 9
    assert callable(schema.Model.GetRootAs)
    ops = _compat.tflite_ops(_tflite_conv(tmp_path, int8=False))
    assert [name for name, _, _ in ops] == ["CONV_2D"]  # relu and bias fused
    assert ops[0][1:] == (["float32", "float32", "float32"], ["float32"])
    ops = _compat.tflite_ops(_tflite_conv(tmp_path, int8=True))
    assert [name for name, _, _ in ops] == ["CONV_2D"]
    assert ops[0][1:] == (["int8", "int8", "int32"], ["int8"])


def test_weights_mismatch_error_of_keras_is_parsed(tmp_path):
    """`parse_weights_mismatch` reads the figures of Keras' own error for weights of another
    shape (presets/loader.py turns them into one line); a Keras that words it otherwise
    fails here."""
    import warnings

    def model(classes: int) -> keras.Model:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(5, name="body")(inputs)
        return keras.Model(inputs, keras.layers.Dense(classes, name="head")(hidden))

    path = tmp_path / "three.weights.h5"
    model(3).save_weights(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model(2).load_weights(path)
        except ValueError as e:
            error = e
        else:
            raise AssertionError("Keras loaded weights of another shape")
    assert _compat.parse_weights_mismatch(error) == (1, "Dense", "head", "(5, 2)", "(5, 3)")
    assert _compat.parse_weights_mismatch(ValueError("other")) == (None,) * 5
