"""Inputs the command line cannot decode safely, and what training says: an image of more
pixels than PIL's limit (a decompression bomb) is one error line while the other images
are answered; a resumed stage says where it resumes; the training warnings are one line
without a source line; a head-only stage longer than the run is refused."""

from __future__ import annotations

import linecache
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support.runners import run_cli

from keras_inception.cli.images import load_input_images
from keras_inception.preprocessing import read_image, sample_image_path
from keras_inception.train import TrainConfig, feature_cache, plan_stages, resume
from keras_inception.train import data as data_lib

# --- images of more pixels than PIL's limit ---------------------------------------------


def _blank_png(path, width: int, height: int) -> str:
    """A 1-bit PNG: a few KB on disk whatever its size in pixels."""
    Image.new("1", (width, height)).save(path)
    return str(path)


def _bomb_line(path: str, pixels: int, limit: int) -> str:
    return (f"Cannot read {path!r} as an image: it has {pixels} pixels, more than PIL's limit "
            f"of {limit} (PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?); shrink it first")


def test_predict_answers_the_other_images_beside_a_decompression_bomb(tmp_path):
    """A 14000x14000 PNG (PIL's DecompressionBombError) beside a photo: the photo is
    classified, the PNG is one error line naming it, exit 1; alone, exit 2."""
    big = _blank_png(tmp_path / "big.png", 14000, 14000)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "tiny.keras")
    photo = sample_image_path()

    proc = run_cli("predict", "--model", str(tmp_path / "tiny.keras"), big, photo)
    assert proc.returncode == 1, proc.stderr
    assert _errors(proc.stderr) == [_bomb_line(big, 196_000_000, Image.MAX_IMAGE_PIXELS)]
    lines = proc.stdout.splitlines()
    assert lines[0] == photo and len(lines) == 4
    assert sorted(line.split()[1] for line in lines[1:]) == ["class_0", "class_1", "class_2"]

    alone = run_cli("predict", "--model", str(tmp_path / "tiny.keras"), big)
    assert alone.returncode == 2 and alone.stdout == ""
    assert _errors(alone.stderr) == [_bomb_line(big, 196_000_000, Image.MAX_IMAGE_PIXELS)]


def _errors(stderr: str) -> list[str]:
    """The error lines of `predict`'s stderr (its notes aside); never a traceback."""
    assert "Traceback" not in stderr and "DecompressionBomb" not in stderr, stderr
    prefix = "keras-inception predict: error: "
    return [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]


def test_images_over_pils_limit_are_unreadable_images(tmp_path, monkeypatch):
    """`load_input_images` (predict, explain, embed): over PIL's limit (its warning) and over
    twice the limit (its error), each is one error naming the file, its pixel count and the
    limit, and no DecompressionBombWarning escapes; the image within the limit loads."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    within = _blank_png(tmp_path / "within.png", 100, 90)  # 9000 pixels
    over = _blank_png(tmp_path / "over.png", 120, 100)  # 12000: PIL warns
    far_over = _blank_png(tmp_path / "far_over.png", 150, 150)  # 22500: PIL refuses
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, errors = load_input_images([over, within, far_over], 75, 0.875, "explain")
    assert [(position, path) for position, path, _ in loaded] == [(1, within)]
    assert loaded[0][2].shape == (75, 75, 3)
    assert errors == [_bomb_line(over, 12_000, 10_000), _bomb_line(far_over, 22_500, 10_000)]
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    with pytest.raises(ValueError, match="more than PIL's limit"):
        read_image(over)
    # No limit set (PIL's None): read as any other image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(far_over).shape == (150, 150, 3)


# --- a resumed stage says so -------------------------------------------------------------


def test_a_restored_backup_says_where_the_stage_resumes(tmp_path, capsys):
    """A stage killed after its epoch 2 and started again: one line with the stage, the
    epoch it resumes from and the backup it restores."""
    x, y = np.ones((4, 3), "float32"), np.ones((4, 2), "float32")

    def model() -> keras.Model:
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        net.compile(optimizer="adam", loss="mse")
        return net

    backup = tmp_path / "backup" / "head"
    model().fit(x, y, epochs=2, verbose=0, callbacks=[resume.StageBackup(str(backup), "head")])
    capsys.readouterr()
    progress = resume.read_progress(str(backup))
    model().fit(x, y, epochs=3, initial_epoch=progress.initial_epoch, verbose=0,
                callbacks=[resume.RestoreBackup(progress)])
    assert capsys.readouterr().out.splitlines() == [
        f"stage head: resuming from epoch 3, after epoch 2 (its backup: "
        f"{backup / 'epoch-0002.weights.h5'})"]


# --- training warnings: one line, no source line -----------------------------------------


def test_training_warnings_print_their_message_alone(tmp_path):
    """An unreadable feature cache: the warning the interpreter prints is `CacheWarning:
    message`, one line, not the package's line of code under it (which exists: the
    default format would print it). The same for CorruptImageWarning; other warnings keep
    the default format."""
    inputs = keras.Input((4, 4, 3))
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    ds = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 4, 4, 3), "float32"), np.eye(2, dtype="float32"))).batch(2)
    cache = feature_cache.FeatureCache(str(tmp_path), "key")
    (tmp_path / "cache").mkdir()
    with open(cache.path, "wb") as f:
        f.write(b"not a zip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.load_or_compute(base, [ds], ds)
    (record,) = [w for w in caught if issubclass(w.category, feature_cache.CacheWarning)]
    assert linecache.getline(record.filename, record.lineno).strip()  # a source line exists
    shown = warnings.formatwarning(record.message, record.category, record.filename,
                                   record.lineno, record.line)
    assert shown == f"CacheWarning: {record.message}\n" and cache.path in shown
    assert issubclass(feature_cache.CacheWarning, UserWarning)  # filters see a UserWarning

    skipped = warnings.formatwarning("Skipping 1 unreadable image file(s) in d: d/a.jpg",
                                     data_lib.CorruptImageWarning, __file__, 1)
    assert skipped == "CorruptImageWarning: Skipping 1 unreadable image file(s) in d: d/a.jpg\n"
    other = warnings.formatwarning("plain", UserWarning, __file__, 1)
    assert other.startswith(f"{__file__}:1: UserWarning: plain\n") and len(
        other.splitlines()) == 2


# --- a head-only stage longer than the run ------------------------------------------------


def test_stage1_epochs_over_epochs_is_refused(tmp_path):
    """`--stage1-epochs 5 --epochs 2` dropped the fine-tuning stage without a word: one line
    naming both options and what is accepted, exit 2, nothing written; the library refuses
    it too (`validate`, `plan_stages`), and as many head epochs as epochs stays accepted."""
    out = tmp_path / "run"
    # Refused first, before the (missing) data folder: and where it is not, no training
    # starts and nothing is downloaded.
    proc = run_cli("train", "--out", str(out), "--stage1-epochs", "5", "--epochs", "2",
                   "--data", str(tmp_path / "no_photos"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "keras-inception train: error: --stage1-epochs 5 is more than --epochs 2: the "
        "head-only stage takes the first of the run's epochs, 0 to 2 of them (fewer than 2 "
        "leaves epochs for the fine-tuning stage)."]
    assert not out.exists()

    config = TrainConfig(out=str(out), model="inception_resnet_v1", epochs=2, stage1_epochs=5)
    with pytest.raises(ValueError, match=r"^stage1_epochs=5 is more than epochs=2: .* 0 to 2 "):
        config.validate()
    with pytest.raises(ValueError, match=r"^stage1_epochs=5 is more than epochs=2"):
        plan_stages(config, 3)  # refused before any model is built
    TrainConfig(out=str(out), model="inception_resnet_v1", epochs=2, stage1_epochs=2,
                weights="none").validate()
