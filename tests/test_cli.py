"""The `keras-inception` command line: summary and predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.helpers import randomize_weights

import keras_inception as ki
from keras_inception import explain
from keras_inception.cli import main
from keras_inception.preprocessing import load_image, sample_image_path


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("summary", "predict", "explain", "demo", "weights"):
        assert command in out


def test_summary_prints_params_and_gmacs(capsys):
    assert main(["summary", "--model", "inception_resnet_v1"]) == 0
    out = capsys.readouterr().out
    assert "22,769,848" in out and "6.21" in out and "299x299x3" in out


@pytest.mark.slow
def test_predict_top5_with_class_names(tmp_path, capsys):
    model = ki.InceptionResNetV1(weights=None)
    randomize_weights(model, seed=4)
    path = tmp_path / "irv1.weights.h5"
    model.save_weights(path)
    image = sample_image_path()
    assert main(["predict", "--model", "inception_resnet_v1", "--weights", str(path), image]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == image
    ranked = [line.split()[1] for line in lines[1:6]]
    expected = np.asarray(model(ki.preprocess_input(load_image(image, 299)[None]), training=False))
    top5 = [name for _, name, _ in ki.decode_predictions(expected, top=5)[0]]
    assert ranked == top5
    assert np.isclose(float(lines[1].split()[-1]), expected.max(), atol=1e-4)


def test_predict_without_weights_is_a_clear_error(capsys):
    assert main(["predict", "--model", "inception_resnet_v1", sample_image_path()]) == 2
    assert "--weights" in capsys.readouterr().err


def test_predict_missing_image(tmp_path, capsys):
    code = main(["predict", "--model", "inception_resnet_v2", "--weights", str(tmp_path / "none.h5"),
                 "x.jpg"])
    assert code == 2
    assert "none.h5" in capsys.readouterr().err


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"keras-inception {command}: error: "), err
    assert "Traceback" not in err and "Errno" not in err
    return lines[0]


def test_predict_with_an_embedding_model_points_to_embed_and_verify(capsys):
    """FaceNet has no classes: one line naming `embed` and `verify`, before any download."""
    assert main(["predict", "--model", "facenet", "--weights", "ms_celeb_1m",
                 sample_image_path()]) == 2
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert "--model facenet" in line and "keras-inception embed" in line
    assert "keras-inception verify" in line


def test_convert_of_a_file_that_is_not_the_source_format_is_one_line(tmp_path, capsys):
    """A random .safetensors (--from timm) and a random file (--from slim): one line naming
    SRC, the format and what was expected, exit 2, nothing written."""
    junk = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "random.safetensors").write_bytes(junk)
    (tmp_path / "random.ckpt").write_bytes(junk)
    out = tmp_path / "out.weights.h5"
    for source, src, expected in (("timm", "random.safetensors", "timm state dict"),
                                  ("slim", "random.ckpt", "TF-slim checkpoint")):
        assert main(["convert", "--from", source, str(tmp_path / src), "--model", "inception_v4",
                     "--no-top", "--out", str(out)]) == 2
        line = _one_error_line(capsys.readouterr().err, "convert")
        assert f"Cannot read SRC {str(tmp_path / src)!r} as --from {source}" in line
        assert expected in line
    assert not out.exists()


@pytest.mark.slow
def test_convert_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    """Like `export` and `embed`: an existing --out is kept (refused before any work) unless
    --overwrite is given; an --out inside a file names --out."""
    source = ki.InceptionResNetV1(weights=None, include_top=False)
    randomize_weights(source, seed=3)
    src = tmp_path / "src.weights.h5"
    source.save_weights(src)
    out = tmp_path / "out.weights.h5"
    out.write_bytes(b"previous")
    argv = ["convert", "--from", "keras", str(src), "--model", "inception_resnet_v1", "--no-top",
            "--out", str(out)]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "convert")
    assert "`--out` already exists" in line and "Pass --overwrite" in line
    assert "overwrite=True" not in line
    assert out.read_bytes() == b"previous"
    assert main([*argv[:-1], str(src / "x.weights.h5")]) == 2
    line = _one_error_line(capsys.readouterr().err, "convert")
    assert "`--out` is inside" in line and "which is a file" in line
    assert main([*argv, "--overwrite"]) == 0
    assert f"-> {out}" in capsys.readouterr().out  # written and verified by reloading
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


# --- arguments checked before TensorFlow is imported (issue 20, 18) ---------------------------
# An existing or unwritable --out, a missing input or weights file: refused at once, nothing
# built or computed first. `no_work` fails a test whose command gets past its checks.


@pytest.fixture
def readonly(tmp_path, monkeypatch):
    """A folder nothing can be written into, for root too (who writes through permission
    bits): creating a file there fails as on a read-only mount."""
    from support.helpers import refuse_writes_into

    folder = tmp_path / "readonly"
    folder.mkdir()
    refuse_writes_into(monkeypatch, folder, "open")
    return folder


def _refusal_cases(tmp_path, readonly=None) -> list[tuple[list[str], tuple[str, ...]]]:
    """(argv, what the one error line names) of commands refused by their checks."""
    existing = tmp_path / "existing.tflite"
    existing.write_bytes(b"previous")
    crop = sample_image_path()
    missing = str(tmp_path / "missing.jpg")
    cases = [
        (["export", "--model", "inception_v4", "--weights", "none", "--image-size", "75",
          "--format", "tflite", "--out", str(existing)], ("`--out` already exists", str(existing))),
        (["export", "--model", "inception_v4", "--weights", "none", "--format", "tflite",
          "--quantize", "int8", "--calibration-data", str(tmp_path / "nodata"), "--out",
          str(tmp_path / "q.tflite")], ("--calibration-data", "nodata", "folder of images")),
        (["embed", crop, missing, "--out", str(tmp_path / "e.npy")], ("CROP", missing)),
        (["verify", crop, missing], ("CROP", missing)),
        (["predict", "--model", "inception_v4", "--weights", "none", missing], ("IMAGE", missing)),
        (["predict", "--model", "inception_v4", "--weights", str(tmp_path / "w.h5"), crop],
         ("--weights", "w.h5", "not found")),
        (["train", "--weights", str(tmp_path / "w.h5"), "--out", str(tmp_path / "run")],
         ("--weights", "w.h5")),
        (["train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "run")],
         ("--data", "nodata", "folder of images")),
        (["evaluate", "--model", str(tmp_path / "best.keras")], ("--model", "best.keras")),
        (["convert", "--from", "timm", str(tmp_path / "m.safetensors"), "--model",
          "inception_v4", "--out", str(tmp_path / "v4.weights.h5")], ("SRC", "m.safetensors")),
        (["explain", "--model", str(tmp_path / "m.tflite"), crop, "--out", str(tmp_path / "x")],
         ("'" + str(tmp_path / "m.tflite") + "'", "need gradients", "the .keras file")),
        (["explain", "--model", "inception_v4", "--weights", "imagenet", crop, missing, "--out",
          str(tmp_path / "x")], ("IMAGE", missing)),
        (["explain", "--model", "facenet", crop, "--out", str(tmp_path / "x")],
         ("--model facenet", "explain.grad_cam(model, crops, target=reference_embeddings)")),
    ]
    if readonly is not None:
        cases += [
            (["export", "--model", "inception_v4", "--weights", "none", "--format", "tflite",
              "--out", str(readonly / "m.tflite")], ("Cannot write into", "`--out`")),
            (["embed", crop, "--out", str(readonly / "e.npy")], ("Cannot write into", "`--out`")),
            (["train", "--out", str(readonly / "run")], ("Cannot write into", "`--out`")),
            (["convert", "--from", "keras", crop, "--model", "inception_v4", "--out",
              str(readonly / "v4.weights.h5")], ("Cannot write into", "`--out`")),
        ]
    return cases


def test_refusals_come_before_tensorflow(tmp_path, readonly, no_work):
    from support.runners import assert_one_line_error, run_cli

    for argv, needles in _refusal_cases(tmp_path, readonly):
        assert_one_line_error(run_cli(*argv), *needles)
    assert (tmp_path / "existing.tflite").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.tflite", "readonly"]


def test_the_writable_check_writes(tmp_path, readonly):
    """Permission bits do not tell (root writes through them): the check tries a write,
    and leaves nothing behind where it succeeds."""
    from keras_inception.files import check_writable_parent

    with pytest.raises(PermissionError, match=r"Cannot write into .*readonly.*`--out`"):
        check_writable_parent(readonly / "sub" / "x.npy", "--out")
    check_writable_parent(tmp_path / "new" / "x.npy", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["readonly"]


@pytest.mark.subprocess
def test_refusals_import_neither_keras_nor_tensorflow(tmp_path):
    """In a fresh interpreter, as a user runs them: each refusal is one line, exit 2, and
    neither Keras nor TensorFlow has been imported when the command ends."""
    import json

    from support.runners import run_python

    cases = _refusal_cases(tmp_path)
    code = (
        "import contextlib, io, json, sys\n"
        "from keras_inception.cli import main\n"
        "results = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        results.append([main(argv), err.getvalue()])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow'})\n"
        "print(json.dumps([results, heavy]))\n"
    )
    proc = run_python(code, json.dumps([argv for argv, _ in cases]), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results, heavy = json.loads(proc.stdout.splitlines()[-1])
    assert heavy == []
    for (argv, needles), (code, err) in zip(cases, results, strict=True):
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and ": error:" in lines[0], (argv, err)
        assert all(needle in lines[0] for needle in needles), (argv, lines[0])


# --- predict with a trained model: its run's crop, no options that do not apply (issue 20, 14) ---


@pytest.fixture(scope="module")
def trained_folder(module_tmp_path):
    """A run's folder as `train` leaves it: best.keras (a small IR-v1, 75 px, 3 classes),
    class_names.json, and report.json recording crop_pct 1.0."""
    import json

    model = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3), classes=3)
    randomize_weights(model, seed=5)
    folder = module_tmp_path
    model.save(folder / "best.keras")
    (folder / "class_names.json").write_text(json.dumps(["a", "b", "c"]))
    (folder / "report.json").write_text(json.dumps({"crop_pct": 1.0, "model_file": "best.keras"}))
    return folder, model


def _scores(printed: str) -> dict[str, float]:
    return {line.split()[1]: float(line.split()[2]) for line in printed.splitlines()[1:]}


@pytest.mark.slow
def test_predict_with_a_trained_model_uses_the_crop_its_run_recorded(trained_folder, tmp_path,
                                                                    capsys):
    """Like `evaluate`: report.json's crop_pct, else run.json's settings (a run still under
    way); a .keras that no run wrote gets 0.875, a preset its own crop."""
    import json
    import shutil

    from keras_inception.cli.core import load_classifier
    from keras_inception.train.config import evaluation_crop_pct
    from keras_inception.train.run_folder import recorded_crop_pct

    folder, model = trained_folder
    image = sample_image_path()

    def expected(crop_pct: float) -> dict[str, float]:
        x = ki.preprocess_input(load_image(image, 75, crop_pct=crop_pct)[None])
        return dict(zip("abc", np.asarray(model(x, training=False))[0].tolist(), strict=True))

    full, center = expected(1.0), expected(0.875)
    assert max(abs(full[k] - center[k]) for k in "abc") > 1e-3  # the crop shows
    assert main(["predict", "--model", str(folder / "best.keras"), "--top", "3", image]) == 0
    assert _scores(capsys.readouterr().out) == pytest.approx(full, abs=1e-4)

    running = tmp_path / "running"
    running.mkdir()
    shutil.copy(folder / "best.keras", running / "best.keras")
    (running / "run.json").write_text(json.dumps({"config": {
        "model": "inception_resnet_v1", "weights": None, "crop_pct": 1.0}, "finished": False}))
    assert recorded_crop_pct(str(running / "best.keras")) == 1.0
    shutil.copy(folder / "best.keras", tmp_path / "other.keras")
    assert recorded_crop_pct(str(tmp_path / "other.keras")) is None
    assert recorded_crop_pct(str(folder / "best.keras")) == 1.0

    def crop(model: str, crop_pct: float | None = None) -> float:
        return load_classifier(model, None, None, crop_pct)[1].crop_pct

    assert crop(str(tmp_path / "other.keras")) == 0.875
    assert crop(str(folder / "best.keras"), crop_pct=0.5) == 0.5
    # A preset's own crop (what `load_classifier` gives a model name with that preset).
    assert evaluation_crop_pct("inception_resnet_v2", "imagenet", None) == 0.8975


@pytest.mark.parametrize("options, named", [
    (["--image-size", "160"], "`--image-size` applies to model names"),
    (["--weights", "imagenet"], "`--weights` applies to model names"),
])
def test_predict_refuses_options_a_keras_file_does_not_take(tmp_path, no_work, options, named):
    """As `export` refuses them: one line naming the option and the value, before any work
    (the file is not even read)."""
    from support.runners import assert_one_line_error, run_cli

    model = str(tmp_path / "best.keras")
    (tmp_path / "best.keras").write_bytes(b"a saved model")
    folder = tmp_path
    for command in (["predict", "--model", model, *options, sample_image_path()],
                    ["export", "--model", model, *options, "--format", "tflite", "--out",
                     str(folder / "m.tflite")]):
        assert_one_line_error(run_cli(*command), named, " ".join(options), repr(model))


# --- what the answers hold for (issue 20, 20) ------------------------------------------------


def test_a_far_too_small_image_gets_a_warning():
    """Under half the model's input on the short side: one warning naming file and size."""
    from keras_inception.cli.images import small_image_warning

    assert small_image_warning("a.png", 80, 200, 160) is None  # half: still fine
    assert small_image_warning("a.png", 10, 10, 160) == (
        "a.png is 10x10 pixels, less than half the model's 160x160 input: it is enlarged 16x, "
        "so the result on it is unreliable")
    assert "a.png is 300x1 pixels" in small_image_warning("a.png", 1, 300, 75)


@pytest.mark.slow
def test_embed_warns_on_tiny_crops_and_verify_says_what_it_holds_for(tmp_path):
    """10x10 and 1x1 crops are embedded with one warning line each; `verify` of two flower
    photos prints its answer and that it holds for aligned face crops only."""
    from PIL import Image
    from support.runners import run_cli

    weights = tmp_path / "facenet.weights.h5"
    ki.FaceNet(weights=None).save_weights(weights)
    crops = []
    for side in (10, 1):
        crops.append(str(tmp_path / f"crop{side}.png"))
        Image.new("RGB", (side, side), (120, 90, 60)).save(crops[-1])
    proc = run_cli("embed", "--weights", str(weights), sample_image_path(), *crops,
                   "--out", str(tmp_path / "e.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if ": warning:" in line]
    assert len(warnings) == 2
    for line, side in zip(warnings, (10, 1), strict=True):
        assert line.startswith("keras-inception embed: warning: ")
        assert f"crop{side}.png is {side}x{side} pixels" in line and "160x160" in line
    assert np.load(tmp_path / "e.npy").shape == (3, 128)

    from keras_inception.train.data import sample_dir

    daisy, rose = (sorted((Path(sample_dir()) / "val" / name).iterdir())[0]
                   for name in ("daisy", "roses"))
    proc = run_cli("verify", "--weights", str(weights), str(daisy), str(rose))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[:2] == [str(daisy), str(rose)] and lines[2].startswith("distance ")
    assert lines[3] == ("(the answer holds for aligned face crops only, one face filling each "
                        "image as a face detector crops it; for other images the distance means "
                        "nothing)")


# --- explain: heatmaps of where a classifier looks ------------------------------------------


def _flowers(*names: str) -> list[str]:
    from keras_inception.train.data import sample_dir

    return [str(sorted((Path(sample_dir()) / "val" / name).iterdir())[0]) for name in names]


def _explanations(folder: Path) -> list[dict]:
    import json

    return json.loads((folder / "explanations.json").read_text())["images"]


def _png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (75, 75)
        return np.asarray(image)


def _reuse(monkeypatch, model) -> None:
    """The CLI gets the fixture's model instead of loading best.keras again (its copy), with
    the meaning its run folder gives it (crop 1.0, classes a, b, c)."""
    from keras_inception.cli import core
    from keras_inception.metadata import ModelMetadata

    def load(model_arg, weights, image_size, crop_pct=None):
        return model, ModelMetadata(image_size=(75, 75), crop_pct=crop_pct or 1.0,
                                    class_names=("a", "b", "c"))

    monkeypatch.setattr(core, "load_classifier", load)


def _peak(heatmap: np.ndarray) -> dict:
    row, col = explain.peak(heatmap)
    return {"row": int(row), "col": int(col), "relative_row": round((row + 0.5) / 75, 4),
            "relative_col": round((col + 0.5) / 75, 4)}


@pytest.mark.slow
def test_explain_writes_overlays_and_what_it_explained(trained_folder, tmp_path, monkeypatch):
    """best.keras (its run's crop 1.0, its class names): one overlay PNG per readable image
    at the model's input size and explanations.json, whose predicted class is
    model.predict's, peak grad_cam's; an unreadable image among them is one error line
    and exit 2. --target by name and by index explain the same class; an existing --out
    is kept without --overwrite."""
    from support.runners import assert_one_line_error, run_cli

    from keras_inception import explain
    from keras_inception.files import OUTPUT_MARKER

    folder, model = trained_folder
    daisy, dandelion = _flowers("daisy", "dandelion")
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    out = tmp_path / "maps"
    keras_file = str(folder / "best.keras")
    proc = run_cli("explain", "--model", keras_file, daisy, str(broken), dandelion,
                   "--layer", "block35_5_ac", "--out", str(out))
    assert_one_line_error(proc, repr(str(broken)), "as an image")
    stem = [Path(p).stem for p in (daisy, dandelion)]
    pngs = [f"0_{stem[0]}.png", f"2_{stem[1]}.png"]  # numbered as given: 1 is broken.jpg
    assert sorted(p.name for p in out.iterdir()) == sorted([*pngs, "explanations.json",
                                                            OUTPUT_MARKER])
    crops = np.stack([load_image(p, 75, crop_pct=1.0) for p in (daisy, dandelion)])
    x = ki.preprocess_input(crops.copy())
    probabilities = np.asarray(model(x, training=False))
    predicted = probabilities.argmax(axis=-1)
    maps = explain.grad_cam(model, x, target=predicted, layer="block35_5_ac")
    assert all(m.max() - m.min() > 0.5 for m in maps)  # maps that vary: a peak that means something
    records = _explanations(out)
    assert [r["image"] for r in records] == [daisy, dandelion]
    for i, record in enumerate(records):
        p = int(predicted[i])
        assert record["png"] == pngs[i]
        assert record["predicted"]["index"] == p and record["predicted"]["name"] == "abc"[p]
        assert record["predicted"]["score"] == pytest.approx(float(probabilities[i, p]), abs=1e-5)
        assert record["target"] == record["predicted"]  # by default, the predicted class
        assert record["method"] == "gradcam" and record["layer"] == "block35_5_ac"
        assert record["peak"] == _peak(maps[i])
        expected = explain.overlay(crops[i], maps[i])
        assert np.abs(_png_pixels(out / pngs[i]).astype(int) - expected).max() <= 1

    # --target by name, then by index: the same class explained, the same maps. The
    # default layer at 75 px is the deepest feature map larger than 1x1.
    _reuse(monkeypatch, model)
    previous = (out / "explanations.json").read_bytes()
    argv = ["explain", "--model", keras_file, daisy, "--method", "gradcam++", "--out", str(out)]
    assert_one_line_error(run_cli(*argv, "--target", "b"), "`--out` already exists", str(out))
    assert (out / "explanations.json").read_bytes() == previous
    assert run_cli(*argv, "--target", "b", "--overwrite").returncode == 0
    by_index = tmp_path / "by_index"
    assert run_cli(*argv[:-1], str(by_index), "--target", "1").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, pngs[0], "explanations.json"]
    (record,) = _explanations(out)
    assert _explanations(by_index) == [record]
    assert record["target"]["index"] == 1 and record["target"]["name"] == "b"
    assert record["target"]["score"] == pytest.approx(float(probabilities[0, 1]), abs=1e-5)
    assert record["method"] == "gradcam++" and record["layer"] == "block17_10_ac"
    heatmap = explain.grad_cam(model, x[:1], target=1, layer="block17_10_ac", method="gradcam++")
    assert record["peak"] == _peak(heatmap[0])
    assert np.array_equal(_png_pixels(out / pngs[0]), _png_pixels(by_index / pngs[0]))


@pytest.mark.slow  # ~3 s itself, and trained_folder takes ~8 s to build
def test_explain_integrated_gradients_sums_attributions_over_channels(trained_folder, tmp_path,
                                                                      monkeypatch):
    """The map of integrated gradients is |attribution| summed over the channels, divided
    by its maximum; the layer recorded is the model's input. (The attributions are
    computed with 4 steps instead of 32, and on the fixture's model, for the test's time.)"""
    from support.runners import run_cli

    from keras_inception import explain

    folder, model = trained_folder
    seen = []

    def integrated_gradients(*args, **kwargs):
        seen.append((args, kwargs, integrated(*args, **kwargs, steps=4)))
        return seen[-1][2]

    integrated = explain.integrated_gradients
    monkeypatch.setattr(explain, "integrated_gradients", integrated_gradients)
    _reuse(monkeypatch, model)
    (rose,) = _flowers("roses")
    out = tmp_path / "ig"
    proc = run_cli("explain", "--model", str(folder / "best.keras"), rose, "--method",
                   "integrated_gradients", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (args, kwargs, attributions), = seen
    x = ki.preprocess_input(load_image(rose, 75, crop_pct=1.0)[None])
    predicted = int(np.asarray(model(x, training=False)).argmax())
    np.testing.assert_allclose(args[1], x, atol=1e-6)
    assert list(kwargs["target"]) == [predicted]
    heatmap = np.abs(attributions[0]).sum(axis=-1)
    heatmap /= heatmap.max()
    (record,) = _explanations(out)
    assert record["method"] == "integrated_gradients" and record["layer"] == "input_layer"
    assert record["target"]["index"] == record["predicted"]["index"] == predicted
    assert record["peak"] == _peak(heatmap)
    expected = explain.overlay(load_image(rose, 75, crop_pct=1.0), heatmap)
    assert np.abs(_png_pixels(out / record["png"]).astype(int) - expected).max() <= 1


@pytest.mark.slow  # fast itself, but trained_folder takes ~8 s to build
def test_explain_refuses_unknown_classes_and_layers(trained_folder, tmp_path, monkeypatch):
    """One line naming the value and what is accepted, exit 2, nothing written. (The model
    is the fixture's own, instead of best.keras loaded again for each case.)"""
    from support.runners import assert_one_line_error, run_cli

    folder, model = trained_folder
    _reuse(monkeypatch, model)
    argv = ["explain", "--model", str(folder / "best.keras"), *_flowers("tulips"), "--out",
            str(tmp_path / "out")]
    assert_one_line_error(run_cli(*argv, "--target", "zebra"), "Unknown --target 'zebra'",
                          "(a, b, c)", "0..2")
    assert_one_line_error(run_cli(*argv, "--target", "3"), "--target '3' is out of range",
                          "(a, b, c)", "0..2")
    line = assert_one_line_error(run_cli(*argv, "--layer", "block99"), "layer='block99'")
    assert "block35_5_ac" in line and "block8_5_ac" in line  # the feature taps
    assert list(tmp_path.iterdir()) == []


def test_explain_target_names_of_imagenet():
    """ImageNet's names for a 1000-class model: a name, an index, a name two classes share,
    and an unknown name listed short."""
    from keras_inception.cli.explain import target_index
    from keras_inception.preprocessing import imagenet_classes

    names = [imagenet_classes()[i][1] for i in range(1000)]
    assert target_index("goldfish", names) == 1 and target_index("999", names) == 999
    with pytest.raises(ValueError, match=r"'crane' names 2 classes \(indices 134, 517\)"):
        target_index("crane", names)
    with pytest.raises(ValueError) as info:
        target_index("zebr", names)
    message = str(info.value)
    assert "Unknown --target 'zebr'" in message and "(1000 names)" in message
    assert "0..999" in message and len(message) < 300
