"""The int8 calibration check follows each model's own input: prewhitened face crops
(unbounded) or 'fixed' ones for FaceNet without its standardisation layer, 0-255 pixels for a
model that scales them itself, [-1, 1] for the classifiers; each refusal names the function
that gives the right values. Small random-weights models at 75 px and synthetic crops."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_inception as ki
from keras_inception import embeddings, export
from keras_inception.export.tflite import check_calibration_range

SIZE = 75


def _crops(count: int = 4, seed: int = 0) -> np.ndarray:
    """0-255 'face crops': a smooth gradient per image plus noise (varied means and stds)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, SIZE)[None, :, None, None]
    low = rng.uniform(20, 90, (count, 1, 1, 3))
    high = rng.uniform(150, 240, (count, 1, 1, 3))
    crops = low + (high - low) * ramp + rng.normal(0, 12, (count, SIZE, SIZE, 3))
    return np.clip(crops, 0, 255).astype(np.float32)


def _single(batch: np.ndarray) -> list[np.ndarray]:
    """The calibration list as `export_tflite` hands it to the check: single images."""
    return [image[None] for image in batch]


def _refusal(model, data) -> str:
    with pytest.raises(ValueError) as e:
        check_calibration_range(model, _single(data))
    message = str(e.value)
    assert "\n" not in message and message.startswith("`representative_data` holds values in")
    return message


@pytest.fixture(scope="module")
def models():
    """FaceNet without its standardisation layer ('prewhiten', as ms_celeb_1m, and 'fixed', as
    facenet-pytorch's), the same network without metadata, with the layer, and a classifier."""
    prewhiten = ki.FaceNet(weights=None, input_shape=(SIZE, SIZE, 3))
    return {
        "prewhiten": prewhiten,
        "fixed": ki.FaceNet(weights=None, input_shape=(SIZE, SIZE, 3), standardization="fixed"),
        "unstated": keras.Model(prewhiten.inputs, prewhiten.outputs, name="facenet_plain"),
        "raw": ki.FaceNet(weights=None, input_shape=(SIZE, SIZE, 3), include_preprocessing=True),
        "classifier": ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3),
    }


def test_prewhitened_crops_are_accepted_by_a_prewhiten_facenet(models):
    """Prewhitened crops hold values well outside [-1, 1]: they are what the model takes."""
    data = embeddings.preprocess_input(_crops(), "prewhiten")
    assert data.min() < -1.5 and data.max() > 1.5
    check_calibration_range(models["prewhiten"], _single(data))
    check_calibration_range(models["unstated"], _single(data))
    # A flat crop prewhitens to zeros: accepted too.
    flat = embeddings.preprocess_input(np.full((1, SIZE, SIZE, 3), 90.0), "prewhiten")
    check_calibration_range(models["prewhiten"], _single(np.concatenate([data, flat])))


def test_pixels_for_a_prewhiten_facenet_name_its_standardisation(models):
    message = _refusal(models["prewhiten"], _crops())
    assert "but facenet takes 'prewhiten'-standardised face crops (image 0 has mean" in message
    assert "keras_inception.embeddings.preprocess_input(crops, 'prewhiten')" in message
    assert "keras_inception.preprocessing" not in message
    # 'fixed' crops lie within [-1, 1]: not prewhitened.
    message = _refusal(models["prewhiten"], embeddings.preprocess_input(_crops(), "fixed"))
    assert "not a prewhitened crop (mean 0, std 1)" in message


def test_a_fixed_facenet_takes_fixed_crops_only(models):
    crops = _crops()
    check_calibration_range(models["fixed"], _single(embeddings.preprocess_input(crops, "fixed")))
    message = _refusal(models["fixed"], embeddings.preprocess_input(crops, "prewhiten"))
    assert "takes 'fixed'-standardised face crops" in message
    assert "not a 'fixed' crop (within [-1, 1])" in message
    assert "keras_inception.embeddings.preprocess_input(crops, 'fixed')" in message


def test_a_facenet_without_metadata_takes_either_mode_but_not_both(models):
    crops = _crops()
    prewhitened = embeddings.preprocess_input(crops, "prewhiten")
    fixed = embeddings.preprocess_input(crops, "fixed")
    check_calibration_range(models["unstated"], _single(fixed))
    message = _refusal(models["unstated"], np.concatenate([prewhitened[:2], fixed[2:]]))
    assert "mixes prewhitened crops (image 0) with crops within [-1, 1] (image 2)" in message
    message = _refusal(models["unstated"], crops)
    assert "facenet_plain takes standardised face crops" in message
    assert "keras_inception.embeddings.preprocess_input(crops, mode)" in message
    assert "'prewhiten' for ms_celeb_1m" in message and "'fixed' for vggface2" in message


def test_a_classifier_refuses_pixels_and_prewhitened_crops(models):
    crops = _crops()
    check_calibration_range(models["classifier"], _single(crops / 127.5 - 1.0))
    for data in (crops, embeddings.preprocess_input(crops, "prewhiten")):
        message = _refusal(models["classifier"], data)
        assert "takes images scaled to [-1, 1]" in message
        assert "pass keras_inception.preprocessing.preprocess_input(images)" in message
        assert "embeddings" not in message


def test_a_model_that_standardises_itself_takes_raw_pixels(models):
    crops = _crops()
    check_calibration_range(models["raw"], _single(crops))
    message = _refusal(models["raw"], embeddings.preprocess_input(crops, "prewhiten"))
    assert "takes raw 0-255 pixels" in message and "preprocess=False" in message


def test_calibration_dataset_standardises_face_crops(models, tmp_path):
    """`calibration_dataset(..., preprocess=mode)` gives `embeddings.preprocess_input`'s crops:
    what FaceNet without its layer is calibrated on, from a folder of crop files."""
    from PIL import Image

    for index, crop in enumerate(_crops(3, seed=1)):
        Image.fromarray(np.round(crop).astype(np.uint8)).save(tmp_path / f"crop{index}.png")
    pixels = np.stack(list(export.calibration_dataset(
        tmp_path, SIZE, crop_pct=1.0, preprocess=False).as_numpy_iterator()))
    for mode in ("prewhiten", "fixed"):
        got = np.stack(list(export.calibration_dataset(
            tmp_path, SIZE, crop_pct=1.0, preprocess=mode).as_numpy_iterator()))
        assert got.dtype == np.float32 and got.shape == (3, SIZE, SIZE, 3)
        np.testing.assert_allclose(got, embeddings.preprocess_input(pixels, mode), atol=1e-5)
        check_calibration_range(models[mode], _single(got))
    with pytest.raises(ValueError, match=r"`preprocess` must be True, False or one of .*'bogus'"):
        export.calibration_dataset(tmp_path, SIZE, preprocess="bogus")
