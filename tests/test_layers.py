"""ScaledResidual: maths, serialization, stochastic depth."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_inception as ki
from keras_inception.layers import ScaledResidual


def test_scaled_residual_formula():
    rng = np.random.default_rng(0)
    shortcut = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    residual = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    out = ScaledResidual(0.17)([shortcut, residual])
    np.testing.assert_allclose(out, np.maximum(shortcut + 0.17 * residual, 0), atol=1e-6)
    linear = ScaledResidual(1.0, activation=None)([shortcut, residual])
    np.testing.assert_allclose(linear, shortcut + residual, atol=1e-6)


def test_config_round_trip_and_registration():
    layer = ScaledResidual(0.2, activation="relu", drop_path_rate=0.1, name="block8_3")
    config = layer.get_config()
    assert config["scale"] == 0.2 and config["drop_path_rate"] == 0.1 and config["activation"] == "relu"
    clone = ScaledResidual.from_config(config)
    assert clone.scale == 0.2 and clone.name == "block8_3"
    assert keras.saving.get_registered_name(ScaledResidual) == "keras_inception>ScaledResidual"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ScaledResidual) and restored.drop_path_rate == 0.1


def test_weightless_without_drop_path():
    assert ScaledResidual(0.1).weights == []
    assert ScaledResidual(0.1, drop_path_rate=0.2).weights == []  # seed state is not a weight


def test_invalid_drop_path_rate():
    with pytest.raises(ValueError, match="drop_path_rate"):
        ScaledResidual(0.1, drop_path_rate=1.0)


def test_compute_dtype_under_mixed_precision():
    layer = ScaledResidual(0.17, dtype="mixed_float16")
    x = np.ones((1, 2, 2, 3), "float16")
    out = layer([x, x])
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(np.asarray(out, "float32"), 1.17, rtol=1e-3)


@pytest.mark.slow
def test_drop_path_training_vs_inference():
    x = np.random.default_rng(0).uniform(-1, 1, (4, 96, 96, 3)).astype("float32")
    reference = ki.InceptionResNetV1(weights=None, input_shape=(96, 96, 3), classes=5)
    dropped = ki.InceptionResNetV1(weights=None, input_shape=(96, 96, 3), classes=5,
                                   drop_path_rate=0.3, dropout_rate=0.0)
    dropped.set_weights(reference.get_weights())
    rates = [layer.drop_path_rate for layer in dropped.layers if isinstance(layer, ScaledResidual)]
    assert rates[0] == pytest.approx(0.3 / 20) and rates[-1] == pytest.approx(0.3)
    assert np.all(np.diff(rates) > 0)  # linear increase with depth
    # Inference: deterministic and identical to the model without stochastic depth.
    infer_a = np.asarray(dropped(x, training=False))
    infer_b = np.asarray(dropped(x, training=False))
    np.testing.assert_array_equal(infer_a, infer_b)
    np.testing.assert_allclose(infer_a, reference(x, training=False), atol=1e-6)
    # Training: the random per-sample drops change the output between calls.
    train_a = np.asarray(dropped(x, training=True))
    train_b = np.asarray(dropped(x, training=True))
    assert np.max(np.abs(train_a - train_b)) > 1e-4


def test_inception_v4_refuses_drop_path():
    with pytest.raises(ValueError, match="drop_path_rate"):
        ki.InceptionV4(weights=None, drop_path_rate=0.1)
