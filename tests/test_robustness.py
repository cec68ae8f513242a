"""Bad input and damaged files: one clear line naming the argument or file, exit code 2
from the CLI, never a traceback, never a silent substitute (see the "What happens
when..." table, docs/what_happens_when.md). CLI cases run `keras_inception.cli.main` in
this process with its output captured (tests/support/runners.py): the exit code and
stderr a user sees, without importing TensorFlow again for every case."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest
from PIL import Image
from support.runners import assert_one_line_error, run_cli

import keras_inception as ki
from keras_inception.preprocessing import decode_predictions, load_image, preprocess_input, read_image

SIZE = 75


@pytest.fixture(scope="module")
def small_v1(module_tmp_path):
    """A small IR-v1 (3 classes) and its weights file."""
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    path = module_tmp_path / "v1.weights.h5"
    model.save_weights(path)
    return model, path


# --- numeric options: refused up front, naming the option (issue: silent wrong results) ---


@pytest.mark.parametrize(
    "argv, option",
    [
        (["summary", "--model", "inception_v4", "--image-size", "0"], "--image-size"),
        (["export", "--model", "inception_v4", "--weights", "none", "--image-size", "0",
          "--format", "tflite", "--out", "x.tflite"], "--image-size"),
        (["train", "--out", "o", "--learning-rate", "0"], "--learning-rate"),
        (["train", "--out", "o", "--learning-rate", "-1"], "--learning-rate"),
        (["train", "--out", "o", "--learning-rate", "nan"], "--learning-rate"),
        (["train", "--out", "o", "--stage1-epochs", "-1"], "--stage1-epochs"),
        (["train", "--out", "o", "--max-per-class", "0"], "--max-per-class"),
        (["train", "--out", "o", "--epochs", "0"], "--epochs"),
        (["predict", "--model", "x.keras", "--top", "0", "a.jpg"], "--top"),
        (["predict", "--model", "x.keras", "--crop-pct", "1.5", "a.jpg"], "--crop-pct"),
        (["export", "--model", "x.keras", "--format", "tflite", "--quantize", "int8",
          "--calibration-data", ".", "--calibration-size", "0", "--out", "x.tflite"],
         "--calibration-size"),
    ],
)
def test_numeric_options_are_validated_up_front(argv, option):
    proc = run_cli(*argv)
    assert proc.returncode == 2
    assert f"argument {option}" in proc.stderr and "Traceback" not in proc.stderr


# --- image size: 75-1024 (issue 20, 13: --image-size 5000 passed 7 GB before any output) ---


@pytest.mark.parametrize("command", [
    ["summary", "--model", "inception_v4"],
    ["predict", "--model", "inception_v4", "--weights", "none", "a.jpg"],
    ["train", "--out", "o"],
    ["export", "--model", "inception_v4", "--weights", "none", "--format", "tflite",
     "--out", "x.tflite"],
    ["benchmark"],
])
def test_image_size_above_1024_is_refused_by_the_parser(command, capsys):
    """One line naming the option, the value and the range, exit 2; 1024 itself passes."""
    from keras_inception.cli import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--image-size", "5000"])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
    assert errors == [f"keras-inception {command[0]}: error: argument --image-size: expected an "
                      "integer in 75-1024; received '5000'"]
    assert build_parser().parse_args([*command, "--image-size", "1024"]).image_size == 1024


def test_image_size_outside_75_to_1024_is_refused_by_the_python_api(tmp_path):
    from keras_inception import registry
    from keras_inception.apps.benchmark import run_benchmark
    from keras_inception.train import TrainConfig

    assert (registry.MIN_IMAGE_SIZE, registry.MAX_IMAGE_SIZE) == (75, 1024)
    for size in (5000, 1025, 74):
        with pytest.raises(ValueError, match=rf"`image_size` must be an integer in 75-1024; "
                                             rf"received image_size={size}\."):
            TrainConfig(out=str(tmp_path), image_size=size, weights="none").validate()
        with pytest.raises(ValueError, match=rf"in 75-1024; received image_size={size}\."):
            run_benchmark(image_size=size)
    TrainConfig(out=str(tmp_path), image_size=1024, weights="none").validate()


def test_stage1_epochs_zero_is_accepted_by_the_parser():
    from keras_inception.cli import build_parser

    args = build_parser().parse_args(["train", "--out", "o", "--stage1-epochs", "0"])
    assert args.stage1_epochs == 0


# --- damaged and mismatched weight files ---


def test_truncated_weights_file(tmp_path, small_v1):
    model, path = small_v1
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(path.read_bytes()[: 200_000])
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    with pytest.raises(ValueError, match=r"truncated\.weights\.h5.*truncated or not a Keras weights"):
        ki.presets.load_weights_file(model, truncated)
    for v, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b)
    proc = run_cli("predict", "--model", "inception_resnet_v1", "--weights", str(truncated),
                   "--image-size", str(SIZE), ki.preprocessing.sample_image_path())
    assert_one_line_error(proc, str(truncated))


def test_keras_archive_as_weights_file(tmp_path, small_v1):
    """`weights=` a `.keras` model file loads its weights; a zip without model weights is
    one clear error and the model is left as it was."""
    model, _ = small_v1
    archive = tmp_path / "v1.keras"
    model.save(archive)
    clone = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    ki.presets.load_weights_file(clone, archive)
    for a, b in zip(clone.weights, model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("config.json", "{}")
    fresh = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    before = [keras.ops.convert_to_numpy(v) for v in fresh.weights]
    with pytest.raises(ValueError, match=r"empty\.keras.*holds no model\.weights\.h5"):
        ki.presets.load_weights_file(fresh, empty)
    for v, b in zip(fresh.weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b)


def test_weights_of_another_network_give_one_short_message(tmp_path, small_v1):
    _, path = small_v1
    other = ki.InceptionResNetV2(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    before = [keras.ops.convert_to_numpy(v) for v in other.weights]
    with pytest.raises(ValueError) as info:
        ki.presets.load_weights_file(other, path)
    message = str(info.value)
    assert len(message) < 600 and "\n" not in message
    assert "does not fit this network" in message and "expects" in message and str(path) in message
    # Nothing was assigned: Keras loads what fits before it raises; we restore.
    for v, b in zip(other.weights, before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b)


def test_weights_with_another_class_count(small_v1):
    _, path = small_v1
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=7)
    with pytest.raises(ValueError, match=r"predictions \(Dense\) expects \(1792, 7\), the file has "
                                         r"\(1792, 3\).*number of classes"):
        ki.presets.load_weights_file(model, path)


def test_other_network_through_the_cli_is_short(small_v1):
    _, path = small_v1
    proc = run_cli("predict", "--model", "inception_resnet_v2", "--weights", str(path),
                   "--image-size", str(SIZE), ki.preprocessing.sample_image_path())
    line = assert_one_line_error(proc, "does not fit this network")
    assert len(proc.stderr) < 2000 and len(line) < 700


@pytest.mark.parametrize("damage", ["not_a_zip", "damaged_zip"])
def test_damaged_keras_file(tmp_path, damage):
    path = tmp_path / "model.keras"
    if damage == "not_a_zip":
        path.write_text("this is not a model")
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{broken")
    with pytest.raises(ValueError, match=r"model\.keras"):
        ki.load_model(path)
    proc = run_cli("predict", "--model", str(path), ki.preprocessing.sample_image_path())
    assert_one_line_error(proc, str(path))


def test_missing_keras_file_is_not_found():
    proc = run_cli("predict", "--model", "/nonexistent/model.keras", "x.jpg")
    assert_one_line_error(proc, "/nonexistent/model.keras", "not found")


# --- one decoder, checked pixels ---


def test_16_bit_png_reads_like_tensorflow(tmp_path):
    import tensorflow as tf

    ramp = np.linspace(0, 65535, 96 * 128).reshape(96, 128).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(ramp).save(path)
    ours = read_image(path)
    theirs = tf.io.decode_image(path.read_bytes(), channels=3, dtype=tf.uint8,
                                expand_animations=False).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert 120 < ours.mean() < 135  # a ramp, not 97.7% white
    crop = load_image(path, SIZE, crop_pct=1.0)
    assert 100 < crop.mean() < 155 and (crop >= 250).mean() < 0.2


def test_preprocess_input_refuses_what_cannot_be_pixels():
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess_input(np.array([[0.0, np.nan, 3.0]]))
    with pytest.raises(ValueError, match=r"0-255.*\[0, 1000\].*16-bit"):
        preprocess_input(np.array([0, 1000], dtype=np.uint16))
    with pytest.raises(ValueError, match=r"\[-300, 2\]"):
        preprocess_input(np.array([-300, 2], dtype=np.int16))
    with pytest.raises(ValueError, match="already preprocessed"):
        preprocess_input(preprocess_input(np.array([0.0, 128.0, 255.0])))
    # keras.applications' behaviour for valid input is kept.
    np.testing.assert_allclose(preprocess_input(np.array([0, 255], dtype=np.uint8)), [-1.0, 1.0])
    np.testing.assert_allclose(preprocess_input(np.array([127.5], dtype=np.float64)), [0.0])


def test_decode_predictions_refuses_nan_and_inf():
    preds = np.full((2, 1000), 1e-3, np.float32)
    preds[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite scores \(rows \[1\]"):
        decode_predictions(preds)
    preds[1, 7] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_predictions(preds)


# --- predict: a bad file among good ones; export without weights ---


def test_predict_reports_bad_files_and_classifies_the_rest(tmp_path, small_v1):
    model, _ = small_v1
    model_path = tmp_path / "small.keras"
    model.save(model_path)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    good = ki.preprocessing.sample_image_path()
    proc = run_cli("predict", "--model", str(model_path), "--top", "2", good, str(bad), good)
    assert_one_line_error(proc, str(bad), code=1)
    lines = proc.stdout.splitlines()
    assert lines.count(good) == 2 and str(bad) not in proc.stdout
    assert sum(line.strip().startswith(("1.", "2.")) for line in lines) == 4


def test_export_of_a_model_name_needs_explicit_weights(tmp_path):
    out = tmp_path / "v4.tflite"
    proc = run_cli("export", "--model", "inception_v4", "--image-size", str(SIZE), "--format",
                   "tflite", "--out", str(out))
    assert_one_line_error(proc, "--weights", "'none'")
    assert not out.exists()


def test_no_tensorflow_start_up_lines_on_the_console():
    proc = run_cli("summary", "--model", "inception_resnet_v1", "--image-size", str(SIZE))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr
    assert "I0000" not in proc.stderr and "inception_resnet_v1" in proc.stdout
