"""SavedModel / TFLite / ONNX export, checked against the Keras model, and the TFLite runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from helpers import rel_l2

import keras_inception as ki
from keras_inception import export
from keras_inception.cli import main
from keras_inception.lite import Classifier, load_interpreter, non_integer_ops

FLOWERS_SIZE = 80
CALIBRATION_IMAGES = 100


def load_flowers_split(root, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All images of a split as float32 0-255 arrays, center-cropped to `size`."""
    data = keras.utils.image_dataset_from_directory(
        root / split, image_size=(size, size), batch_size=None, shuffle=False,
        crop_to_aspect_ratio=True, verbose=False,
    )
    images, labels = zip(*data.as_numpy_iterator(), strict=True)
    return np.stack(images), np.array(labels)


def estimate_batchnorm_statistics(model: keras.Model, x: np.ndarray, *, seed: int = 0) -> None:
    """Set every BatchNormalization's moving statistics to those of up to 200 of the
    preprocessed images `x` (one training-mode pass with momentum 0)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    pick = np.random.default_rng(seed).choice(len(x), min(len(x), 200), replace=False)
    for layer in norms:
        layer.momentum = 0.0
    model(x[pick], training=True)  # eager: every BN layer now holds this batch's statistics
    for layer in norms:
        layer.momentum = 0.99


def fit_head_on_random_backbone(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                                *, epochs: int = 40, seed: int = 0) -> None:
    """Cheapest meaningful training without pretrained weights: BatchNorm statistics
    estimated on the data, then the Dense head trained on the random backbone's
    pooled features (also used by benchmarks/tflite_latency.py)."""
    keras.utils.set_random_seed(seed)
    x = ki.preprocess_input(images)
    estimate_batchnorm_statistics(model, x, seed=seed)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    pooled = features.predict(x, batch_size=50, verbose=0)
    head = keras.Sequential([keras.Input(pooled.shape[1:]), model.get_layer("predictions")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(pooled, labels, epochs=epochs, batch_size=100, verbose=0)


@pytest.fixture(scope="session")
def flowers(flowers_dir, tmp_path_factory):
    """Inception-ResNet-v1 at 80x80 fitted to tf_flowers_small (5 classes) with
    `fit_head_on_random_backbone` (~50% val accuracy, chance is 20%), saved as .keras;
    the val split as 0-255 images with labels and the Keras probabilities."""
    train_x, train_y = load_flowers_split(flowers_dir, "train", FLOWERS_SIZE)
    val_x, val_y = load_flowers_split(flowers_dir, "val", FLOWERS_SIZE)
    keras.utils.set_random_seed(0)  # the random backbone is part of the result: fix it
    model = ki.InceptionResNetV1(weights=None, input_shape=(FLOWERS_SIZE, FLOWERS_SIZE, 3),
                                 classes=5)
    fit_head_on_random_backbone(model, train_x, train_y, epochs=100)
    path = tmp_path_factory.mktemp("flowers") / "flowers_irv1.keras"
    model.save(path)
    probs = model.predict(ki.preprocess_input(val_x), batch_size=50, verbose=0)
    return SimpleNamespace(model=model, path=path, val_x=val_x, val_y=val_y, probs=probs,
                           train_dir=flowers_dir / "train")


@pytest.fixture(scope="session")
def flowers_tflite(flowers, tmp_path_factory):
    """The four TFLite variants of the flowers model; int8 goes through the CLI with
    uint8 input/output, calibrated on train-split images."""
    out = tmp_path_factory.mktemp("flowers_tflite")
    paths = {}
    for quantization in (None, "float16", "dynamic_int8"):
        name = quantization or "float32"
        paths[name] = export.export_tflite(flowers.model, out / f"{name}.tflite",
                                           quantization=quantization)
    paths["int8"] = str(out / "int8.tflite")
    rc = main(["export", "--model", str(flowers.path), "--format", "tflite", "--quantize", "int8",
               "--calibration-data", str(flowers.train_dir), "--calibration-size",
               str(CALIBRATION_IMAGES), "--uint8-input", "--out", paths["int8"]])
    assert rc == 0
    return paths


# --- SavedModel -----------------------------------------------------------------------------

RELOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cases = json.loads(sys.argv[1])
    out = {}
    for name, case in cases.items():
        fn = tf.saved_model.load(case["path"]).signatures["serving_default"]
        spec = fn.structured_input_signature[1]["images"]
        inputs = np.load(case["inputs"])
        out[name] = {
            "input": [spec.shape.as_list(), spec.dtype.name],
            "outputs": sorted(fn.structured_outputs),
            "results": {k: fn(images=tf.constant(inputs[k]))["predictions"].numpy().tolist()
                        for k in inputs.files},
        }
    print(json.dumps(out))
""")


def test_saved_model_reloads_in_fresh_process(small_models, tmp_path):
    rng = np.random.default_rng(3)
    cases, expected = {}, {}
    for name, model in small_models.items():
        raw = name == "inception_resnet_v1"  # one of them takes uint8 and preprocesses inside
        path = export.export_saved_model(model, tmp_path / name, include_preprocessing=raw)
        batches = {f"b{n}": rng.integers(0, 256, (n, 96, 96, 3)).astype(np.uint8)
                   if raw else rng.uniform(-1, 1, (n, 96, 96, 3)).astype(np.float32)
                   for n in (1, 3)}
        np.savez(tmp_path / f"{name}_inputs.npz", **batches)
        cases[name] = {"path": path, "inputs": str(tmp_path / f"{name}_inputs.npz")}
        expected[name] = {
            k: np.asarray(model(ki.preprocess_input(v) if raw else v, training=False))
            for k, v in batches.items()
        }
    proc = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, json.dumps(cases)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, result in reloaded.items():
        raw = name == "inception_resnet_v1"
        assert result["input"] == [[None, 96, 96, 3], "uint8" if raw else "float32"]
        assert result["outputs"] == ["predictions"]
        for key, want in expected[name].items():
            got = np.asarray(result["results"][key], np.float32)
            assert got.shape == want.shape == (int(key[1:]), 5)
            assert np.max(np.abs(got - want)) <= 1e-5, (name, key)


# --- TFLite ---------------------------------------------------------------------------------

def test_tflite_float_variants_match_keras(flowers, flowers_tflite):
    images = flowers.val_x[:6]
    for name, bound in (("float32", 1e-4), ("float16", 1e-2)):
        classifier = Classifier(flowers_tflite[name])
        assert classifier.input_size == (FLOWERS_SIZE, FLOWERS_SIZE)
        details = classifier.interpreter.get_input_details()[0]
        assert list(details["shape_signature"]) == [1, FLOWERS_SIZE, FLOWERS_SIZE, 3]  # static
        assert details["name"].endswith("images:0")
        assert rel_l2(classifier.predict(images), flowers.probs[:6]) <= bound, name
    # LiteRT's built-in kernels (no XNNPACK, as the latency benchmark compares) agree too
    builtin = Classifier(flowers_tflite["float32"], delegates=False)
    assert rel_l2(builtin.predict(images), flowers.probs[:6]) <= 1e-4


def _accuracy_and_agreement(predictions: np.ndarray, flowers) -> tuple[float, float]:
    top1 = predictions.argmax(-1)
    return float(np.mean(top1 == flowers.val_y)), float(np.mean(top1 == flowers.probs.argmax(-1)))


def test_quantized_accuracy_on_flowers(flowers, flowers_tflite):
    float_acc = float(np.mean(flowers.probs.argmax(-1) == flowers.val_y))
    assert float_acc >= 0.4, f"the float model is too weak to judge quantization: {float_acc}"
    results = {}
    for name, path in flowers_tflite.items():
        results[name] = _accuracy_and_agreement(Classifier(path).predict(flowers.val_x), flowers)
    print("flowers val (accuracy, agreement with Keras):", float_acc, results)
    assert results["float32"][1] == 1.0
    for name in ("float16", "dynamic_int8", "int8"):
        accuracy, agreement = results[name]
        assert agreement >= 0.90, (name, agreement)
        assert accuracy >= float_acc - 0.05, (name, accuracy, float_acc)


def test_int8_model_is_integer_only(flowers_tflite):
    path = flowers_tflite["int8"]
    assert non_integer_ops(path) == []
    interpreter = load_interpreter(path, delegates=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(convs) > 100
    for op in convs:
        act, weight, bias = (tensors[i]["dtype"] for i in op["inputs"])
        assert (act, weight, bias, tensors[op["outputs"][0]]["dtype"]) == (
            np.int8, np.int8, np.int32, np.int8)
    # uint8 in and out, with the scales that map 0-255 pixels to [-1, 1] and scores to [0, 1]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    scale, zero_point = inp["quantization"]
    assert abs(scale - 2 / 255) < 2e-4 and abs(zero_point - 128) <= 1
    # dynamic-range models keep float activations: the check must notice them
    assert len(non_integer_ops(flowers_tflite["dynamic_int8"])) > 100


def test_quantized_files_are_small(flowers_tflite):
    size = {name: os.path.getsize(path) for name, path in flowers_tflite.items()}
    assert size["float16"] <= 0.55 * size["float32"]
    assert size["dynamic_int8"] <= 0.30 * size["float32"]
    assert size["int8"] <= 0.30 * size["float32"]


def test_classifier_top_k_and_class_names(flowers, flowers_tflite):
    names = sorted(os.listdir(flowers.train_dir))
    classifier = Classifier(flowers_tflite["float32"], class_names=names)
    images = flowers.val_x[:2].astype(np.uint8)
    rows = classifier.top_k(images, k=3)
    scores = classifier.predict(images)
    want = np.argsort(scores, axis=-1)[:, ::-1][:, :3]
    assert [[i for i, _, _ in row] for row in rows] == want.tolist()
    np.testing.assert_allclose([[s for _, _, s in row] for row in rows],
                               np.take_along_axis(scores, want, axis=-1), atol=1e-7)
    assert rows[0][0][1] == names[want[0, 0]]
    with pytest.raises(ValueError, match="one name per output"):
        Classifier(flowers_tflite["float32"], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"received \(2, 64, 64, 3\)"):
        classifier.predict(np.zeros((2, 64, 64, 3)))
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        Classifier(flowers.path.parent / "missing.tflite")


def test_cli_predict_tflite(flowers, flowers_tflite, capsys):
    val = flowers.train_dir.parent / "val"
    images = [str(val / "daisy" / sorted(os.listdir(val / "daisy"))[0]),
              str(val / "roses" / sorted(os.listdir(val / "roses"))[0])]
    assert main(["predict", "--tflite", flowers_tflite["int8"], *images, "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == images[0] and lines[3] == images[1] and len(lines) == 6
    expected = Classifier(flowers_tflite["int8"]).classify_files(images, k=2)
    assert lines[1].split()[1] == expected[0][0][1] and lines[4].split()[1] == expected[1][0][1]


# --- ONNX -----------------------------------------------------------------------------------

def test_onnx_matches_keras(small_models, tmp_path):
    import onnxruntime

    model = small_models["inception_resnet_v1"]
    path = export.export_onnx(model, tmp_path / "irv1.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = np.random.default_rng(5).uniform(-1, 1, (3, 96, 96, 3)).astype(np.float32)
    got = session.run(None, {"images": x})[0]
    assert np.max(np.abs(got - np.asarray(model(x, training=False)))) <= 1e-4


def test_onnx_without_packages_says_what_to_install(small_models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"missing: onnxruntime.*keras_inception\[onnx\]"):
        export.export_onnx(small_models["inception_v4"], tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# --- atomicity and argument errors ------------------------------------------------------------

def test_existing_path_is_refused(small_models, tmp_path):
    model = small_models["inception_v4"]
    target = tmp_path / "model.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_tflite(model, target)
    (tmp_path / "sm").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(model, tmp_path / "sm")
    assert target.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "sm"]
    rc = main(["export", "--model", "inception_v4", "--image-size", "96", "--format", "tflite",
               "--out", str(target)])
    assert rc == 2 and target.read_bytes() == b"keep me"


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_failure_midway_leaves_nothing(small_models, tmp_path, monkeypatch, fmt):
    model = small_models["inception_resnet_v2"]

    def half_written_export(filepath, *args, **kwargs):
        # what a crash after part of the artifact was written looks like
        if fmt == "saved_model":
            os.makedirs(os.path.join(filepath, "variables"))
            filepath = os.path.join(filepath, "saved_model.pb")
        with open(filepath, "wb") as f:
            f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(model, "export", half_written_export)
    # ExportArchive() returns an instance of the backend's archive class: patch that one.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out",
                        lambda self, filepath, **kw: half_written_export(filepath))
    existing = tmp_path / "previous.tflite"
    existing.write_bytes(b"previous version")
    calls = {
        "saved_model": lambda: export.export_saved_model(model, tmp_path / "sm"),
        "tflite": lambda: export.export_tflite(model, existing, overwrite=True),
        "onnx": lambda: export.export_onnx(model, tmp_path / "m.onnx"),
    }
    with pytest.raises(OSError, match="No space left"):
        calls[fmt]()
    # no partial artifact, no staging directory; an overwritten file is left as it was
    assert os.listdir(tmp_path) == ["previous.tflite"]
    assert existing.read_bytes() == b"previous version"


def test_bad_arguments_are_named(small_models, tmp_path):
    model = small_models["inception_v4"]
    cases = [
        (dict(quantization="int4"), r"`quantization` must be one of .* quantization='int4'"),
        (dict(quantization="int8"), "needs `representative_data`"),
        (dict(quantization="float16", input_type="uint8"), "input_type='uint8' needs"),
        (dict(input_type="float64"), r"`input_type` must be one of"),
        (dict(quantization="int8", representative_data=np.zeros((2, 64, 64, 3))),
         r"images of shape \(96, 96, 3\).*received an element of shape \(64, 64, 3\)"),
        (dict(quantization="dynamic_int8", representative_data=[np.zeros((96, 96, 3))]),
         "only used with quantization='int8'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export.export_tflite(model, tmp_path / "m.tflite", **kwargs)
    with pytest.raises(ValueError, match=r"`path` must end with '.tflite'"):
        export.export_tflite(model, tmp_path / "m.bin")
    with pytest.raises(FileNotFoundError, match="directory of `path` does not exist"):
        export.export_saved_model(model, tmp_path / "no" / "sm")
    with pytest.raises(FileNotFoundError, match="Calibration directory not found"):
        export.calibration_dataset(tmp_path / "none", 96)
    rc = main(["export", "--model", "inception_v4", "--format", "tflite", "--quantize", "int8",
               "--out", str(tmp_path / "m.tflite")])
    assert rc == 2
    assert os.listdir(tmp_path) == []
