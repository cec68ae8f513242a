"""Models that carry their meaning: `keras_inception.metadata` in `.keras` files, and the
commands that answer from it wherever the file sits."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from support.helpers import randomize_weights
from support.runners import assert_one_line_error, run_cli

import keras_inception as ki
from keras_inception.metadata import (
    MetadataError,
    ModelMetadata,
    describe,
    infer_metadata,
    of_model,
    read_keras_metadata,
)
from keras_inception.preprocessing import load_image, sample_image_path

SIZE = 75
NAMES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def described(module_tmp_path):
    """A small IR-v1 classifier (random weights) carrying crop 1.0 and three names, saved in
    a run-like folder."""
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    randomize_weights(model, seed=3)
    metadata = ModelMetadata(image_size=(SIZE, SIZE), crop_pct=1.0, class_names=NAMES,
                             model="inception_resnet_v1")
    model = describe(model, metadata)
    folder = module_tmp_path / "run"
    folder.mkdir()
    model.save(folder / "best.keras")
    return folder / "best.keras", model, metadata


def _scores(printed: str) -> dict[str, float]:
    return {line.split()[1]: float(line.split()[2]) for line in printed.splitlines()[1:]}


def test_metadata_round_trips_through_keras_own_load_model_and_save(described, tmp_path):
    path, model, metadata = described
    assert read_keras_metadata(path) == metadata  # read without building the model
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert of_model(loaded) == metadata
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(model(x, training=False)),
                               atol=1e-6)
    loaded.save(tmp_path / "again.keras")  # a user's own save keeps it
    assert read_keras_metadata(tmp_path / "again.keras") == metadata
    assert json.loads(metadata.to_json())["class_names"] == list(NAMES)


def test_metadata_refuses_what_does_not_describe_a_model():
    for bad, named in (({"kind": "regressor"}, "`kind` must be one of classifier, embedding"),
                       ({"crop_pct": 1.5}, "`crop_pct` must be in (0, 1]"),
                       ({"image_size": [0, 5]}, "`image_size` must be (height, width)"),
                       ({"input_scaling": "caffe"}, "`input_scaling` must be one of")):
        with pytest.raises(MetadataError, match=None) as info:
            ModelMetadata.from_dict(bad, "the metadata of 'm.keras'")
        assert named in str(info.value) and "'m.keras'" in str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(MetadataError, match="format 9 is newer"):
        ModelMetadata.from_dict({"format_version": 9})
    with pytest.raises(MetadataError, match="not JSON"):
        ModelMetadata.from_json("{", "x")


def test_structure_tells_the_kind_of_a_model_without_metadata():
    plain = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    metadata, assumed = infer_metadata(plain)
    assert metadata.kind == "classifier" and metadata.image_size == (SIZE, SIZE)
    assert set(assumed) == {"crop_pct", "interpolation", "input_scaling", "class_names"}
    face = ki.FaceNet(weights=None, input_shape=(96, 96, 3))
    own = of_model(face)  # the builder says what it built
    assert (own.kind, own.embedding_dim, own.input_scaling, own.crop_pct) == (
        "embedding", 128, "prewhiten", 1.0)
    raw = ki.FaceNet(weights=None, input_shape=(96, 96, 3), include_preprocessing=True)
    assert of_model(raw).input_scaling == "raw"
    stripped = keras.Model(face.inputs, face.outputs)  # a plain functional copy
    metadata, assumed = infer_metadata(stripped)
    assert metadata.kind == "embedding" and metadata.embedding_dim == 128 and assumed


@pytest.mark.slow
def test_a_copied_model_answers_as_its_run(described, tmp_path, capsys):
    """The crop and the names come from the file: the run's best.keras and a copy of it in
    another folder print the same scores and names, those of the crop it carries."""
    path, model, _ = described
    copy = tmp_path / "m1.keras"
    shutil.copy(path, copy)
    image = sample_image_path()
    x = ki.preprocess_input(load_image(image, SIZE, crop_pct=1.0)[None])
    expected = dict(zip(NAMES, np.asarray(model(x, training=False))[0].tolist(), strict=True))
    for keras_file in (path, copy):
        assert ki.cli.main(["predict", "--model", str(keras_file), "--top", "3", image]) == 0
        captured = capsys.readouterr()
        assert _scores(captured.out) == pytest.approx(expected, abs=1e-4)
        assert "note:" not in captured.err  # nothing was assumed


@pytest.mark.slow
def test_an_older_runs_file_reads_its_folder_with_a_warning(tmp_path):
    """A file without metadata but with the run folder an older version wrote: its names
    and crop, and a SidecarWarning saying where they came from."""
    from keras_inception.saving import SidecarWarning
    from keras_inception.train.evaluation import load_saved_model

    plain = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    plain.save(tmp_path / "best.keras")
    (tmp_path / "class_names.json").write_text(json.dumps(list(NAMES)))
    (tmp_path / "report.json").write_text(json.dumps({"crop_pct": 1.0, "model_file": "best.keras"}))
    with pytest.warns(SidecarWarning, match="read its class names and crop_pct 1 from the files"):
        model, metadata = load_saved_model(str(tmp_path / "best.keras"))
    assert metadata.class_names == NAMES and metadata.crop_pct == 1.0
    assert of_model(model) == metadata  # an export of it carries them


@pytest.mark.slow
def test_predict_refuses_a_saved_facenet(tmp_path):
    """A FaceNet `.keras` computes embeddings: one line pointing to embed and verify, no
    embedding components printed as class scores."""
    ki.FaceNet(weights=None, input_shape=(96, 96, 3)).save(tmp_path / "face.keras")
    for command in ("predict", "explain"):
        argv = [command, "--model", str(tmp_path / "face.keras"), sample_image_path()]
        if command == "explain":
            argv += ["--out", str(tmp_path / "maps")]
        proc = run_cli(*argv)
        assert_one_line_error(proc, "computes face embeddings", "keras-inception embed")
        assert proc.stdout == ""


@pytest.fixture(scope="module")
def dynamic_model(module_tmp_path):
    """A user's own Sequential model with a dynamic input and five outputs (no metadata)."""
    model = keras.Sequential([
        keras.Input((None, None, 3)),
        ki.InceptionResNetV1(include_top=False, input_shape=(None, None, 3), pooling="avg",
                             weights=None),
        keras.layers.Dense(5, activation="softmax"),
    ])
    path = module_tmp_path / "dynamic.keras"
    model.save(path)
    return path, model


@pytest.mark.slow
def test_a_model_with_a_dynamic_input_gets_the_default_size_said_once(dynamic_model, tmp_path):
    """predict, explain and evaluate answer at the default size 299, predict with one `note:`
    line naming what was assumed (it was a TypeError traceback)."""
    path, model = dynamic_model
    image = sample_image_path()
    proc = run_cli("predict", "--model", str(path), "--top", "5", image)
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "image size 299x299" in notes[0] and "crop_pct 0.875" in notes[0]
    x = ki.preprocess_input(load_image(image, 299, crop_pct=0.875)[None])
    expected = {f"class_{i}": v
                for i, v in enumerate(np.asarray(model(x, training=False))[0].tolist())}
    assert _scores(proc.stdout) == pytest.approx(expected, abs=1e-4)
    proc = run_cli("explain", "--model", str(path), image, "--out", str(tmp_path / "maps"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "maps" / "explanations.json").is_file()
    from keras_inception.train import evaluate

    report = evaluate(str(path), "flowers_sample", max_per_class=1)
    assert (report["image_size"], report["crop_pct"], report["num_images"]) == (299, 0.875, 5)


@pytest.mark.slow
def test_evaluate_reads_size_crop_and_names_from_the_file(described, flowers_dir, tmp_path):
    """evaluate of a copied file: its own size, crop and names (names that differ from the
    data's classes are refused, as from a run folder before)."""
    from keras_inception.train import evaluate

    path, _, _ = described
    copy = tmp_path / "copy.keras"
    shutil.copy(path, copy)
    with pytest.raises(ValueError, match=r"differ from those the model was trained on \(\['cat'"):
        evaluate(str(copy), str(flowers_dir), max_per_class=1)


def test_facenet_metadata_follows_its_weights_and_options():
    face = ki.FaceNet(weights=None, input_shape=(None, None, 3), embedding_dim=64,
                      standardization="fixed", include_preprocessing=False)
    metadata = of_model(face)
    assert metadata.image_size == (160, 160)  # the trained size for a dynamic input
    assert (metadata.embedding_dim, metadata.input_scaling, metadata.threshold) == (64, "fixed", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert describe(face, metadata) is face  # already described: updated in place


def _two_class_folder(root):
    """daisy and tulips from the package's flower sample: 6 train and 3 val photos each."""
    from keras_inception.train.data import sample_dir

    for split, count in (("train", 6), ("val", 3)):
        for name in ("daisy", "tulips"):
            target = root / split / name
            target.mkdir(parents=True)
            for photo in sorted((Path(sample_dir()) / split / name).iterdir())[:count]:
                shutil.copy(photo, target / photo.name)
    return root


def _keras_answers(argv: list[str]) -> list[tuple[str, dict[str, float]]]:
    proc = run_cli("predict", *argv, "--top", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note:" not in proc.stderr  # nothing assumed: the file says it all
    answers, lines = [], proc.stdout.splitlines()
    for start in range(0, len(lines), 3):
        answers.append((lines[start + 1].split()[1], _scores("\n".join(lines[start:start + 3]))))
    return answers


def _runtime_scores(metadata, images, run) -> list[tuple[str, dict[str, float]]]:
    """Scores of an artifact run by `run` on images prepared as its metadata says."""
    crops = np.stack([load_image(p, metadata.image_size[0], crop_pct=metadata.crop_pct)
                      for p in images])
    assert metadata.input_scaling == "inception"
    scores = np.asarray(run(ki.preprocess_input(crops)))
    names = metadata.class_names
    return [(names[int(row.argmax())], dict(zip(names, row.tolist(), strict=True)))
            for row in scores]


@pytest.mark.slow
def test_a_facenet_run_answers_the_same_from_every_artifact(tmp_path, facenet_h5, monkeypatch):
    """A trained 2-class FaceNet run (crop 1.0, from the preset's weights): its best.keras, a
    copy elsewhere, a lone .tflite (float32 and the demo's int8), its SavedModel and its
    ONNX give the same top-1 and names; the float formats the same scores within 1e-3."""
    import onnxruntime
    import tensorflow as tf

    from keras_inception import export
    from keras_inception.apps.demo import export_model
    from keras_inception.metadata import read_metadata
    from keras_inception.presets.fetch import cache_dir
    from keras_inception.train.config import TrainConfig
    from keras_inception.train.loop import train

    shutil.copy(facenet_h5, Path(cache_dir()))  # the preset, as a fetch leaves it
    data = _two_class_folder(tmp_path / "data")
    run = tmp_path / "runs" / "r1"
    report = train(TrainConfig(model="facenet", weights="ms_celeb_1m", data=str(data),
                               out=str(run), image_size=80, batch_size=6, epochs=3,
                               stage1_epochs=3, learning_rate=3e-3, verbose=0))
    assert report["crop_pct"] == 1.0 and report["class_names"] == ["daisy", "tulips"]
    images = sorted(str(p) for p in (data / "val").rglob("*.jpg"))
    expected = _keras_answers(["--model", str(run / "best.keras"), *images])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(run / "best.keras", elsewhere / "m1.keras")
    model = ki.load_model(elsewhere / "m1.keras")
    lone = {"float32": export.export_tflite(model, elsewhere / "f32.tflite"),
            "int8": shutil.copy(export_model(report, str(run)), elsewhere / "int8.tflite")}
    saved = export.export_saved_model(model, elsewhere / "saved")
    onnx_path = export.export_onnx(model, elsewhere / "m.onnx")
    served = tf.saved_model.load(saved).signatures["serving_default"]
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    answers = {
        "copy": _keras_answers(["--model", str(elsewhere / "m1.keras"), *images]),
        **{kind: _keras_answers(["--tflite", str(path), *images]) for kind, path in lone.items()},
        "saved_model": _runtime_scores(read_metadata(saved), images, lambda x: list(
            served(tf.constant(x)).values())[0].numpy()),
        "onnx": _runtime_scores(read_metadata(onnx_path), images, lambda x: session.run(
            None, {session.get_inputs()[0].name: x})[0]),
    }
    assert len(expected) == 6 and all(set(scores) == {"daisy", "tulips"} for _, scores in expected)
    for kind, got in answers.items():
        assert [top for top, _ in got] == [top for top, _ in expected], kind
        if kind != "int8":
            for (_, scores), (_, want) in zip(got, expected, strict=True):
                assert scores == pytest.approx(want, abs=1e-3), kind
