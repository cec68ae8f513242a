"""Architecture facts: parameter counts, GMACs, shapes, names, minimum size."""

from __future__ import annotations

import numpy as np
import pytest

import keras_inception as ki
from keras_inception.analysis import count_macs

BUILDERS = {
    "inception_v4": ki.InceptionV4,
    "inception_resnet_v1": ki.InceptionResNetV1,
    "inception_resnet_v2": ki.InceptionResNetV2,
}
# (params with top, GMACs at 299, channels of the last feature map) from ARCHITECTURES.md.
EXPECTED = {
    "inception_v4": (42_711_400, 12.25, 1536),
    "inception_resnet_v1": (22_769_848, 6.21, 1792),
    "inception_resnet_v2": (55_873_736, 13.16, 1536),
}


@pytest.fixture(scope="module")
def full_models():
    return {name: b(weights=None) for name, b in BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_param_count_and_macs(full_models, name):
    params, gmacs, _ = EXPECTED[name]
    model = full_models[name]
    assert model.count_params() == params
    assert count_macs(model) / 1e9 == pytest.approx(gmacs, abs=0.01)
    assert model.output.shape == (None, 1000)


def test_ir_v2_no_top_params():
    model = ki.InceptionResNetV2(include_top=False, weights=None, input_shape=(299, 299, 3))
    assert model.count_params() == 54_336_736
    assert model.output.shape == (None, 8, 8, 1536)


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v1"])
def test_feature_map_shape_no_top(name):
    channels = EXPECTED[name][2]
    model = BUILDERS[name](include_top=False, weights=None, input_shape=(299, 299, 3))
    assert model.output.shape == (None, 8, 8, channels)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pooling_gives_vectors(name, pooling):
    model = BUILDERS[name](include_top=False, weights=None, pooling=pooling)
    assert model.output.shape == (None, EXPECTED[name][2])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_minimum_input_size(name):
    model = BUILDERS[name](include_top=False, weights=None, input_shape=(75, 75, 3), pooling="avg")
    out = model(np.zeros((1, 75, 75, 3), np.float32))
    assert out.shape == (1, EXPECTED[name][2])
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
    expected_blocks = {"inception_v4": 0, "inception_resnet_v1": 20, "inception_resnet_v2": 40}
    assert len(residuals) == expected_blocks[name]
    if name == "inception_resnet_v2":
        last = model.get_layer("block8_10")
        assert last.scale == 1.0 and last.get_config()["activation"] == "linear"
        assert model.get_layer("block35_1").scale == pytest.approx(0.17)


def test_include_preprocessing_matches_preprocess_input(small_models):
    base = small_models["inception_resnet_v1"]
    raw = ki.InceptionResNetV1(weights=None, input_shape=(96, 96, 3), classes=5,
                               include_preprocessing=True)
    raw.set_weights(base.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(
        raw.predict(images, verbose=0),
        base.predict(ki.preprocess_input(images), verbose=0),
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
