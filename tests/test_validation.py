"""Every invalid argument is refused up front with a message naming it."""

from __future__ import annotations

import numpy as np
import pytest

import keras_inception as ki

CASES = [
    # (builder kwargs, exception, text the message must contain)
    (dict(weights=None, input_shape=(74, 74, 3), include_top=False), ValueError, "input_shape"),
    (dict(weights=None, input_shape=(299, 74, 3), include_top=False), ValueError, "input_shape"),
    (dict(weights="imagenet", input_shape=(299, 299, 1), include_top=False), ValueError, "input_shape"),
    (dict(weights="imagenet", classes=10), ValueError, "classes"),
    (dict(weights="imagenet", input_shape=(224, 224, 3)), ValueError, "input_shape"),
    (dict(weights=None, include_top=False, pooling="mean"), ValueError, "pooling"),
    (dict(weights="imagenet", classifier_activation="sigmoid"), ValueError, "classifier_activation"),
    (dict(weights="resnet"), ValueError, "weights"),
    (dict(weights="/no/such/file.weights.h5"), FileNotFoundError, "weights"),
    (dict(weights=None, input_tensor=np.zeros((1, 96, 96, 3)).tolist()), ValueError, "input_tensor"),
    (dict(weights=None, drop_path_rate=1.0), ValueError, "drop_path_rate"),
    (dict(weights=None, drop_path_rate=-0.1), ValueError, "drop_path_rate"),
    (dict(weights=None, dropout_rate=1.5), ValueError, "dropout_rate"),
    (dict(weights=None, classes=0), ValueError, "classes"),
    (dict(weights=None, input_shape=(96, 96)), ValueError, "input_shape"),
]


@pytest.mark.parametrize("kwargs,error,text", CASES, ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_invalid_arguments(kwargs, error, text):
    with pytest.raises(error, match=text) as info:
        ki.InceptionResNetV2(**kwargs)
    message = str(info.value)
    # The message shows what was received.
    for key, value in kwargs.items():
        if key == text and not isinstance(value, list):
            assert repr(value) in message or str(value) in message, message


def test_inception_resnet_v1_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="No public ImageNet weights") as info:
        ki.InceptionResNetV1(weights="imagenet")
    assert "weights" in str(info.value)


def test_input_tensor_and_conflicting_input_shape():
    import keras

    with pytest.raises(ValueError, match="input_shape"):
        ki.InceptionResNetV1(weights=None, input_tensor=keras.Input((96, 96, 3)),
                             input_shape=(128, 128, 3))


def test_small_input_tensor_refused():
    import keras

    with pytest.raises(ValueError, match="input_tensor"):
        ki.InceptionResNetV1(weights=None, include_top=False, input_tensor=keras.Input((64, 64, 3)))
