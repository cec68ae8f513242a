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


def test_lean_tf2onnx_patches_what_exists_and_restores_it(monkeypatch):
    """`lean_tf2onnx` replaces tf2onnx's `Node.update_proto` and sets TF2ONNX_CATCH_ERRORS
    only inside the block; a tf2onnx without them (or that no longer reads the variable)
    fails here, loudly, instead of exporting with dozens of copies of the weights."""
    import inspect
    import os

    import pytest
    from tf2onnx import constants, convert
    from tf2onnx.graph import Graph, Node

    original = Node.__dict__["update_proto"]  # the method patched: defined on Node itself
    assert list(inspect.signature(original).parameters) == ["self", "external_tensor_storage"]
    assert callable(Node.is_const) and callable(Node.get_body_graphs)
    assert callable(Node.get_value_attr)  # where make_graph takes a constant's value from
    assert "get_value_attr" in inspect.getsource(Graph.make_graph)
    assert constants.ENV_TF2ONNX_CATCH_ERRORS == _compat.TF2ONNX_CATCH_ERRORS
    assert "ENV_TF2ONNX_CATCH_ERRORS" in inspect.getsource(convert._convert_common)

    for before in (None, "TRUE"):
        if before is None:
            monkeypatch.delenv(_compat.TF2ONNX_CATCH_ERRORS, raising=False)
        else:
            monkeypatch.setenv(_compat.TF2ONNX_CATCH_ERRORS, before)
        with _compat.lean_tf2onnx():
            assert Node.__dict__["update_proto"] is not original
            assert Node.update_proto.__wrapped__ is original
            assert os.environ[_compat.TF2ONNX_CATCH_ERRORS] == "FALSE"
        assert Node.__dict__["update_proto"] is original
        assert os.environ.get(_compat.TF2ONNX_CATCH_ERRORS) == before
    with pytest.raises(RuntimeError, match="inside"), _compat.lean_tf2onnx():
        raise RuntimeError("an error inside the block")
    assert Node.__dict__["update_proto"] is original
    assert os.environ.get(_compat.TF2ONNX_CATCH_ERRORS) == "TRUE"


def test_lean_tf2onnx_conversion_is_right(tmp_path):
    """A conversion inside `lean_tf2onnx` (constants not rewritten into their protos)
    still gives the graph's values: weights, biases and a non-constant node's attributes."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(0)
    # Variables, as in a Keras model: tf2onnx freezes them into constant nodes.
    kernel = tf.Variable(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    bias = tf.Variable(rng.normal(size=(4,)).astype(np.float32))
    dense = tf.Variable(rng.normal(size=(4, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="x")])
    def net(x):
        y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
        return tf.matmul(tf.reduce_mean(tf.transpose(y, [0, 3, 1, 2]), axis=[2, 3]), dense)

    path = str(tmp_path / "net.onnx")
    with _compat.lean_tf2onnx():
        tf2onnx.convert.from_function(net, net.input_signature, opset=17, output_path=path)
    x = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, net(x).numpy(), atol=1e-5)


def _training_variables(model: keras.Model) -> int:
    return len(model.optimizer.variables) + sum(len(m.variables) for m in model.metrics)


def test_build_for_fit_creates_every_variable_fit_needs():
    """After `build_for_fit`, `fit` creates no variable (so the train step is traced once);
    without it, the optimizer's and the compiled metrics' are created during `fit`."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((6, 4), "float32"), np.zeros((6, 3), "float32"))).batch(4)
    counts = {}
    for build in (True, False):
        model = _tiny_model()
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        if build:
            _compat.build_for_fit(model, data.element_spec)
            assert model.optimizer.built
        before = _training_variables(model)
        model.fit(data, epochs=1, verbose=0)
        counts[build] = (before, _training_variables(model))
    assert counts[True][0] == counts[True][1] > 0
    assert counts[False][0] < counts[False][1] == counts[True][1]


def test_tflite_metadata_is_added_as_the_converter_adds_its_own(tmp_path):
    """`tflite_with_metadata` (the schema's generated object API, `ModelT`) adds a named
    metadata entry, replaces it on a second call, keeps the converter's own entries and
    every op, and the file still loads in LiteRT's interpreter and computes exactly what
    the original does (both with LiteRT's built-in kernels and with XNNPACK)."""
    from keras_inception.export.runtime import load_interpreter
    from keras_inception.export.tflite_metadata import metadata_entries

    for int8 in (False, True):
        original = _tflite_conv(tmp_path, int8=int8)
        data = open(original, "rb").read()
        converters = metadata_entries(data)
        assert {"min_runtime_version", "CONVERSION_METADATA"} <= set(converters)
        added = _compat.tflite_with_metadata(data, "test_entry", b'{"a": 1}', b"TFL3")
        again = _compat.tflite_with_metadata(added, "test_entry", b'{"a": 2}', b"TFL3")
        assert again[4:8] == data[4:8] == b"TFL3"
        assert metadata_entries(added) == {**converters, "test_entry": b'{"a": 1}'}
        assert metadata_entries(again) == {**converters, "test_entry": b'{"a": 2}'}
        # The generated reader sees the same entries (names and buffers).
        schema = _compat.tflite_schema()
        model = schema.Model.GetRootAs(bytearray(again), 0)
        names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
        assert names == [n.encode() for n in converters] + [b"test_entry"]
        path = tmp_path / f"with_metadata_{int8}.tflite"
        path.write_bytes(again)
        assert _compat.tflite_ops(path) == _compat.tflite_ops(original)
        x = np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
        for delegates in (False, True):
            outputs = []
            for file in (original, path):
                interpreter = load_interpreter(file, delegates=delegates)
                detail = interpreter.get_input_details()[0]
                scale, zero_point = detail["quantization"]
                feed = np.round(x / scale + zero_point).astype(np.int8) if int8 else x
                interpreter.set_tensor(detail["index"], feed)
                interpreter.invoke()
                outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
            np.testing.assert_array_equal(outputs[0], outputs[1])


# --- keras-hub's private APIs (keras_inception/keras_hub/_compat.py) ---


def test_keras_hub_presets_registered_by_name_are_read_from_their_handle(tmp_path):
    """`register_presets`: keras-hub's base classes list a registered name, and read the
    preset's files from `presets[name]["kaggle_handle"]` each time (here a local preset
    directory, read through a counting record); `unregister_presets` removes it."""
    import keras_hub

    from keras_inception.keras_hub import _compat as hub_compat

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        image_shape=(16, 16, 3))
    backbone.save_to_preset(str(tmp_path))
    reads = []

    class Record(dict):
        def __getitem__(self, key):
            if key == "kaggle_handle":
                reads.append(key)
                return str(tmp_path)
            return super().__getitem__(key)

    name = "keras_inception_compat_test"
    hub_compat.register_presets({name: Record(metadata={"description": "test"})},
                                keras_hub.models.ResNetBackbone)
    try:
        assert name in keras_hub.models.Backbone.presets
        assert name in keras_hub.models.ImageClassifier.presets  # through the tasks of ResNet
        restored = keras_hub.models.Backbone.from_preset(name)
        assert type(restored) is keras_hub.models.ResNetBackbone and reads
        x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype("float32")
        np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(backbone(x)))
    finally:
        hub_compat.unregister_presets([name], keras_hub.models.ResNetBackbone)
    assert name not in keras_hub.models.Backbone.presets


def test_keras_hub_image_converter_resizes_through_its_resizing_attribute():
    """`set_converter_resizing`: keras-hub's `ImageConverter` resizes with the layer in its
    `resizing` attribute, and its `image_size` reads and sets that layer's height/width."""
    import keras_hub

    from keras_inception.keras_hub import _compat as hub_compat

    converter = keras_hub.layers.ImageConverter(image_size=(8, 8))
    hub_compat.set_converter_resizing(converter, keras.layers.Resizing(4, 6, name="resizing"))
    assert converter.image_size == (4, 6)
    assert tuple(converter(np.zeros((10, 12, 3), "float32")).shape) == (4, 6, 3)
    converter.image_size = (5, 7)
    assert (converter.resizing.height, converter.resizing.width) == (5, 7)
    assert tuple(converter(np.zeros((10, 12, 3), "float32")).shape) == (5, 7, 3)


def _weights_file(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        found = {}
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        return found


def test_saving_finds_the_attribute_skip_sets_it_computed(tmp_path, monkeypatch):
    """Keras still stores each skip set under a key it never reads (if this fails, Keras
    caches them itself: remove `cache_saving_attr_skipsets`); with the package's layers
    imported, the second request is the first's set, equal to what Keras computes; and a
    trained model saves the same weights file with and without the cache."""
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    import keras_inception.layers  # noqa: F401  (installs the cache, as importing Keras does)

    patched = saving_lib.get_attr_skipset
    original = patched.__wrapped__
    types = ("Layer", "Functional", "Operation", "Optimizer", "Metric", "Loss")

    def forget_skipsets() -> None:  # what `clear_session` does to them, and nothing else
        for obj_type in types:
            for name in ("saving_attr_skiplist_{}", "saving_attr_skipset_{}"):
                global_state.set_global_attribute(name.format(obj_type), None)

    key = _compat.SKIPSET_KEY_READ.format("Layer")
    forget_skipsets()
    assert original("Layer") is not original("Layer")  # Keras alone: built on every call
    assert global_state.get_global_attribute(key) is None
    for obj_type in types:
        first = patched(obj_type)
        assert patched(obj_type) is first and first == original(obj_type)
    _compat.cache_saving_attr_skipsets()  # idempotent: no second wrapper
    assert saving_lib.get_attr_skipset is patched

    model = _tiny_model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 3), "float32"), verbose=0)
    model.save_weights(tmp_path / "cached.weights.h5")
    monkeypatch.setattr(saving_lib, "get_attr_skipset", original)
    forget_skipsets()
    model.save_weights(tmp_path / "keras.weights.h5")
    cached, plain = (_weights_file(tmp_path / f"{n}.weights.h5") for n in ("cached", "keras"))
    assert cached.keys() == plain.keys() and len(plain) >= 4
    assert all(np.array_equal(cached[k], plain[k]) for k in plain)
