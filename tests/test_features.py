"""feature_extractor: taps, shapes at small and odd sizes, names, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from support.networks import EXPECTED

import keras_inception as ki
from keras_inception.features import feature_info, model_family
from keras_inception.registry import classifier_names, get_spec

CHANNELS = {name: EXPECTED[name].feature_channels for name in classifier_names()}
REDUCTIONS = (2, 4, 8, 16, 32)


def expected_sizes(family: str, n: int) -> list[int]:
    """Spatial size of each level for an n x n input, from the stems' arithmetic."""
    return EXPECTED[family].level_sizes(n)


@pytest.mark.parametrize("family", sorted(CHANNELS))
def test_levels_of_models_with_top(small_models, family):
    model = small_models[family]  # 96x96, include_top=True
    assert model_family(model) == family
    extractor = ki.feature_extractor(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    outputs = extractor(x, training=False)
    assert extractor.output_names == [f"feature_{i}" for i in range(5)]
    sizes = expected_sizes(family, 96)
    for i, (fmap, info) in enumerate(zip(outputs, extractor.feature_info, strict=True)):
        assert tuple(fmap.shape) == (2, sizes[i], sizes[i], CHANNELS[family][i])
        assert (info.index, info.name, info.num_chs, info.reduction) == (
            i, f"feature_{i}", CHANNELS[family][i], REDUCTIONS[i]
        )
        assert info.layer == get_spec(family).feature_taps[i].layer
    # The extractor shares the classifier's weights (no copies).
    assert {id(v) for v in extractor.weights} <= {id(v) for v in model.weights}


def test_out_indices_subset(small_models):
    model = small_models["inception_resnet_v2"]
    extractor = ki.feature_extractor(model, out_indices=(3, 1))
    assert extractor.output_names == ["feature_3", "feature_1"]
    assert [i.num_chs for i in extractor.feature_info] == [1088, 192]
    assert [i.num_chs for i in feature_info(model, (3, 1))] == [1088, 192]


@pytest.fixture(scope="module")
def headless_v1():
    """Inception-ResNet-v1 without head and with a free input size."""
    return ki.InceptionResNetV1(include_top=False, weights=None)


@pytest.mark.parametrize("size", [(75, 75), (128, 128), (99, 161)])
def test_any_input_size_from_75(headless_v1, size):
    extractor = ki.feature_extractor(headless_v1)
    h, w = size
    x = np.random.default_rng(1).uniform(-1, 1, (1, h, w, 3)).astype("float32")
    outputs = extractor(x, training=False)
    hs, ws = expected_sizes("inception_resnet_v1", h), expected_sizes("inception_resnet_v1", w)
    for i, fmap in enumerate(outputs):
        assert tuple(fmap.shape) == (1, hs[i], ws[i], CHANNELS["inception_resnet_v1"][i])
    # The last level is the network's own output (the tap is the final block8).
    np.testing.assert_allclose(
        np.asarray(outputs[-1]), np.asarray(headless_v1(x, training=False)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "out_indices", [(5,), (), (0, 0), (-1,), "01", (True,), 3, (1.0,)],
    ids=["too-big", "empty", "repeated", "negative", "string", "bool", "int", "float"],
)
def test_bad_out_indices(small_models, out_indices):
    with pytest.raises(ValueError, match=r"`out_indices` must be .* received out_indices="):
        ki.feature_extractor(small_models["inception_v4"], out_indices=out_indices)


def test_foreign_model_is_refused():
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv_1a")(inputs))
    with pytest.raises(ValueError, match="not one of keras_inception's networks"):
        ki.feature_extractor(model)
    with pytest.raises(ValueError, match="Expected a keras.Model"):
        ki.feature_extractor("inception_v4")
