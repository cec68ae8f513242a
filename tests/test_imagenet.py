"""preprocess_input and decode_predictions."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_inception as ki


def test_preprocess_uint8_numpy_does_not_modify_input():
    images = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    copy = images.copy()
    out = ki.preprocess_input(images)
    np.testing.assert_array_equal(images, copy)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[-1.0, 127 / 127.5 - 1, 1.0]]]], atol=1e-7)


def test_preprocess_float_numpy_keeps_dtype_and_input():
    images = np.full((1, 2, 2, 3), 255.0, dtype=np.float64)
    out = ki.preprocess_input(images)
    assert out.dtype == np.float64 and np.all(out == 1.0)
    assert np.all(images == 255.0)


def test_preprocess_tensor():
    tensor = keras.ops.convert_to_tensor(np.array([[0, 255]], dtype=np.uint8))
    out = ki.preprocess_input(tensor)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), [[-1.0, 1.0]])


def test_decode_predictions_known_classes():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, [1, 207, 985]] = [0.2, 0.7, 0.1]
    preds[1, [340, 291]] = [0.6, 0.4]
    decoded = ki.decode_predictions(preds, top=3)
    assert [d[1] for d in decoded[0]] == ["golden_retriever", "goldfish", "daisy"]
    assert decoded[0][0] == ("n02099601", "golden_retriever", pytest.approx(0.7))
    assert [d[1] for d in decoded[1][:2]] == ["zebra", "lion"]
    assert len(decoded[1]) == 3


@pytest.mark.parametrize("shape", [(1000,), (2, 10), (2, 1001), (1, 2, 1000)])
def test_decode_predictions_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        ki.decode_predictions(np.zeros(shape))


def test_decode_predictions_never_downloads(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("decode_predictions must not download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    assert ki.decode_predictions(np.eye(1000)[:1], top=1)[0][0][1] == "tench"
