"""keras.applications' Inception-ResNet-v2 weight files load into our IR-v2 unchanged."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from support.helpers import randomize_weights

import keras_inception as ki
from keras_inception import _compat

SHAPE = (96, 96, 3)


def save_release_layout(model: keras.Model, path) -> None:
    """The legacy (Keras 2) h5 layout of the keras.applications release files."""
    _compat.save_legacy_h5_weights(model, path)


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
def test_keras_applications_release_file_loads(tmp_path, include_top):
    reference = keras.applications.InceptionResNetV2(
        weights=None, include_top=include_top, input_shape=SHAPE, classifier_activation=None
    )
    randomize_weights(reference, seed=7)
    suffix = "" if include_top else "_notop"
    path = tmp_path / f"inception_resnet_v2_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    save_release_layout(reference, path)

    ours = ki.InceptionResNetV2(
        weights=str(path), include_top=include_top, input_shape=SHAPE, classifier_activation=None
    )
    x = np.random.default_rng(3).uniform(-1, 1, (2, *SHAPE)).astype("float32")
    expected = np.asarray(reference(x, training=False))
    got = np.asarray(ours(x, training=False))
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-5
    # Logits (or features) of a real spread: a wrong or partial load would show.
    assert np.std(expected) > 0.1


@pytest.mark.slow
def test_weights_h5_round_trip(tmp_path, small_models):
    model = small_models["inception_resnet_v2"]
    path = tmp_path / "irv2.weights.h5"
    model.save_weights(path)
    clone = ki.InceptionResNetV2(weights=str(path), input_shape=(96, 96, 3), classes=5)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(clone(x), model(x), atol=1e-6)


def test_incompatible_file_error_names_the_file(tmp_path, small_models):
    path = tmp_path / "v4.weights.h5"
    small_models["inception_v4"].save_weights(path)
    with pytest.raises(ValueError, match="v4.weights.h5"):
        ki.InceptionResNetV1(weights=str(path), input_shape=(96, 96, 3), classes=5)
