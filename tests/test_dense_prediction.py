"""Dense-prediction options of the builders: `align_feature_maps` and `output_stride`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from support.helpers import randomize_weights

import keras_inception as ki
from keras_inception import _compat
from keras_inception.registry import classifier_names, get_spec

SIZES = (224, 320, 352)


def level_sizes(extractor: keras.Model, size: int) -> list[int]:
    shapes = extractor.compute_output_shape((1, size, size, 3))
    return [shape[1] for shape in shapes]


def conv_and_pool_geometry(model: keras.Model) -> list[tuple]:
    """(kind, kernel, strides, padding, dilation) of every conv and pool, in build order."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            rows.append(("conv", layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate))
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            rows.append((type(layer).__name__, layer.pool_size, layer.strides, layer.padding, None))
    return rows


@pytest.fixture(scope="module")
def applications_ir_v2() -> keras.Model:
    """keras.applications' IR-v2 with random weights (the layout of its ImageNet files)."""
    reference = keras.applications.InceptionResNetV2(weights=None, include_top=False,
                                                     input_shape=(299, 299, 3))
    randomize_weights(reference, seed=11)
    return reference


@pytest.mark.slow
def test_defaults_build_the_released_geometry(applications_ir_v2):
    """Default options: every conv and pool as keras.applications builds them (and the
    explicit defaults build the same model); the parity tests check the numbers."""
    ours = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(299, 299, 3))
    reference = conv_and_pool_geometry(applications_ir_v2)
    assert len(reference) > 240
    assert conv_and_pool_geometry(ours) == reference
    explicit = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(299, 299, 3),
                                    align_feature_maps=False, output_stride=32)
    assert explicit.get_config() == ours.get_config()


@pytest.mark.parametrize("name", classifier_names())
def test_aligned_maps_are_exact_fractions_of_the_input(name):
    model = get_spec(name).builder(weights=None, include_top=False, align_feature_maps=True)
    extractor = ki.feature_extractor(model)
    assert [info.reduction for info in extractor.feature_info] == [2, 4, 8, 16, 32]
    for size in SIZES:
        assert level_sizes(extractor, size) == [size // 2, size // 4, size // 8, size // 16, size // 32]


@pytest.mark.parametrize("name, output_stride", [
    ("inception_resnet_v2", 16), ("inception_resnet_v2", 8), ("inception_v4", 8),
    ("inception_resnet_v1", 8),
])
def test_output_stride_keeps_the_last_maps_at_it(name, output_stride):
    model = get_spec(name).builder(weights=None, include_top=False, align_feature_maps=True,
                                   output_stride=output_stride)
    extractor = ki.feature_extractor(model)
    reductions = [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    assert [info.reduction for info in extractor.feature_info] == reductions
    for size in (224, 320):
        assert level_sizes(extractor, size) == [size // r for r in reductions]
    dilations = {max(layer.dilation_rate) for layer in model.layers
                 if isinstance(layer, keras.layers.Conv2D)}
    assert dilations == {1, 2} if output_stride == 16 else {1, 2, 4}


def test_output_stride_without_alignment_keeps_the_maps_consistent():
    model = ki.InceptionResNetV2(weights=None, include_top=False, output_stride=8)
    extractor = ki.feature_extractor(model)
    assert level_sizes(extractor, 299) == [147, 71, 35, 35, 35]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 80, 80, 3)).astype("float32")
    assert tuple(model(x).shape) == (1, 7, 7, 1536)  # 80 -> 39 -> 37 -> 18 -> 16 -> 7


@pytest.mark.slow
def test_imagenet_layout_weights_load_into_the_dilated_model(tmp_path, applications_ir_v2):
    """keras.applications' release layout loads unchanged into IR-v2 at output stride 8."""
    path = tmp_path / "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _compat.save_legacy_h5_weights(applications_ir_v2, path)
    dilated = ki.InceptionResNetV2(weights=str(path), include_top=False, input_shape=(224, 224, 3),
                                   align_feature_maps=True, output_stride=8)
    assert len(dilated.weights) == len(applications_ir_v2.weights)
    for got, expected in zip(dilated.weights, applications_ir_v2.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 224, 224, 3)).astype("float32")
    features = np.asarray(dilated(x))
    assert features.shape == (1, 28, 28, 1536) and np.std(features) > 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"align_feature_maps": "yes"}, r"align_feature_maps='yes'"),
    ({"output_stride": 4}, r"one of \(8, 16, 32\); received output_stride=4"),
    ({"output_stride": True}, r"received output_stride=True"),
])
def test_bad_dense_options_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ki.InceptionResNetV1(weights=None, include_top=False, **kwargs)
