"""Every export carries what the model means (`keras_inception.metadata`): SavedModel, TFLite
(float32 and int8) and ONNX files read back with `read_metadata`, and the LiteRT runtimes
(`Classifier`, `Embedder`) take their class names, scaling and crop from the file."""

from __future__ import annotations

import json
import os
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_inception as ki
from keras_inception import export
from keras_inception.export.runtime import Classifier, Embedder, TFLiteImageModel
from keras_inception.export.tflite_metadata import with_entry
from keras_inception.metadata import (
    METADATA_KEY,
    MetadataError,
    ModelMetadata,
    describe,
    read_metadata,
)
from keras_inception.preprocessing import load_image, preprocess_input
from keras_inception.saving import SidecarWarning

SIZE = 75
NAMES = ("daisy", "rose", "tulip")
META = ModelMetadata(kind="classifier", image_size=(SIZE, SIZE), crop_pct=1.0,
                     class_names=NAMES, model="inception_resnet_v1")
TINY = 32
TINY_META = META.replace(image_size=(TINY, TINY), model=None)


@pytest.fixture(scope="module")
def irv1():
    """Inception-ResNet-v1 at 75 px, 3 classes, random weights, carrying `META`."""
    keras.utils.set_random_seed(0)
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    return describe(model, META)


def _export_pair(model, folder) -> tuple[str, str]:
    """The float32 TFLite export of `model`, and the same export path with the metadata step
    left out (what an older version wrote)."""
    from keras_inception.export import tflite

    with_meta = export.export_tflite(model, folder / "with.tflite", create_parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tflite, "with_entry", lambda flatbuffer, name, data: flatbuffer)
        without = export.export_tflite(model, folder / "without" / "m.tflite",
                                       create_parents=True)
    return with_meta, without


@pytest.fixture(scope="module")
def irv1_pair(irv1, module_tmp_path):
    return _export_pair(irv1, module_tmp_path / "irv1_pair")


@pytest.fixture(scope="module")
def tiny_pair(module_tmp_path):
    """`_export_pair` of a toy classifier (32 px) carrying `TINY_META`: the runtime's tests."""
    return _export_pair(describe(_tiny(), TINY_META), module_tmp_path / "tiny_pair")


def _pixels(count: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype(np.uint8)


def _tiny(classes: int = 3, size: int = TINY) -> keras.Model:
    keras.utils.set_random_seed(classes)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name="tiny")


# --- SavedModel ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_saved_model_carries_the_metadata_asset(irv1, tmp_path):
    """The asset is inside the folder, `tf.saved_model.load` still serves it, and an export
    with the scaling inside (`include_preprocessing=True`) says it takes raw pixels."""
    import tensorflow as tf

    path = export.export_saved_model(irv1, tmp_path / "sm")
    assert os.path.isfile(os.path.join(path, "assets", "keras_inception_metadata.json"))
    assert read_metadata(path) == META
    signature = tf.saved_model.load(path).signatures["serving_default"]
    x = preprocess_input(_pixels(2).astype(np.float32))
    got = signature(images=tf.constant(x))["predictions"].numpy()
    np.testing.assert_allclose(got, np.asarray(irv1(x, training=False)), atol=1e-5)

    raw = export.export_saved_model(irv1, tmp_path / "sm_raw", include_preprocessing=True)
    assert read_metadata(raw) == META.replace(input_scaling="raw")


# --- TFLite ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tflite_carries_the_metadata_and_computes_as_without(irv1_pair):
    """The float32 file carries `META` in its flatbuffer; LiteRT loads it and computes
    exactly what the same export without the metadata computes (both are checked against
    Keras by the export); the file without reads as carrying none."""
    with_meta, without = irv1_pair
    assert read_metadata(with_meta) == META
    assert read_metadata(without) is None
    x = preprocess_input(_pixels(3).astype(np.float32))
    for delegates in (True, False):
        got = TFLiteImageModel(with_meta, delegates=delegates).run(x)
        np.testing.assert_array_equal(got, TFLiteImageModel(without, delegates=delegates).run(x))


def test_classifier_takes_names_crop_and_scaling_from_the_file(tiny_pair, tmp_path):
    """`Classifier` on a file with metadata: its class names (no file beside it), its crop
    for `classify_files`; a file without metadata keeps the old defaults."""
    from PIL import Image

    with_meta, without = tiny_pair
    assert sorted(os.listdir(os.path.dirname(with_meta))) == ["with.tflite", "without"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sidecar warning: the names are in the file
        classifier = Classifier(with_meta)
    assert classifier.metadata == TINY_META
    assert classifier.class_names == list(NAMES)
    assert (classifier.crop_pct, classifier.input_scaling) == (1.0, "inception")
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 120, 3), np.uint8)).save(image)
    expected = classifier.top_k(load_image(image, TINY, crop_pct=1.0), 2)
    assert classifier.classify_files([image], k=2) == expected
    old = Classifier(without)
    assert old.metadata is None and old.class_names == ["class_0", "class_1", "class_2"]
    assert (old.crop_pct, old.input_scaling) == (0.875, "inception")
    assert old.classify_files([image], k=2) == old.top_k(load_image(image, TINY, 0.875), 2)


def test_classifier_scales_as_the_metadata_says(tmp_path):
    """A file whose metadata says it takes raw pixels gets them unscaled; "inception" gets
    [-1, 1], as a file without metadata."""
    model = _tiny()
    raw = export.export_tflite(model, tmp_path / "raw.tflite",
                               metadata=ModelMetadata(input_scaling="raw"))
    scaled = export.export_tflite(model, tmp_path / "scaled.tflite")
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    runner = TFLiteImageModel(raw)
    assert Classifier(raw).input_scaling == "raw"
    np.testing.assert_array_equal(Classifier(raw).predict(images), runner.run(images))
    np.testing.assert_array_equal(Classifier(scaled).predict(images),
                                  runner.run(preprocess_input(images)))


def test_classifier_reads_an_older_versions_names_with_a_sidecar_warning(tiny_pair):
    """Without names in the file: `FILE.class_names.json` beside it, with a `SidecarWarning`
    naming that file; the names in the file win over one beside it; the argument over all."""
    with_meta, without = tiny_pair
    sidecar = f"{without}.class_names.json"
    with open(sidecar, "w") as f:
        json.dump(["a", "b", "c"], f)
    try:
        with pytest.warns(SidecarWarning, match=r"m\.tflite\.class_names\.json.*older version"):
            assert Classifier(without).class_names == ["a", "b", "c"]
        beside = f"{with_meta}.class_names.json"
        with open(beside, "w") as f:
            json.dump(["x", "y", "z"], f)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert Classifier(with_meta).class_names == list(NAMES)
            assert Classifier(with_meta, class_names=["p", "q", "r"]).class_names == ["p", "q", "r"]
    finally:
        for path in (sidecar, f"{with_meta}.class_names.json"):
            if os.path.exists(path):
                os.remove(path)


def test_overriding_metadata_and_its_checks(tmp_path):
    """`metadata=` replaces the model's own (the size is the export's); names that do not
    fit the outputs, or pixels scaled twice, are refused before anything is written."""
    model = _tiny()
    path = export.export_tflite(model, tmp_path / "m.tflite",
                                metadata=ModelMetadata(class_names=("a", "b", "c")))
    assert read_metadata(path) == ModelMetadata(image_size=(32, 32), class_names=("a", "b", "c"))
    assert read_metadata(export.export_tflite(model, tmp_path / "plain.tflite")) == ModelMetadata(
        image_size=(32, 32))  # a model without metadata: what infer_metadata assumes
    with pytest.raises(ValueError, match="2 class names, but the model has 3 outputs"):
        export.export_tflite(model, tmp_path / "bad.tflite",
                             metadata=ModelMetadata(class_names=("a", "b")))
    with pytest.raises(ValueError, match="input_scaling='raw'"):
        export.export_saved_model(model, tmp_path / "sm", include_preprocessing=True,
                                  metadata=ModelMetadata(input_scaling="raw"))
    with pytest.raises(TypeError, match="ModelMetadata"):
        export.export_tflite(model, tmp_path / "bad.tflite", metadata={"kind": "classifier"})
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "plain.tflite"]


def test_damaged_metadata_is_one_line_naming_the_file(tiny_pair, tmp_path):
    """Metadata that is not JSON, and a file that is not a TFLite model, are one
    `MetadataError` line naming the file, from `read_metadata` and from `Classifier`."""
    with_meta, _ = tiny_pair
    data = open(with_meta, "rb").read()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(with_entry(data, METADATA_KEY, b'{"kind": "classif'))
    for read in (read_metadata, Classifier):
        with pytest.raises(MetadataError) as error:
            read(broken)
        message = str(error.value)
        assert "\n" not in message and repr(str(broken)) in message and "not JSON" in message
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b"PK\x03\x04 not a flatbuffer at all")
    with pytest.raises(MetadataError, match=r"foreign\.tflite.*not a TFLite flatbuffer"):
        read_metadata(foreign)


def test_runtimes_refuse_the_other_kind(tiny_pair, tmp_path):
    """An embedding model's file (kind "embedding") is refused by `Classifier` in one line
    pointing to `Embedder`, a classifier's by `Embedder`."""
    from keras_inception.layers import L2Normalize

    inputs = keras.Input((TINY, TINY, 3))
    x = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(inputs))
    embedding = keras.Model(inputs, L2Normalize()(x))
    path = export.export_tflite(embedding, tmp_path / "embedding.tflite")
    assert read_metadata(path).kind == "embedding"
    with pytest.raises(ValueError) as error:
        Classifier(path)
    assert "\n" not in str(error.value)
    assert "is an embedding model" in str(error.value) and "Embedder" in str(error.value)
    assert Embedder(path).embedding_dim == 8
    with pytest.raises(ValueError, match=r"is a classifier.*Classifier"):
        Embedder(tiny_pair[0])


@pytest.mark.slow
def test_facenet_tflite_is_an_embedding_model(tmp_path):
    """FaceNet (standardisation inside) carries kind "embedding" and raw input: `Classifier`
    refuses it in one line, `Embedder` takes its scaling from the file (raw crops in, the
    Keras embeddings out) and refuses a contradicting `standardization`."""
    keras.utils.set_random_seed(0)
    facenet = ki.FaceNet(weights=None, input_shape=(96, 96, 3), include_preprocessing=True)
    path = export.export_tflite(facenet, tmp_path / "facenet.tflite")
    metadata = read_metadata(path)
    assert (metadata.kind, metadata.input_scaling, metadata.image_size, metadata.crop_pct,
            metadata.embedding_dim) == ("embedding", "raw", (96, 96), 1.0, 128)
    with pytest.raises(ValueError) as error:
        Classifier(path)
    assert "\n" not in str(error.value) and "Embedder" in str(error.value)
    embedder = Embedder(path)
    assert (embedder.metadata, embedder.input_scaling, embedder.standardization) == (
        metadata, "raw", None)
    with pytest.raises(ValueError, match=r"standardization='prewhiten'.*input_scaling='raw'"):
        Embedder(path, standardization="prewhiten")
    crops = _pixels(2, size=96)
    np.testing.assert_allclose(embedder.embed(crops), np.asarray(facenet(crops)), atol=1e-5)


# --- int8, ONNX ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_int8_tflite_carries_the_metadata(irv1, irv1_pair, tmp_path):
    """A full-integer export with uint8 input carries the model's metadata: its input
    scaling stays "inception" (the input tensor's quantization encodes [-1, 1]), and the
    `Classifier` of the file gives its names and scores close to the float file's."""
    calibration = preprocess_input(_pixels(8, seed=3).astype(np.float32))
    with pytest.warns(export.QuantizationWarning):
        path = export.export_tflite(irv1, tmp_path / "int8.tflite", quantization="int8",
                                    representative_data=calibration, input_type="uint8")
    assert read_metadata(path) == META
    classifier = Classifier(path)
    assert classifier.class_names == list(NAMES) and classifier.input_dtype == np.uint8
    scale, zero_point = classifier.interpreter.get_input_details()[0]["quantization"]
    assert (-zero_point * scale, (255 - zero_point) * scale) == pytest.approx((-1, 1), abs=0.02)
    images = _pixels(8, seed=3)
    got = classifier.predict(images)
    expected = Classifier(irv1_pair[0]).predict(images)
    assert np.abs(got - expected).max() <= 0.1


@pytest.mark.slow
def test_onnx_carries_the_metadata(irv1, tmp_path):
    """The ONNX model holds one `metadata_props` entry with the metadata, is still a valid
    model, and onnxruntime computes what Keras does."""
    import onnx
    import onnxruntime

    path = export.export_onnx(irv1, tmp_path / "m.onnx")
    assert read_metadata(path) == META
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = preprocess_input(_pixels(2).astype(np.float32))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, np.asarray(irv1(x, training=False)), atol=1e-4)


def test_onnx_reader_errors_are_one_line(tmp_path, monkeypatch):
    """A file that is not an ONNX model is a `MetadataError` naming it; without the `onnx`
    package, an ImportError saying how to install the extra."""
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not an onnx model")
    with pytest.raises(MetadataError, match=r"foreign\.onnx.*not an ONNX model"):
        read_metadata(foreign)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"foreign\.onnx.*pip install 'keras_inception\[onnx\]'"):
        read_metadata(foreign)
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        read_metadata(tmp_path / "missing.tflite")
