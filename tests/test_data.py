"""keras_inception.train.data: offline loading, corrupt files, clear errors, the tf.data pipeline."""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest

from keras_inception.train import data as data_lib


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails and is recorded."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access blocked in tests (connect to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _sample_files(split: str, name: str, count: int) -> list[Path]:
    folder = Path(data_lib.sample_dir()) / split / name
    return sorted(folder.iterdir())[:count]


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    """ROOT/<class>/* with 5 good images in each of 3 classes, plus two corrupt files."""
    root = tmp_path / "flat"
    for name in ("daisy", "roses", "tulips"):
        (root / name).mkdir(parents=True)
        for path in _sample_files("train", name, 5):
            shutil.copy(path, root / name / path.name)
    good = _sample_files("train", "daisy", 6)[5].read_bytes()
    (root / "roses" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "tulips" / "notes.jpg").write_text("this is not an image\n")
    (root / "tulips" / "README.txt").write_text("ignored: not an image extension\n")
    return root


def test_embedded_sample_offline(no_network):
    images = data_lib.load_data("flowers_sample")
    assert images.class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (images.train_count, images.val_count) == (200, 50)
    assert images.skipped == []
    labels = [int(y) for _, y in images.val.as_numpy_iterator()]
    assert np.bincount(labels).tolist() == [10] * 5
    ds = data_lib.make_pipeline(images.train, image_size=80, num_classes=5, batch_size=16,
                                training=True)
    x, y = next(iter(ds))
    assert x.shape == (16, 80, 80, 3) and y.shape == (16, 5)
    assert -1.0 <= float(np.min(x)) < -0.5 and 0.5 < float(np.max(x)) <= 1.0
    assert np.allclose(np.sum(y, axis=1), 1.0)
    assert no_network == []


def test_embedded_sample_size_and_credits():
    root = Path(data_lib.sample_dir())
    files = [p for p in root.rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix == ".jpg"]
    assert len(images) == 250
    assert sum(p.stat().st_size for p in files) <= 4 * 1024 * 1024
    credits = (root / "CREDITS.txt").read_text(encoding="utf-8")
    credited = {line.split(" ", 1)[0] for line in credits.splitlines() if " CC-BY by " in line}
    assert credited == {str(p.relative_to(root)) for p in images}
    assert "creativecommons.org/licenses/by/2.0" in credits


def test_eval_crop_matches_load_image():
    """The evaluation pipeline is the package's transform (`center_crop_tf`, then
    `tf_preprocess`), which agrees with `load_image` up to resampling."""
    from keras_inception.preprocessing import (
        center_crop_tf,
        load_image,
        preprocess_input,
        tf_preprocess,
    )

    path = str(_sample_files("val", "roses", 1)[0])
    ds = data_lib._records_dataset([(path, 0)])
    x, _ = next(iter(data_lib.make_pipeline(ds, image_size=96, num_classes=2, batch_size=1,
                                            training=False, crop_pct=0.8)))
    image, _ = next(iter(ds))
    np.testing.assert_array_equal(np.asarray(x[0]),
                                  np.asarray(tf_preprocess(center_crop_tf(image, 96, 0.8))))
    expected = preprocess_input(load_image(path, 96, crop_pct=0.8))
    assert np.mean(np.abs(np.asarray(x[0]) - expected)) < 0.015


def test_flat_folder_split_and_corrupt_files(flat_folder, no_network):
    with pytest.warns(data_lib.CorruptImageWarning) as record:
        images = data_lib.load_data(flat_folder, val_fraction=0.4, seed=3)
    assert len(record) == 1
    message = str(record[0].message)
    assert "Skipping 2 unreadable" in message
    assert "truncated.jpg" in message and "notes.jpg" in message
    assert sorted(os.path.basename(p) for p in images.skipped) == ["notes.jpg", "truncated.jpg"]
    assert images.class_names == ["daisy", "roses", "tulips"]
    assert (images.train_count, images.val_count) == (9, 6)
    # Every remaining file decodes: a whole epoch runs through.
    ds = data_lib.make_pipeline(images.train, image_size=75, num_classes=3, batch_size=4,
                                training=True)
    assert sum(int(x.shape[0]) for x, _ in ds) == 9
    val_labels = sorted(int(y) for _, y in images.val.as_numpy_iterator())
    assert val_labels == [0, 0, 1, 1, 2, 2]
    # The split is seeded: same seed, same split; another seed, another one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data_lib.CorruptImageWarning)
        again = data_lib.load_data(flat_folder, val_fraction=0.4, seed=3)
        other = data_lib.load_data(flat_folder, val_fraction=0.4, seed=4)

    def val_images(d):
        return sorted(x.tobytes() for x, _ in d.val.as_numpy_iterator())

    assert val_images(again) == val_images(images)
    assert val_images(other) != val_images(images)
    assert no_network == []


def test_split_folder_layout(tmp_path, no_network):
    root = tmp_path / "splits"
    for split, count in (("train", 3), ("val", 2)):
        for name in ("sunflowers", "dandelion"):
            (root / split / name).mkdir(parents=True)
            for path in _sample_files(split, name, count):
                shutil.copy(path, root / split / name / path.name)
    images = data_lib.load_data(root)
    assert images.class_names == ["dandelion", "sunflowers"]
    assert (images.train_count, images.val_count) == (6, 4)
    assert sorted(int(y) for _, y in images.val.as_numpy_iterator()) == [0, 0, 1, 1]
    assert no_network == []


def test_registered_tfds_dataset_offline(tmp_path, no_network):
    import tensorflow_datasets as tfds

    class KiTinyFlowers(tfds.core.GeneratorBasedBuilder):
        """Six sample photos as a registered tfds dataset."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(),
                    "label": tfds.features.ClassLabel(names=["daisy", "roses"]),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for label, name in enumerate(("daisy", "roses")):
                for path in _sample_files("train", name, 5):
                    yield path.name, {"image": str(path), "label": label}

    KiTinyFlowers(data_dir=str(tmp_path)).download_and_prepare()
    images = data_lib.load_data("tfds:ki_tiny_flowers", data_dir=str(tmp_path),
                                val_fraction=0.2)
    assert images.class_names == ["daisy", "roses"]
    assert (images.train_count, images.val_count) == (8, 2)
    x, y = next(iter(images.train))
    assert x.dtype == np.uint8 and x.shape[-1] == 3 and int(y) in (0, 1)
    assert no_network == []
    with pytest.raises(FileNotFoundError, match="not prepared.*download"):
        data_lib.load_data("tfds:ki_tiny_flowers", data_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="Unknown tensorflow-datasets dataset 'no_such_set_x'"):
        data_lib.load_data("tfds:no_such_set_x", data_dir=str(tmp_path))
    assert no_network == []


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        data_lib.load_data(tmp_path / "missing_folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No class folders"):
        data_lib.load_data(tmp_path / "empty")
    (tmp_path / "no_images" / "daisy").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found"):
        data_lib.load_data(tmp_path / "no_images")
    single = tmp_path / "single" / "daisy"
    single.mkdir(parents=True)
    for path in _sample_files("train", "daisy", 3):
        shutil.copy(path, single / path.name)
    with pytest.raises(ValueError, match="single class.*'daisy'"):
        data_lib.load_data(tmp_path / "single")
    # A split layout whose val split has one class.
    for split, names in (("train", ("daisy", "roses")), ("val", ("roses",))):
        for name in names:
            (tmp_path / "onesided" / split / name).mkdir(parents=True)
            for path in _sample_files("train", name, 2):
                shutil.copy(path, tmp_path / "onesided" / split / name / path.name)
    with pytest.raises(ValueError, match="val split .* single class"):
        data_lib.load_data(tmp_path / "onesided")
    with pytest.raises(ValueError, match="val_fraction"):
        data_lib.load_data("flowers_sample", val_fraction=1.5)
