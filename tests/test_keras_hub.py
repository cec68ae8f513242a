"""The keras-hub family (`keras_inception.keras_hub`): backbone, converter, preprocessor,
classifier, their configs and presets (named, `hf://timm/...` offline, `save_to_preset`).

keras-hub is installed wherever the tests run (the `keras-hub` extra): nothing here is
skipped without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import keras
import keras_hub
import numpy as np
import pytest
from support.helpers import LoopbackServer, randomize_weights, timm_parity_recipes

import keras_inception as ki
from keras_inception import _compat, registry
from keras_inception.convert import load_timm_weights
from keras_inception.embeddings import preprocess_input as face_preprocess_input
from keras_inception.keras_hub import (
    InceptionBackbone,
    InceptionImageClassifier,
    InceptionImageClassifierPreprocessor,
    InceptionImageConverter,
    preset_names,
    resolve_preset,
)
from keras_inception.preprocessing import center_crop_tf, crop_pixels, preprocess_input

SIZE = 96
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex snapshot name


def images(batch: int = 2, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Network inputs in [-1, 1] (already preprocessed)."""
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def pixels(shape: tuple, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB picture (little bicubic overshoot, little aliasing)."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    picture = [127.5 + 100 * np.sin(rows / 17 + p) * np.cos(cols / 23 + 2 * p) for p in phase]
    return np.stack(picture, axis=-1).round().astype("uint8")


def pyramid(backbone: InceptionBackbone, x: np.ndarray) -> dict[str, np.ndarray]:
    outputs = keras.Model(backbone.input, backbone.pyramid_outputs)(x)
    return {key: np.asarray(value) for key, value in outputs.items()}


@pytest.fixture(scope="module")
def ir2():
    """The package's IR-v2 with its 1000-class head (as the ImageNet preset), random weights."""
    model = ki.InceptionResNetV2(weights=None, input_shape=(None, None, 3),
                                 classifier_activation=None)
    randomize_weights(model, seed=1)
    return model


@pytest.fixture(scope="module")
def classifier(ir2):
    return InceptionImageClassifier.from_network(ir2)


@pytest.fixture(scope="module")
def dense_ir1():
    """The package's IR-v1 with align_feature_maps=True, output_stride=16, random weights."""
    source = ki.InceptionResNetV1(weights=None, include_top=False, input_shape=(None, None, 3),
                                  align_feature_maps=True, output_stride=16)
    randomize_weights(source, seed=2)
    return source


@pytest.fixture(scope="module")
def small_classifier(dense_ir1):
    """A 3-class classifier on the dense IR-v1 backbone (cheaper to save and rebuild)."""
    backbone = InceptionBackbone.from_network(dense_ir1, align_feature_maps=True, output_stride=16)
    converter = InceptionImageConverter(image_size=(SIZE, SIZE), crop_pct=0.875)
    model = InceptionImageClassifier(
        backbone=backbone, num_classes=3, activation="softmax", dropout=0.1,
        preprocessor=InceptionImageClassifierPreprocessor(image_converter=converter))
    randomize_weights(model.output_dense, seed=4)
    return model


# --- the networks ---


def test_classifier_and_pyramid_equal_the_package_model(ir2, classifier):
    x = images()
    np.testing.assert_allclose(np.asarray(classifier(x)), np.asarray(ir2(x)), atol=1e-5)
    backbone = classifier.backbone
    assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
    assert classifier.output_dense.name == "predictions" and classifier.num_classes == 1000
    features = ki.feature_extractor(ir2)(x)
    maps = pyramid(backbone, x)
    assert list(maps) == ["P1", "P2", "P3", "P4", "P5"]
    for got, expected in zip(maps.values(), features, strict=True):
        np.testing.assert_allclose(got, np.asarray(expected), atol=1e-5)
    # The backbone's layers are the builder's, by name.
    body = {layer.name for layer in backbone.layers}
    assert body <= {layer.name for layer in ir2.layers} and "conv_7b_ac" in body
    assert backbone.output.shape[-1] == 1536


def test_facenet_backbone_ends_with_its_linear_block():
    """FaceNet's body ends with its linear block8_6; its taps are feature_extractor's."""
    facenet = ki.FaceNet(weights=None, input_shape=(None, None, 3))
    randomize_weights(facenet, seed=3)
    x = images(batch=1)
    backbone = InceptionBackbone.from_network(facenet)
    assert backbone.layers[-1].name == "block8_6" and backbone.architecture == "facenet"
    expected = ki.feature_extractor(facenet)(x)
    for got, want in zip(pyramid(backbone, x).values(), expected, strict=True):
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
    pooled = keras.Model(facenet.input, facenet.get_layer("avg_pool").output)(x)
    np.testing.assert_allclose(np.asarray(backbone(x)).mean(axis=(1, 2)), np.asarray(pooled),
                               atol=1e-5)


def test_dense_geometry_transfers_and_saves(tmp_path, dense_ir1, small_classifier):
    """align_feature_maps=True, output_stride=16: equal to the package's builder with the
    same options; a `.keras` file of the backbone reloads in safe mode, bit-exact."""
    backbone = small_classifier.backbone
    assert (backbone.align_feature_maps, backbone.output_stride) == (True, 16)
    x = images(batch=1)
    out = np.asarray(backbone(x))
    np.testing.assert_allclose(out, np.asarray(dense_ir1(x)), atol=1e-5)
    maps = pyramid(backbone, x)
    assert [maps[key].shape[1] for key in maps] == [48, 24, 12, 6, 6]  # P4 and P5 at stride 16
    for got, want in zip(maps.values(), ki.feature_extractor(dense_ir1)(x), strict=True):
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is InceptionBackbone
    assert restored.get_config() == backbone.get_config()
    np.testing.assert_array_equal(np.asarray(restored(x)), out)


def test_new_head_on_a_preset_backbone_with_a_dtype():
    """`num_classes` puts a new head on a preset's backbone (here FaceNet's body, without its
    weights); `dtype` reaches every layer, and the global policy is left as it was."""
    before = keras.config.dtype_policy().name
    model = InceptionImageClassifier.from_preset("facenet_vggface2", num_classes=4, load_weights=False,
                                                 dtype="bfloat16", image_shape=(SIZE, SIZE, 3))
    assert keras.config.dtype_policy().name == before
    backbone = model.backbone
    assert backbone.architecture == "facenet" and backbone.input.shape == (None, SIZE, SIZE, 3)
    assert {layer.dtype_policy.name for layer in backbone.layers[1:]} == {"bfloat16"}
    assert backbone.get_config()["dtype"]["config"]["name"] == "bfloat16"
    assert model.num_classes == 4 and model.output_dense.dtype_policy.name == "bfloat16"
    assert model.preprocessor.image_converter.standardization == "fixed"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown `architecture` 'inception_v3'"):
        InceptionBackbone("inception_v3")
    with pytest.raises(ValueError, match="`output_stride` must be one of"):
        InceptionBackbone("inception_resnet_v1", output_stride=4)
    with pytest.raises(ValueError, match="stochastic depth does not apply"):
        InceptionBackbone("inception_v4", drop_path_rate=0.1)


# --- configs and saving ---


def roundtrip(obj):
    config = keras.saving.serialize_keras_object(obj)
    json.dumps(config)  # what a preset directory or a .keras file stores
    return keras.saving.deserialize_keras_object(config, safe_mode=True)


def test_configs_round_trip_in_safe_mode(small_classifier):
    converter = small_classifier.preprocessor.image_converter
    for layer in (converter, small_classifier.preprocessor,
                  InceptionImageConverter.from_preset("facenet_ms_celeb_1m")):
        restored = roundtrip(layer)
        assert type(restored) is type(layer) and restored.get_config() == layer.get_config()
    picture = pixels((120, 200))
    np.testing.assert_array_equal(np.asarray(roundtrip(converter)(picture)),
                                  np.asarray(converter(picture)))
    restored = roundtrip(small_classifier)  # the backbone, preprocessor and converter inside
    assert type(restored) is InceptionImageClassifier
    assert type(restored.backbone) is InceptionBackbone
    assert restored.backbone.get_config() == small_classifier.backbone.get_config()
    assert restored.preprocessor.get_config() == small_classifier.preprocessor.get_config()
    config = restored.get_config()
    assert (config["num_classes"], config["activation"], config["dropout"]) == (3, "softmax", 0.1)


def test_save_to_preset_then_from_preset_is_bit_exact(small_classifier, tmp_path):
    small_classifier.save_to_preset(str(tmp_path))
    x = images()
    # Through keras-hub's base class: the registered subclass is found from the files.
    restored = keras_hub.models.ImageClassifier.from_preset(str(tmp_path))
    assert type(restored) is InceptionImageClassifier
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(small_classifier(x)))
    assert restored.preprocessor.get_config() == small_classifier.preprocessor.get_config()


# --- preprocessing ---


def test_converter_is_the_package_evaluation_transform():
    converter = InceptionImageConverter.from_preset("inception_v4_imagenet", image_size=(SIZE, SIZE))
    assert (converter.crop_pct, converter.interpolation) == (0.875, "bicubic")
    square = pixels((150, 150)).astype("float32")  # integers are resized in their dtype
    expected = preprocess_input(np.asarray(center_crop_tf(square, SIZE, 0.875)))
    # The same resize and crop; the package's transform also clips bicubic overshoot.
    np.testing.assert_allclose(np.clip(np.asarray(converter(square)), -1, 1), expected, atol=1e-5)
    wide = pixels((120, 200), seed=1)
    got = np.asarray(converter(wide[None]))[0]
    assert got.shape == (SIZE, SIZE, 3)
    # Another image shape: the same region (up to a pixel's rounding), PIL's pixels.
    assert np.abs(got - preprocess_input(crop_pixels(wide, SIZE, 0.875))).mean() < 0.02
    converter.image_size = (80, 80)  # settable, as keras-hub's
    assert converter(wide).shape == (80, 80, 3) and converter.get_config()["image_size"] == (80, 80)


@pytest.mark.parametrize("preset,mode", [("facenet_ms_celeb_1m", "prewhiten"),
                                         ("facenet_vggface2", "fixed")])
def test_facenet_converters_standardize_as_the_weights_expect(preset, mode):
    converter = InceptionImageConverter.from_preset(preset)
    assert converter.image_size == (160, 160) and converter.standardization == mode
    faces = np.stack([pixels((160, 160), seed=s) for s in (1, 2)])
    np.testing.assert_allclose(np.asarray(converter(faces)), face_preprocess_input(faces, mode),
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(converter(faces[0])), face_preprocess_input(faces[0], mode),
                               atol=1e-5)
    preprocessor = InceptionImageClassifierPreprocessor.from_preset(preset)
    np.testing.assert_allclose(np.asarray(preprocessor(faces)), face_preprocess_input(faces, mode),
                               atol=1e-5)


# --- presets ---


def test_preset_names_come_from_the_registry(monkeypatch):
    expected = [f"{p.model}_{p.name}" for p in registry.all_presets()]
    assert preset_names() == expected and list(InceptionBackbone.presets) == expected
    assert {"inception_resnet_v2_imagenet", "inception_resnet_v2_imagenet_ens_adv",
            "inception_v4_imagenet", "facenet_ms_celeb_1m", "facenet_vggface2",
            "facenet_casia_webface"} <= set(expected)
    assert resolve_preset("hf://timm/inception_v4.tf_in1k") is resolve_preset("inception_v4_imagenet")
    made = resolve_preset("hf://timm/inception_resnet_v2.tf_in1k")
    assert (made.model, made.hf_repo, made.source_format) == (
        "inception_resnet_v2", "timm/inception_resnet_v2.tf_in1k", "timm")
    # A preset added to the registry is a keras-hub preset at once.
    spec = registry.get_spec("inception_v4")
    extra = dataclasses.replace(spec.presets[0], name="mirror")
    monkeypatch.setitem(registry.MODELS, spec.name,
                        dataclasses.replace(spec, presets=(*spec.presets, extra)))
    assert resolve_preset("inception_v4_mirror") is extra


@pytest.mark.parametrize("call", [
    lambda: InceptionBackbone.from_preset("resnet_50_imagenet"),
    lambda: InceptionImageClassifier.from_preset("inception_resnet_v2"),
    lambda: InceptionImageConverter.from_preset("inception_v4_imagenet_ens_adv"),
    lambda: InceptionImageClassifierPreprocessor.from_preset("hf://timm/resnet50.a1_in1k"),
], ids=["backbone", "classifier", "converter", "preprocessor"])
def test_unknown_presets_are_one_error_listing_the_presets(call):
    with pytest.raises(ValueError, match="Unknown preset") as info:
        call()
    for name in preset_names():
        assert name in str(info.value)
    assert "hf://timm/inception_v4.tf_in1k" in str(info.value)


def test_an_embedding_preset_needs_num_classes():
    with pytest.raises(ValueError, match="pass num_classes"):
        InceptionImageClassifier.from_preset("facenet_vggface2")


@pytest.fixture(scope="module")
def timm_states(shared_dir):
    """The timm state dicts of the parity fixtures (timm's keys and shapes, seeded values)."""
    folder, make_state = timm_parity_recipes(shared_dir)

    def state(model: str) -> dict[str, np.ndarray]:
        spec = json.loads((folder / f"{model}.spec.json").read_text())
        return make_state.make_state(spec["params"], spec["seed"])

    return state


def offline_hub_cache(monkeypatch, folder, repo: str, state: dict) -> None:
    """A Hugging Face cache holding `repo`'s model.safetensors, and the hub offline."""
    from huggingface_hub import constants
    from safetensors.numpy import save_file

    cached = folder / ("models--" + repo.replace("/", "--"))
    snapshot = cached / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(COMMIT)
    save_file(state, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["inception_v4", "inception_resnet_v2"])
def test_timm_checkpoints_offline_through_the_package_converter(monkeypatch, tmp_path, timm_states,
                                                                 model):
    """hf://timm/inception_v4.tf_in1k (the preset inception_v4_imagenet) and
    hf://timm/inception_resnet_v2.tf_in1k (no preset) from a pre-filled Hugging Face
    cache: converted by the package's timm converter, equal to the package's network."""
    state = timm_states(model)
    offline_hub_cache(monkeypatch, tmp_path / "hf_cache", f"timm/{model}.tf_in1k", state)
    backbone = InceptionBackbone.from_preset(f"hf://timm/{model}.tf_in1k")
    assert backbone.architecture == model
    reference = registry.get_spec(model).builder(weights=None, include_top=False,
                                                 input_shape=(SIZE, SIZE, 3))
    if model == "inception_v4":  # the preset, now converted into the package's cache
        reference = ki.InceptionV4(weights="imagenet", include_top=False, input_shape=(SIZE, SIZE, 3))
    else:
        load_timm_weights(reference, state)
    x = images(batch=1)
    np.testing.assert_allclose(np.asarray(backbone(x)), np.asarray(reference(x)), atol=1e-5)
    converter = InceptionImageConverter.from_preset(f"hf://timm/{model}.tf_in1k")
    assert converter.image_size == (299, 299) and converter.interpolation == "bicubic"


def point_preset_at(monkeypatch, server: LoopbackServer, folder, model: keras.Model) -> None:
    """Serves `model` as inception_resnet_v2's "imagenet" release file with its head."""
    fname = "inception_resnet_v2_top.h5"
    _compat.save_legacy_h5_weights(model, folder / fname)
    remote = registry.RemoteFile(server.url(fname), fname,
                                 hashlib.md5((folder / fname).read_bytes()).hexdigest())
    spec = registry.get_spec("inception_resnet_v2")
    presets = tuple(dataclasses.replace(p, top=remote) if p.name == "imagenet" else p
                    for p in spec.presets)
    monkeypatch.setitem(registry.MODELS, spec.name, dataclasses.replace(spec, presets=presets))


@pytest.mark.slow
def test_named_preset_through_the_package_loader(monkeypatch, tmp_path, ir2):
    """InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet"): the release
    file downloaded and checked by the package's loader (here from a loopback server),
    the 1000-class head copied into the classifier's."""
    server = LoopbackServer(str(tmp_path))
    try:
        point_preset_at(monkeypatch, server, tmp_path, ir2)
        classifier = InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet")
        assert server.requests == 1
    finally:
        server.close()
    assert classifier.num_classes == 1000 and classifier.backbone.architecture == "inception_resnet_v2"
    x = images(batch=1)
    np.testing.assert_allclose(np.asarray(classifier(x)), np.asarray(ir2(x)), atol=1e-5)
    converter = classifier.preprocessor.image_converter
    assert (converter.image_size, converter.crop_pct) == ((299, 299), 0.8975)
