"""`overwrite=True` / `--overwrite` replaces only a command's own output (`files.check_replaceable`):
never a folder the command did not make, an input's folder, the current folder, the home
folder or the root; a folder it made (its `.keras-inception-output` marker) is replaced whole,
unless something was added there since (refused: the added file is kept)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.runners import assert_one_line_error, run_cli

from keras_inception import files
from keras_inception.files import OUTPUT_MARKER

_FIXED = "--overwrite does not replace `--out`"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _marked_folder(folder: Path, command: str, names: dict[str, str]) -> Path:
    """A folder as `command` leaves it: `names` (file: text) and the marker listing them."""
    folder.mkdir()
    for name, text in names.items():
        (folder / name).write_text(text)
    files.write_output_marker(folder, command)
    return folder


def _refused(path, reason: str, **rule) -> None:
    with pytest.raises(FileExistsError, match=reason) as info:
        files.check_destination(path, overwrite=True, arg="--out", **rule)
    assert "\n" not in str(info.value) and _FIXED in str(info.value)


# --- the rule, in files.py ---------------------------------------------------------------------

def test_a_folder_is_replaced_only_when_the_command_made_it(tmp_path):
    """Refused: a non-empty folder without the marker, another command's folder, a marked
    folder holding an entry the command did not write. Allowed: an empty folder, a folder
    holding only what the marker lists."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    _refused(plain, f"`explain` did not make \\(it has no {OUTPUT_MARKER}\\)",
             command="explain", kind="folder")
    other = _marked_folder(tmp_path / "other", "export", {"saved_model.pb": "pb"})
    _refused(other, "made by `export`, not by `explain`", command="explain")
    own = _marked_folder(tmp_path / "own", "explain", {"0_a.png": "png", "explanations.json": "{}"})
    assert files.check_destination(own, overwrite=True, command="explain") == str(own)
    (own / "mine.txt").write_text("added by the user")
    _refused(own, r"holds entries that `explain` did not write there \(mine.txt\)",
             command="explain")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert files.check_destination(empty, overwrite=True, command="explain") == str(empty)
    assert json.loads((tmp_path / "own" / OUTPUT_MARKER).read_text()) == {
        "command": "explain", "written": ["0_a.png", "explanations.json"]}
    assert (plain / "notes.txt").read_text() == "mine"


def test_the_current_folder_home_and_root_are_never_replaced(tmp_path, monkeypatch):
    work, home = tmp_path / "w" / "work", tmp_path / "h" / "home"
    for folder in (work, home):
        folder.parent.mkdir()
        _marked_folder(folder, "explain", {"a.png": "png"})  # even a folder it made
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    _refused(".", "it is the current folder", command="explain")
    _refused(work.parent, f"it holds the current folder \\({str(work)!r}\\)", command="explain")
    _refused(home, "it is the home folder", command="explain")
    _refused("/", "it is the filesystem root", command="explain")
    assert (work / "a.png").is_file() and (home / "a.png").is_file()


def test_an_input_is_never_replaced(tmp_path):
    """The input itself, the folder holding it (even one the command marked), a path
    inside an input folder."""
    run = _marked_folder(tmp_path / "run", "explain", {"best.keras": "model"})
    model = run / "best.keras"
    _refused(run, f"it holds an input of the command \\({str(model)!r}\\)", command="explain",
             inputs=[str(model)])
    _refused(model, f"it is an input of the command \\({str(model)!r}\\)", suffix=".keras",
             inputs=[str(model)])
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    (calibration / "m.tflite").write_bytes(b"previous")
    _refused(calibration / "m.tflite", "is inside an input of the command", suffix=".tflite",
             inputs=[str(calibration)])
    assert model.read_text() == "model" and (calibration / "m.tflite").read_bytes() == b"previous"


def test_a_file_is_replaced_only_by_a_command_writing_that_kind_of_file(tmp_path):
    """A file where a folder is written, a folder where a file is written: refused. A file
    with the suffix the command writes: replaced."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    _refused(notes, "it is a file, but `explain` writes a folder here", command="explain",
             kind="folder")
    folder = _marked_folder(tmp_path / "e.npy", "embed", {"x": "y"})
    _refused(folder, "it is a folder, but `embed` writes a file here", command="embed",
             kind="file", suffix=".npy")
    with pytest.raises(ValueError, match=r"`--out` must end with '.npy'"):
        files.check_destination(notes, overwrite=True, suffix=".npy", arg="--out")
    previous = tmp_path / "e2.npy"
    previous.write_bytes(b"previous")
    files.write_atomic(previous, lambda staged: np.save(staged, np.ones(2)), suffix=".npy",
                       command="embed", kind="file")
    assert np.load(previous).tolist() == [1.0, 1.0]


def test_staged_path_marks_its_folders_and_replaces_them_whole(tmp_path):
    out = tmp_path / "out"
    for names in (["a.png", "b.png"], ["c.png"]):
        with files.staged_path(out, command="explain", kind="folder") as staged:
            os.mkdir(staged)
            for name in names:
                Path(staged, name).write_text(name)
        assert sorted(os.listdir(out)) == sorted([OUTPUT_MARKER, *names])
        assert files.read_output_marker(out) == {"command": "explain", "written": names}
    # A folder written without naming a command is not marked: never replaced once filled.
    with files.staged_path(tmp_path / "unnamed") as staged:
        os.mkdir(staged)
        Path(staged, "config.json").write_text("{}")
    assert os.listdir(tmp_path / "unnamed") == ["config.json"]
    _refused(tmp_path / "unnamed", "a command of keras_inception did not make")


def test_a_file_added_while_the_command_works_is_kept(tmp_path):
    """The rule is checked again just before the move: the new output is dropped instead."""
    out = _marked_folder(tmp_path / "out", "explain", {"a.png": "old"})
    with pytest.raises(FileExistsError, match=r"did not write there \(mine.txt\)"):
        with files.staged_path(out, command="explain") as staged:
            os.mkdir(staged)
            Path(staged, "a.png").write_text("new")
            (out / "mine.txt").write_text("added meanwhile")
    assert _tree(out) == {OUTPUT_MARKER: (out / OUTPUT_MARKER).read_bytes(), "a.png": b"old",
                          "mine.txt": b"added meanwhile"}
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging folder left


def test_train_overwrite_clears_no_input_and_not_the_current_folder(tmp_path, monkeypatch):
    """`train --overwrite` removes only the run's own outputs (RUN_OUTPUTS), by the same
    rule: not where one of them is the --weights file, not in the current folder."""
    from keras_inception.train import TrainConfig, run_folder

    out = tmp_path / "run"
    out.mkdir()
    (out / "best.keras").write_bytes(b"previous run's model")
    config = TrainConfig(out=str(out), model="inception_resnet_v1",
                         weights=str(out / "best.keras"))
    with pytest.raises(run_folder.RunFolderError, match=r"best.keras' is an input of the command"):
        run_folder.check(str(out), config, overwrite=True, chief=True)
    assert (out / "best.keras").read_bytes() == b"previous run's model"
    monkeypatch.chdir(out)
    config = TrainConfig(out=".", model="inception_resnet_v1", weights="none")
    with pytest.raises(run_folder.RunFolderError, match="is the current folder"):
        run_folder.check(os.path.abspath("."), config, overwrite=True, chief=True)
    assert (out / "best.keras").read_bytes() == b"previous run's model"


# --- the commands: refused before any work -------------------------------------------------------

@pytest.fixture
def run_copy(tmp_path) -> Path:
    """A copy of a training run's folder (the checks read no file's content)."""
    run = tmp_path / "runcopy"
    (run / "cache").mkdir(parents=True)
    for name in ("best.keras", "report.json", "history.csv", "cache/features-0.npz"):
        (run / name).write_text(name)
    return run


def test_explain_and_export_refuse_what_they_did_not_make(tmp_path, run_copy, monkeypatch,
                                                          no_work):
    (tmp_path / "images").mkdir()
    image = tmp_path / "images" / "image.png"
    image.write_bytes(b"read after the checks")
    model = str(run_copy / "best.keras")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    made_by_explain = _marked_folder(tmp_path / "maps", "explain", {"0_image.png": "png"})
    here = _marked_folder(tmp_path / "here", "explain", {"0_image.png": "png"})  # cwd
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    explain = ["explain", "--model", model, str(image), "--overwrite", "--out"]
    export = ["export", "--model", model, "--format", "saved_model", "--overwrite", "--out"]
    cases = [
        ([*explain, str(run_copy)], "it holds an input of the command", model),
        ([*export, str(run_copy)], "it holds an input of the command", model),
        ([*explain, str(image.parent)], "it holds an input of the command", str(image)),
        ([*explain, str(plain)], "`explain` did not make", OUTPUT_MARKER),
        ([*export, str(plain)], "`export` did not make", OUTPUT_MARKER),
        ([*export, str(made_by_explain)], "made by `explain`, not by `export`"),
        ([*explain, "."], "it is the current folder"),
        ([*export, "."], "it is the current folder"),
        ([*explain, str(home)], "it is the home folder"),
        ([*export, str(home)], "it is the home folder"),
        ([*explain, "/"], "it is the filesystem root"),
        ([*export, "/"], "it is the filesystem root"),
        ([*explain, str(image)], "it is an input of the command"),
        ([*explain, str(plain / "notes.txt")], "it is a file, but `explain` writes a folder"),
        (["export", "--model", model, "--format", "tflite", "--overwrite", "--out", model],
         "`--out` must end with '.tflite'"),
        (["export", "--model", model, "--format", "tflite", "--overwrite", "--out",
          str(plain)], "`--out` must end with '.tflite'"),
    ]
    before = _tree(tmp_path)
    for argv, *needles in cases:
        line = assert_one_line_error(run_cli(*argv, cwd=here), *needles)
        assert argv[-1] in line or os.path.abspath(argv[-1]) in line, line
    assert _tree(tmp_path) == before  # everything kept, nothing written


def test_embed_and_convert_refuse_an_input_and_a_folder(tmp_path, no_work):
    crop = tmp_path / "crop.npy"  # an input named like the output
    crop.write_bytes(b"crop")
    folder = _marked_folder(tmp_path / "e.npy", "embed", {"x": "y"})
    source = tmp_path / "source.weights.h5"
    source.write_bytes(b"weights")
    before = _tree(tmp_path)
    assert_one_line_error(run_cli("embed", str(crop), "--overwrite", "--out", str(crop)),
                          "it is an input of the command")
    assert_one_line_error(run_cli("embed", str(crop), "--overwrite", "--out", str(folder)),
                          "it is a folder, but `embed` writes a file")
    assert_one_line_error(run_cli("convert", "--from", "keras", str(source), "--model",
                                  "inception_v4", "--overwrite", "--out", str(source)),
                          "it is an input of the command")
    assert _tree(tmp_path) == before


# --- the commands: their own earlier output is replaced whole ------------------------------------

def _images(folder: Path, *names: str) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    paths = []
    for name in names:
        pixels = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(str(folder / name))
    return paths


@pytest.mark.slow
def test_explain_replaces_its_own_folder_and_keeps_a_users_file(tmp_path):
    """A second explain into its own folder: the old PNGs are gone, the new ones there. A
    file the user added to that folder: refused, the file and the old output kept."""
    from support.helpers import randomize_weights

    import keras_inception as ki

    model = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3), classes=3)
    randomize_weights(model, seed=1)
    keras_file = tmp_path / "model" / "m.keras"
    keras_file.parent.mkdir()
    model.save(keras_file)
    first, second = _images(tmp_path / "images", "a.png", "b.png"), _images(
        tmp_path / "more", "c.png")
    out = tmp_path / "maps"
    argv = ["explain", "--model", str(keras_file), "--layer", "block35_5_ac", "--out", str(out)]
    assert run_cli(*argv, *first).returncode == 0
    assert sorted(os.listdir(out)) == [OUTPUT_MARKER, "0_a.png", "1_b.png", "explanations.json"]
    proc = run_cli(*argv, *second, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == [OUTPUT_MARKER, "0_c.png", "explanations.json"]
    assert files.read_output_marker(out) == {"command": "explain",
                                             "written": ["0_c.png", "explanations.json"]}
    assert [r["image"] for r in json.loads((out / "explanations.json").read_text())["images"]
            ] == second
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    assert_one_line_error(run_cli(*argv, *first, "--overwrite"),
                          "holds entries that `explain` did not write there (notes.txt)")
    assert _tree(out) == before


@pytest.fixture(scope="module")
def tiny_keras(module_tmp_path) -> tuple[str, object]:
    """A small conv classifier (32x32, 3 classes) saved as .keras: exports take seconds."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")
    path = module_tmp_path / "tiny.keras"
    model.save(path)
    return str(path), model


@pytest.mark.slow
def test_export_replaces_its_own_saved_model_and_tflite(tiny_keras, tmp_path):
    """A second SavedModel export into the first's folder leaves nothing of the first (a
    file it wrote there is gone); the marker does not stop `tf.saved_model.load`. An
    existing .tflite is replaced by a TFLite export."""
    import tensorflow as tf

    model_path, model = tiny_keras
    out = tmp_path / "sm"
    argv = ["export", "--model", model_path, "--format", "saved_model", "--out", str(out)]
    assert run_cli(*argv).returncode == 0
    written = files.read_output_marker(out)["written"]
    assert "saved_model.pb" in written and "variables" in written
    # As if the first export had also written stale.txt: listed in its marker.
    (out / "stale.txt").write_text("first export's")
    files.write_output_marker(out, "export")
    proc = run_cli(*argv, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == sorted([OUTPUT_MARKER, *written])
    assert files.read_output_marker(out) == {"command": "export", "written": written}
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    got = serve(images=tf.constant(x))["predictions"].numpy()
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-5)
    assert not list(out.glob(f"*/**/{OUTPUT_MARKER}"))  # only at the top, not in assets

    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"previous")
    proc = run_cli("export", "--model", model_path, "--format", "tflite", "--overwrite",
                   "--out", str(tflite))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tflite.read_bytes()[4:8] == b"TFL3"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "sm"]
