"""The family's presets as keras-hub preset directories: one path (keras-hub's loader), one
network build per load, found by name by keras-hub's base classes offline, `params` in
`metadata.json`, and the model card that `save_to_preset` writes and `upload_preset` uses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
from support.helpers import randomize_weights

import keras_inception as ki
from keras_inception import _compat, registry
from keras_inception._registration import KERAS_HUB_INSTALL_HINT
from keras_inception.keras_hub import (
    InceptionBackbone,
    InceptionImageClassifier,
    InceptionImageClassifierPreprocessor,
    InceptionImageConverter,
    preset_dirs,
)
from keras_inception.keras_hub import _compat as hub_compat
from keras_inception.keras_hub.model_card import model_card
from keras_inception.keras_hub.presets import BACKBONE_PARAMS

SIZE = 75
FAMILY_CLASSES = ("InceptionImageClassifier", "InceptionBackbone",
                  "InceptionImageClassifierPreprocessor", "InceptionImageConverter")


@pytest.fixture
def builds(monkeypatch):
    """Counts the networks built (each Keras functional network makes one InputLayer)."""
    count = [0]
    init = keras.layers.InputLayer.__init__

    def counting_init(self, *args, **kwargs):
        count[0] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.InputLayer, "__init__", counting_init)

    def take() -> int:
        value, count[0] = count[0], 0
        return value

    return take


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """An empty weights cache; the package's loader may not download anything."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(cache))

    def no_download(remote, directory=None):
        raise AssertionError(f"downloaded {remote.url}")

    monkeypatch.setattr("keras_inception.presets.loader.download", no_download)
    return cache


@pytest.fixture
def tiny_preset(monkeypatch, tmp_path):
    """A registry preset `inception_resnet_v1_tiny` (3 classes, 75 px) registered with
    keras-hub, whose release files (with and without the head, random weights) are already
    in the weights cache: loaded by the package's own loader, offline."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(cache))
    network = ki.InceptionResNetV1(weights=None, classes=3, input_shape=(None, None, 3),
                                   classifier_activation=None)
    randomize_weights(network, seed=7)
    files = {}
    for include_top in (True, False):
        fname = f"ir1_tiny_{'top' if include_top else 'notop'}.h5"
        source = network if include_top else keras.Model(network.input,
                                                         network.get_layer("avg_pool").output)
        _compat.save_legacy_h5_weights(source, cache / fname)
        md5 = hashlib.md5((cache / fname).read_bytes()).hexdigest()
        files[include_top] = registry.RemoteFile(f"http://127.0.0.1:9/{fname}", fname, md5)
    spec = registry.get_spec("inception_resnet_v1")
    entry = registry.WeightsPreset(model=spec.name, name="tiny", source="test", description="test",
                                   license="test", classes=3, input_size=SIZE, crop_pct=0.8975,
                                   top=files[True], notop=files[False])
    monkeypatch.setitem(registry.MODELS, spec.name,
                        dataclasses.replace(spec, presets=(*spec.presets, entry)))
    assert "inception_resnet_v1_tiny" in preset_dirs.register_presets()
    yield network
    hub_compat.unregister_presets(["inception_resnet_v1_tiny"], InceptionBackbone)


def test_presets_without_weights_offline_one_build_each(empty_cache, builds):
    """keras-hub's base classes find the presets by name, and every class loads them, with
    load_weights=False: one network built, nothing downloaded (was: the base classes wrote
    the whole preset directory first, weights included, building the network three times)."""
    classifier = keras_hub.models.ImageClassifier.from_preset("inception_resnet_v2_imagenet",
                                                              load_weights=False)
    assert builds() == 1
    assert type(classifier) is InceptionImageClassifier and classifier.num_classes == 1000
    assert classifier.backbone.architecture == "inception_resnet_v2"
    converter = classifier.preprocessor.image_converter
    assert type(converter) is InceptionImageConverter
    assert (converter.image_size, converter.crop_pct) == ((299, 299), 0.8975)
    backbone = keras_hub.models.Backbone.from_preset("facenet_vggface2", load_weights=False)
    assert builds() == 1
    assert type(backbone) is InceptionBackbone and backbone.architecture == "facenet"
    own = InceptionImageClassifier.from_preset("facenet_casia_webface", load_weights=False,
                                               num_classes=5, output_stride=16)
    assert builds() == 1
    assert (own.num_classes, own.backbone.output_stride) == (5, 16)
    assert type(InceptionImageClassifierPreprocessor.from_preset("facenet_vggface2")) is \
        InceptionImageClassifierPreprocessor and builds() == 0
    # The cache holds the preset directories (configs and placeholders) and nothing else.
    assert sorted(os.listdir(empty_cache)) == [preset_dirs.PRESET_DIRS_FOLDER]


@pytest.mark.slow
def test_one_build_per_load_with_weights(tiny_preset, builds):
    """A named preset with its weights: one network per load once the preset directory
    holds them (was: two per load, the package's network and the backbone, then a copy by
    layer name); the first load fills the directory through the package's loader."""
    network = tiny_preset
    x = np.random.default_rng(3).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype("float32")
    first = InceptionImageClassifier.from_preset("inception_resnet_v1_tiny")
    assert builds() == 2  # the classifier, and once ever the package's network for its weights
    np.testing.assert_allclose(np.asarray(first(x)), np.asarray(network(x)), atol=1e-5)
    for load in (lambda: InceptionImageClassifier.from_preset("inception_resnet_v1_tiny"),
                 lambda: keras_hub.models.ImageClassifier.from_preset("inception_resnet_v1_tiny")):
        model = load()
        assert builds() == 1 and type(model) is InceptionImageClassifier
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(network(x)), atol=1e-5)
        converter = model.preprocessor.image_converter
        assert (converter.image_size, converter.crop_pct) == ((SIZE, SIZE), 0.8975)
    backbone = InceptionBackbone.from_preset("inception_resnet_v1_tiny")
    assert builds() == 1
    expected = keras.Model(network.input, network.get_layer("avg_pool").input)(x)
    np.testing.assert_allclose(np.asarray(backbone(x)), np.asarray(expected), atol=1e-5)
    # The backbone's own arguments: still one network, the preset's weights and head.
    dense = InceptionImageClassifier.from_preset("inception_resnet_v1_tiny", output_stride=16)
    assert builds() == 1 and dense.backbone.output_stride == 16
    for layer in [*dense.backbone.layers, dense.output_dense]:
        for got, want in zip(layer.get_weights(), network.get_layer(layer.name).get_weights(),
                             strict=True):
            np.testing.assert_array_equal(got, want)


def test_preset_metadata_has_the_parameter_count(empty_cache, tmp_path):
    """metadata.json of a preset directory (the package's, and one `save_to_preset` writes)
    has `params`, the backbone's count_params(), as keras-hub's `parameter_count`; so has
    the preset's row of keras-hub's preset table."""
    backbone = InceptionBackbone.from_preset("facenet_vggface2", load_weights=False)
    folder = preset_dirs.preset_directory("facenet_vggface2")
    metadata = json.loads((Path(folder) / "metadata.json").read_text())
    assert metadata["params"] == metadata["parameter_count"] == backbone.count_params()
    assert InceptionBackbone.presets["facenet_vggface2"]["metadata"]["params"] == \
        backbone.count_params()
    small = InceptionBackbone("inception_resnet_v1", image_shape=(SIZE, SIZE, 3))
    small.save_to_preset(str(tmp_path / "saved"))
    metadata = json.loads((tmp_path / "saved" / "metadata.json").read_text())
    assert metadata["params"] == metadata["parameter_count"] == small.count_params()


@pytest.mark.parametrize("architecture", registry.model_names())
def test_backbone_params_table_counts_each_architecture(architecture):
    assert BACKBONE_PARAMS[architecture] == InceptionBackbone(architecture).count_params()


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """A 75 px IR-v1 classifier (3 classes) saved by `save_to_preset`."""
    backbone = InceptionBackbone("inception_resnet_v1", image_shape=(SIZE, SIZE, 3))
    converter = InceptionImageConverter(image_size=(SIZE, SIZE), crop_pct=0.875)
    model = InceptionImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=InceptionImageClassifierPreprocessor(image_converter=converter))
    folder = tmp_path_factory.mktemp("kh_preset") / "preset"
    model.save_to_preset(str(folder))
    return model, folder


def test_save_to_preset_writes_the_model_card(saved_classifier):
    model, folder = saved_classifier
    card = (folder / "README.md").read_text()
    assert card == model_card(folder)
    assert KERAS_HUB_INSTALL_HINT in card  # pip install "keras_inception[keras-hub]"
    assert "import keras_inception.keras_hub" in card
    assert "keras_hub.models.ImageClassifier.from_preset(" in card
    for name in FAMILY_CLASSES:
        assert f"keras_inception.keras_hub.{name}" in card
    assert f"Parameters (backbone): {model.backbone.count_params():,}" in card
    assert "**architecture:** inception_resnet_v1" in card


def fake_hub_upload(monkeypatch) -> dict[str, str | None]:
    """`huggingface_hub` as `upload_preset` uses it, offline: a new repository without a
    card; what `upload_folder` would upload as README.md is recorded."""
    import huggingface_hub

    uploaded: dict[str, str | None] = {}

    def upload_folder(repo_id, folder_path):
        card = os.path.join(folder_path, "README.md")
        uploaded["README.md"] = open(card).read() if os.path.exists(card) else None

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, exist_ok: type(
        "Repo", (), {"repo_id": repo_id})())
    monkeypatch.setattr(huggingface_hub, "file_exists", lambda repo_id, filename: False)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return uploaded


def test_upload_preset_uploads_the_family_model_card(monkeypatch, saved_classifier, tmp_path):
    """keras_hub.upload_preset to a new Hugging Face repository (offline here) uploads the
    family's card, not keras-hub's generic one, and leaves it in the directory; another
    family's directory still gets keras-hub's card. Through keras-hub's private
    `create_model_card` / `delete_model_card` (`_compat.use_family_model_cards`): this
    fails if keras-hub stops calling them."""
    _, folder = saved_classifier
    uploaded = fake_hub_upload(monkeypatch)
    keras_hub.upload_preset("hf://someone/inception", str(folder))
    assert uploaded["README.md"] == model_card(folder)
    assert (folder / "README.md").read_text() == model_card(folder)
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        image_shape=(16, 16, 3))
    other = tmp_path / "resnet"
    resnet.save_to_preset(str(other))
    keras_hub.upload_preset("hf://someone/resnet", str(other))
    assert "uploaded using the KerasHub library" in uploaded["README.md"]
    assert "keras_inception" not in uploaded["README.md"]
    assert not (other / "README.md").exists()  # keras-hub removes its own card
