"""Deploying FaceNet (ms_celeb_1m): SavedModel / ONNX / TFLite exports of the trained network,
int8 quantization judged on real face crops, the LiteRT `Embedder`, and the `embed`, `verify`
and `convert --from facenet-*` commands.

Face crops come from the sdist's photos at run time (the session fixtures); they are written
only under pytest's tmp folders, never into the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
from support.helpers import rel_l2
from support.runners import run_cli

import keras_inception as ki
from keras_inception import embeddings as face_embeddings
from keras_inception import export
from keras_inception.export.checks import keras_outputs
from keras_inception.export.runtime import Embedder, non_integer_ops
from keras_inception.preprocessing import load_image

# The trained weights and the example photos come from packages on the package index.
pytestmark = pytest.mark.network

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 160
# The first train crops of each person calibrate int8; every other crop evaluates.
CALIBRATION_PER_PERSON = 10
SUBSET = 8  # crops compared for the float exports


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_unit(a) * _unit(b), axis=-1)


def _loo_1nn_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-neighbour identification accuracy."""
    e = _unit(embeddings)
    d = np.sum((e[:, None] - e[None]) ** 2, axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(labels[np.argmin(d, axis=1)] == labels))


@pytest.fixture(scope="module")
def faces(face_crops_by_person, facenet_ms_celeb):
    """Crops with person labels, split into calibration and evaluation sets, and the float
    Keras embeddings of the evaluation crops."""
    from support import registry_files
    from support.face_crops import face_crop

    crops, labels, calibration = [], [], []
    photos = registry_files.facenet_example_photos()
    for label, person in enumerate(sorted(face_crops_by_person)):
        train_seen = 0
        found = 0
        for path in photos[person]:  # train photos first, then val
            crop = face_crop(path)  # cached: the same crops as the session fixture
            if crop is None:
                continue
            found += 1
            in_train = path.parent.parent.name == "train"
            calibration.append(in_train and train_seen < CALIBRATION_PER_PERSON)
            train_seen += in_train
            crops.append(crop)
            labels.append(label)
        assert found == len(face_crops_by_person[person])
    crops, labels, calibration = np.stack(crops), np.array(labels), np.array(calibration)
    evaluation = ~calibration
    x_eval = crops[evaluation]
    reference = keras_outputs(facenet_ms_celeb,
                              face_embeddings.preprocess_input(x_eval, "prewhiten"),
                              batch_size=16)
    return SimpleNamespace(calibration=crops[calibration], x=x_eval, y=labels[evaluation],
                           reference=reference)


@pytest.fixture(scope="module")
def raw_model(facenet_ms_celeb):
    """The ms_celeb_1m FaceNet taking raw 0-255 crops (`include_preprocessing=True`), with the
    session model's weights (no second conversion)."""
    model = ki.FaceNet(weights=None, include_preprocessing=True)
    model.set_weights(facenet_ms_celeb.get_weights())
    return model


@pytest.fixture(scope="module")
def exports(raw_model, facenet_ms_celeb, faces, module_tmp_path):
    """Every export, built once: SavedModel, ONNX, TFLite float32 / dynamic_int8 and int8 (uint8
    I/O, calibrated on the calibration crops) of the raw-crop model; float16 of the model
    without standardisation (the `Embedder(standardization=...)` path)."""
    out = module_tmp_path / "facenet_exports"
    out.mkdir()
    paths = {
        "saved_model": export.export_saved_model(raw_model, out / "saved_model"),
        "onnx": export.export_onnx(raw_model, out / "facenet.onnx"),
        "float32": export.export_tflite(raw_model, out / "float32.tflite"),
        "dynamic_int8": export.export_tflite(raw_model, out / "dynamic_int8.tflite",
                                             quantization="dynamic_int8"),
        "float16": export.export_tflite(facenet_ms_celeb, out / "float16.tflite",
                                        quantization="float16"),
        "int8": export.export_tflite(raw_model, out / "int8.tflite", quantization="int8",
                                     representative_data=faces.calibration, input_type="uint8"),
    }
    return paths


def test_saved_model_and_onnx_match_keras(exports, raw_model, faces):
    import onnxruntime
    import tensorflow as tf

    x = faces.x[:SUBSET]
    expected = np.asarray(raw_model(x, training=False))
    signature = tf.saved_model.load(exports["saved_model"]).signatures["serving_default"]
    got = signature(images=tf.constant(x))["predictions"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    session = onnxruntime.InferenceSession(exports["onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)


def test_tflite_float_exports_match_keras(exports, faces):
    x, reference = faces.x[:SUBSET], faces.reference[:SUBSET]
    float32 = Embedder(exports["float32"])
    assert (float32.input_size, float32.embedding_dim, float32.input_dtype) == (
        (SIZE, SIZE), 128, np.float32)
    got = float32.embed(x)
    assert got.dtype == np.float32 and got.shape == (SUBSET, 128)
    assert rel_l2(got, reference) <= 1e-4
    # float16 was exported without the standardisation: the Embedder applies it.
    got16 = Embedder(exports["float16"], standardization="prewhiten").embed(x)
    assert _cosine(got16, reference).min() >= 0.999
    # A single crop, as uint8, is accepted.
    single = float32.embed(np.round(x[0]).astype(np.uint8))
    assert single.shape == (1, 128)
    assert _cosine(single[0], reference[0]) >= 0.9999


def test_quantized_tflite_on_face_crops(exports, faces):
    """int8 (uint8 I/O, calibrated on other crops of the same people) keeps the trained
    network's embeddings and its identification accuracy on the evaluation crops."""
    assert non_integer_ops(exports["int8"]) == []
    int8 = Embedder(exports["int8"])
    assert int8.input_dtype == np.uint8
    got = int8.embed(faces.x)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
    cosine = _cosine(got, faces.reference)
    assert cosine.mean() >= 0.98, cosine.mean()
    float_acc = _loo_1nn_accuracy(faces.reference, faces.y)
    int8_acc = _loo_1nn_accuracy(got, faces.y)
    assert float_acc >= 0.9
    assert int8_acc >= float_acc - 1.0 / len(faces.y) - 1e-9, (int8_acc, float_acc)

    dynamic = Embedder(exports["dynamic_int8"]).embed(faces.x[:SUBSET])
    assert _cosine(dynamic, faces.reference[:SUBSET]).mean() >= 0.98

    sizes = {name: os.path.getsize(exports[name])
             for name in ("float32", "float16", "dynamic_int8", "int8")}
    assert sizes["int8"] <= 0.30 * sizes["float32"], sizes
    assert sizes["dynamic_int8"] <= 0.30 * sizes["float32"], sizes
    assert sizes["float16"] <= 0.55 * sizes["float32"], sizes


def test_embedder_files_and_errors(exports, faces, tmp_path):
    from PIL import Image

    paths = []
    for i in range(2):
        paths.append(tmp_path / f"crop{i}.png")
        Image.fromarray(np.round(faces.x[i]).astype(np.uint8)).save(paths[-1])
    embedder = Embedder(exports["float32"], num_threads=1)
    from_files = embedder.embed_files(paths)
    expected = embedder.embed(np.stack([load_image(p, SIZE, crop_pct=1.0) for p in paths]))
    np.testing.assert_array_equal(from_files, expected)

    with pytest.raises(ValueError, match="standardization"):
        Embedder(exports["float32"], standardization="bogus")
    with pytest.raises(ValueError, match=r"\(N, 160, 160, 3\)"):
        embedder.embed(np.zeros((2, 96, 96, 3), np.float32))
    with pytest.raises(ValueError, match="0-255"):
        embedder.embed(np.full((1, SIZE, SIZE, 3), -1.0, np.float32))


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=REPO)  # in this process: TensorFlow and the model files once


@pytest.fixture(scope="module")
def crop_files(faces, module_tmp_path) -> list[str]:
    """Three evaluation crops as PNG files (two of one person, one of another) in a tmp folder."""
    from PIL import Image

    folder = module_tmp_path / "crop_files"
    folder.mkdir()
    first = int(np.flatnonzero(faces.y == faces.y[0])[1])
    other = int(np.flatnonzero(faces.y != faces.y[0])[0])
    paths = []
    for name, index in (("a", 0), ("b", first), ("c", other)):
        path = folder / f"{name}.png"
        Image.fromarray(np.round(faces.x[index]).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_cli_embed_and_verify(crop_files, facenet_h5, facenet_ms_celeb, tmp_path):
    out = tmp_path / "emb.npy"
    proc = _cli("embed", "--model", "facenet", "--weights", str(facenet_h5), *crop_files,
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    embeddings = np.load(out)
    assert embeddings.dtype == np.float32 and embeddings.shape == (3, 128)
    crops = np.stack([load_image(p, SIZE, crop_pct=1.0) for p in crop_files])
    expected = np.asarray(facenet_ms_celeb(face_embeddings.preprocess_input(crops), training=False))
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    for path in crop_files:
        assert path in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["emb.npy"]  # nothing else left behind

    # An existing --out is refused without --overwrite.
    again = _cli("embed", "--weights", str(facenet_h5), crop_files[0], "--out", str(out))
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--overwrite" in again.stderr
    np.testing.assert_array_equal(np.load(out), embeddings)

    proc = _cli("verify", "--weights", str(facenet_h5), crop_files[0], crop_files[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"distance ([0-9.]+), threshold ([0-9.]+) \(([^)]*)\): (.+)", proc.stdout)
    assert match, proc.stdout
    d = face_embeddings.distance(embeddings[0], embeddings[2])
    assert abs(float(match[1]) - d) <= 1e-5
    assert float(match[2]) == face_embeddings.default_threshold()
    assert match[4] == ("same person" if d < face_embeddings.default_threshold() else "different people")


def test_cli_bad_image_is_one_line(crop_files, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "emb.npy"
    proc = _cli("embed", "--model", "facenet", "--weights", "ms_celeb_1m", crop_files[0],
                str(bad), "--out", str(out))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("keras-inception embed: error:"), proc.stderr
    assert str(bad) in errors[0]
    assert not out.exists()


def test_cli_convert_facenet_keras_round_trip(facenet_h5, facenet_ms_celeb, faces, tmp_path):
    out = tmp_path / "ms_celeb.weights.h5"
    proc = _cli("convert", "--from", "facenet-keras", str(facenet_h5), "--model", "facenet",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "128-d embeddings" in proc.stdout and "prewhiten" in proc.stdout
    model = ki.FaceNet(weights=str(out))
    x = face_embeddings.preprocess_input(faces.x[:4])
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(facenet_ms_celeb(x)))

    proc = _cli("convert", "--from", "facenet-keras", str(facenet_h5), "--model", "inception_v4",
                "--out", str(tmp_path / "x.weights.h5"))
    assert proc.returncode == 2 and "--model facenet" in proc.stderr


@pytest.mark.torch
def test_cli_convert_facenet_pytorch(faces, tmp_path):
    import torch  # the torch extra, installed by make test: a missing torch fails here
    from support import registry_files

    module = registry_files.load_facenet_pytorch_module()
    torch.manual_seed(0)
    net = module.InceptionResnetV1(pretrained=None, classify=False).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    pt = tmp_path / "random_facenet.pt"
    torch.save(net.state_dict(), pt)
    out = tmp_path / "random_facenet.weights.h5"
    proc = _cli("convert", "--from", "facenet-pytorch", str(pt), "--model", "facenet",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "512-d embeddings" in proc.stdout and "--standardization fixed" in proc.stdout

    x = faces.x[:2]
    model = ki.FaceNet(weights=str(out), embedding_dim=512)
    got = np.asarray(model(face_embeddings.preprocess_input(x, "fixed")))
    with torch.no_grad():
        expected = net(torch.from_numpy(face_embeddings.preprocess_input(x, "fixed").transpose(0, 3, 1, 2)))
    assert rel_l2(got, expected.numpy()) <= 1e-4

    # embed / verify read the embedding size from the file; its standardisation is given.
    from keras_inception.cli.embeddings import resolve_weights

    assert resolve_weights(str(out), None, None) == (512, "prewhiten", True)
    assert resolve_weights(str(out), None, "fixed") == (512, "fixed", False)
    assert resolve_weights(str(pt), None, None) == (512, "fixed", True)


@pytest.mark.slow
def test_int8_calibrated_on_prewhitened_crops(facenet_ms_celeb, faces, tmp_path):
    """FaceNet without its standardisation layer (what `FaceNet(weights="facenet_keras.h5")`
    builds) takes prewhitened crops, unbounded values (about [-4, 4]): int8 export calibrates
    on them, and the file's embeddings of the evaluation crops (none of them calibration
    crops) follow the float Keras embeddings."""
    calibration = face_embeddings.preprocess_input(faces.calibration, "prewhiten")
    assert calibration.min() < -2 and calibration.max() > 2
    with pytest.warns(export.QuantizationWarning, match=r"used 50 images \(fewer than 100\)"):
        path = export.export_tflite(facenet_ms_celeb, tmp_path / "prewhitened_int8.tflite",
                                    quantization="int8", representative_data=calibration)
    assert non_integer_ops(path) == []
    assert path.agreement.mean_cosine >= 0.98, path.agreement
    got = Embedder(path, standardization="prewhiten").embed(faces.x)
    cosine = _cosine(got, faces.reference)
    assert cosine.mean() >= 0.98, (cosine.mean(), cosine.min())
    float_acc = _loo_1nn_accuracy(faces.reference, faces.y)
    assert _loo_1nn_accuracy(got, faces.y) >= float_acc - 1.0 / len(faces.y) - 1e-9
