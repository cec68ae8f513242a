"""Architecture facts: parameter counts, GMACs, shapes, names, minimum size."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from support.networks import EXPECTED

import keras_inception as ki
from keras_inception.analysis import count_macs
from keras_inception.models import get_builder
from keras_inception.registry import BUILTIN_MODELS, builder_exports, classifier_names, model_names

CLASSIFIERS = classifier_names()
BUILDERS = {name: get_builder(name) for name in CLASSIFIERS}


@pytest.fixture(scope="module")
def full_models():
    return {name: b(weights=None) for name, b in BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_param_count_and_macs(full_models, name):
    params, gmacs = EXPECTED[name].params, EXPECTED[name].gmacs
    model = full_models[name]
    assert model.count_params() == params
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, abs=0.01)
    assert model.output.shape == (None, 1000)


@functools.cache
def no_top_model(name: str):
    """`name` without its head at 299x299, built once for the tests that read it."""
    return BUILDERS[name](include_top=False, weights=None, input_shape=(299, 299, 3))


def test_ir_v2_no_top_params():
    model = no_top_model("inception_resnet_v2")
    assert model.count_params() == 54_336_736
    assert model.output.shape == (None, 8, 8, 1536)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_feature_map_shape_no_top(name):
    channels = EXPECTED[name].channels
    model = no_top_model(name)
    assert model.output.shape == (None, 8, 8, channels)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pooling_gives_vectors(name, pooling):
    model = BUILDERS[name](include_top=False, weights=None, pooling=pooling)
    assert model.output.shape == (None, EXPECTED[name].channels)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_minimum_input_size(name):
    model = BUILDERS[name](include_top=False, weights=None, input_shape=(75, 75, 3), pooling="avg")
    out = model(np.zeros((1, 75, 75, 3), np.float32))
    assert out.shape == (1, EXPECTED[name].channels)
    with pytest.raises(ValueError, match="input_shape"):
        BUILDERS[name](include_top=False, weights=None, input_shape=(74, 74, 3))


def test_layer_names_follow_keras_applications(full_models):
    names = {layer.name for layer in full_models["inception_resnet_v2"].layers}
    for expected in ["mixed_5b", "block35_1_mixed", "block35_1_conv", "block35_1", "block35_10",
                     "mixed_6a", "block17_20", "mixed_7a", "block8_10", "conv_7b", "conv_7b_bn",
                     "conv_7b_ac", "avg_pool", "predictions", "conv_1a", "conv_2b", "conv_4a"]:
        assert expected in names, expected
    v4 = {layer.name for layer in full_models["inception_v4"].layers}
    assert {"mixed_3a", "mixed_4a", "mixed_5a", "mixed_5e", "mixed_6h", "mixed_7d"} <= v4
    v1 = {layer.name for layer in full_models["inception_resnet_v1"].layers}
    assert {"conv_4b", "block35_5", "block17_10", "block8_5"} <= v1
    assert "block35_6" not in v1 and "block8_6" not in v1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_lambda_and_one_scaled_residual_per_block(full_models, name):
    import keras

    model = full_models[name]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    residuals = [layer for layer in model.layers if isinstance(layer, ki.layers.ScaledResidual)]
    assert len(residuals) == EXPECTED[name].residual_blocks
    if name == "inception_resnet_v2":
        last = model.get_layer("block8_10")
        assert last.scale == 1.0 and last.get_config()["activation"] == "linear"
        assert model.get_layer("block35_1").scale == pytest.approx(0.17)


@pytest.mark.slow
def test_include_preprocessing_matches_preprocess_input(small_models):
    base = small_models["inception_resnet_v1"]
    raw = ki.InceptionResNetV1(weights=None, input_shape=(96, 96, 3), classes=5,
                               include_preprocessing=True)
    raw.set_weights(base.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(raw(images, training=False)),
        np.asarray(base(ki.preprocess_input(images), training=False)),
        atol=1e-6,
    )


def test_input_tensor_is_used():
    import keras

    inp = keras.Input((96, 96, 3))
    model = ki.InceptionResNetV2(include_top=False, weights=None, input_tensor=inp, pooling="avg")
    assert model.inputs[0] is inp
    assert model.output.shape == (None, 1536)


def test_head_dropout_inactive_at_inference(small_models):
    model = small_models["inception_v4"]
    assert model.get_layer("dropout").rate == pytest.approx(0.2)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


def test_every_classifier_has_expected_facts():
    """The tests parametrized over the registry check each network against these facts."""
    assert sorted(EXPECTED) == sorted(CLASSIFIERS)
    assert {"inception_v4", "inception_resnet_v1", "inception_resnet_v2"} <= set(CLASSIFIERS)
    assert "facenet" in model_names() and "facenet" not in CLASSIFIERS


@pytest.mark.parametrize("name", model_names())
def test_builtin_entry_names_the_builder_and_its_module(name):
    """One line in registry.BUILTIN_MODELS names a network's module and builder; the
    package's exports and `get_builder` agree with it."""
    import importlib

    import keras_inception.models as models

    entry = BUILTIN_MODELS[name]
    builder = get_builder(name)
    assert builder.__name__ == entry.builder and builder.__module__ == entry.module
    assert getattr(importlib.import_module(entry.module), entry.builder) is builder
    assert getattr(ki, entry.builder) is builder and getattr(models, entry.builder) is builder
    assert builder_exports()[entry.builder] == entry.module
    assert entry.builder in ki.__all__ and entry.builder in models.__all__
    assert ki.get_spec(name).name == name
    # The network's module and the shared ones are attributes of the package, as before.
    assert getattr(models, entry.module.rpartition(".")[2]).SPEC is ki.get_spec(name)
    assert callable(models.blocks.conv2d_bn) and callable(models.builder.build_model)
