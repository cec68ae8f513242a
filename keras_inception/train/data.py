"""Input data for training and evaluation: image folders, tfds datasets, the embedded sample.

Sources (`load_data(source)`):

* `"flowers_sample"`: 250 flower photos shipped in the package (5 classes,
  40 train + 10 val each, CC BY 2.0, see `assets/flowers_sample/CREDITS.txt`);
* `"tfds:NAME"`: a registered tensorflow-datasets dataset, read from `data_dir`
  (downloaded only with `download=True`);
* a folder `ROOT/<split>/<class>/*.jpg|png` or `ROOT/<class>/*` (split into train/val
  with a seeded shuffle), both listed by the same functions.

Folder images are checked once before training: files that cannot be decoded are
left out with a single `CorruptImageWarning` that counts and names them, so that no
epoch stops on a bad file. The pipeline (`make_pipeline`) runs in tf.data, outside
the model: decode, random resized crop + flip (training) or the package's evaluation
transform with the model's crop_pct (`preprocessing.center_crop_tf`), the package's
scaling to [-1, 1] (`preprocessing.tf_preprocess`), batching, caching, prefetching.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import warnings
from importlib import resources
from typing import Any

import tensorflow as tf

from keras_inception.preprocessing import (
    DEFAULT_CROP_PCT,
    center_crop_tf,
    decode_image_tf,
    tf_preprocess,
)
from keras_inception.train.config import SAMPLE_NAME, TFDS_PREFIX, TrainingNotice

# The image files a folder source lists (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TRAIN_SPLITS = ("train",)
VAL_SPLITS = ("val", "validation", "test")
AUTOTUNE = tf.data.AUTOTUNE
# Full-size images decoded (and resized to what the pipeline keeps) at once: a 12-megapixel
# photo is 36 MB decoded. AUTOTUNE would decode one per core and buffer as many more.
IMAGE_PARALLELISM = 2


class CorruptImageWarning(TrainingNotice):
    """Some image files could not be decoded and were left out (one line, see
    `TrainingNotice`)."""


@dataclasses.dataclass
class ImageData:
    """Decoded train/val splits: `(uint8 image HxWx3, int64 label)` elements."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list[str]
    train_count: int
    val_count: int
    source: str
    skipped: list[str] = dataclasses.field(default_factory=list)
    # What identifies the images (files and labels in order): keys of cached features.
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def sample_dir() -> str:
    """Path of the embedded `flowers_sample` dataset (`train/` and `val/` class folders)."""
    return str(resources.files("keras_inception").joinpath("assets", SAMPLE_NAME))


def load_data(
    source: str | os.PathLike,
    *,
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_per_class: int | None = None,
) -> ImageData:
    """Loads train and validation splits from `source` (see the module docstring).

    Args:
        source: `"flowers_sample"`, `"tfds:NAME"` or a folder path.
        data_dir: tensorflow-datasets data folder for `tfds:` sources.
        download: allow tfds to download and prepare a `tfds:` dataset that is not
            in `data_dir` yet (the only case where the network is used).
        val_fraction: validation share when the source has no validation split.
        seed: seed of that split.
        max_per_class: keep at most this many images per class and split (quick runs;
            folder sources only).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no images, fewer than two classes, or an unknown tfds dataset.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1); received val_fraction={val_fraction!r}.")
    source = os.fspath(source)
    if source.startswith(TFDS_PREFIX):
        return _load_tfds(source[len(TFDS_PREFIX):], data_dir, download, val_fraction)
    root = sample_dir() if source == SAMPLE_NAME else os.path.expanduser(source)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"`data` must be {SAMPLE_NAME!r}, 'tfds:NAME' or an existing folder of images; "
            f"received {source!r}, which is not a folder."
        )
    splits, class_names = _folder_records(root)
    bad = find_unreadable([p for records in splits.values() for p, _ in records])
    if bad:
        shown = ", ".join(bad[:20]) + (", ..." if len(bad) > 20 else "")
        warnings.warn(
            f"Skipping {len(bad)} unreadable image file(s) in {root}: {shown}",
            CorruptImageWarning,
            stacklevel=2,
        )
        bad_set = set(bad)
        splits = {s: [r for r in records if r[0] not in bad_set] for s, records in splits.items()}
    if "val" not in splits:
        # After the scan, so that bad files do not unbalance the split.
        splits["train"], splits["val"] = _split(splits["train"], val_fraction, seed)
    if max_per_class is not None:
        splits = {s: _limit_per_class(r, max_per_class) for s, r in splits.items()}
    for split, records in splits.items():
        _check_split(records, class_names, split, root)
    train, val = (_records_dataset(splits[s]) for s in ("train", "val"))
    return ImageData(train, val, class_names, len(splits["train"]), len(splits["val"]),
                     source, skipped=bad, fingerprint=_fingerprint(splits))


def _fingerprint(splits: dict[str, list[tuple[str, int]]]) -> str:
    """What identifies a folder's images: the files (path, size, mtime) and labels in order."""
    digest = hashlib.sha256()
    for split in ("train", "val"):
        for path, label in splits[split]:
            info = os.stat(path)
            digest.update(f"{split}\0{path}\0{label}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _list_dirs(path: str) -> list[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def _list_images(path: str) -> list[str]:
    return sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)
    )


def _class_folders(folder: str) -> list[str]:
    """The subfolders of `folder` that hold images: the classes, sorted."""
    return [d for d in _list_dirs(folder) if _list_images(os.path.join(folder, d))]


def _class_records(folder: str, class_names: list[str]) -> list[tuple[str, int]]:
    """(path, label) of every image in `folder/<class>/`, classes in `class_names` order."""
    return [(path, label) for label, name in enumerate(class_names)
            if os.path.isdir(os.path.join(folder, name))
            for path in _list_images(os.path.join(folder, name))]


def _folder_records(root: str) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """{"train": [(path, label)], "val": [...]} and the class names of a folder
    ("val" is missing when the folder has no validation split). Both layouts are listed
    the same way (`_class_folders`, `_class_records`)."""
    subdirs = _list_dirs(root)
    if not subdirs:
        raise ValueError(
            f"No class folders in {root!r}: expected ROOT/<class>/*.jpg or "
            f"ROOT/<split>/<class>/*.jpg (image files ending in {', '.join(IMAGE_EXTENSIONS)})."
        )
    train_split = next((s for s in TRAIN_SPLITS if s in subdirs), None)
    if train_split is not None:
        # ROOT/<split>/<class>/*: the classes of every split, in one label order.
        val_split = next((s for s in VAL_SPLITS if s in subdirs), None)
        folders = {name: os.path.join(root, split)
                   for name, split in (("train", train_split), ("val", val_split)) if split}
        class_names = sorted({c for folder in folders.values() for c in _class_folders(folder)})
        return {name: sorted(_class_records(folder, class_names))
                for name, folder in folders.items()}, class_names
    # ROOT/<class>/*: one folder per class, split here.
    class_names = _class_folders(root)
    records = _class_records(root, class_names)
    if not records:
        raise ValueError(
            f"No images found in {root!r}: expected ROOT/<class>/*.jpg or "
            f"ROOT/<split>/<class>/*.jpg (extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    if len(class_names) < 2:
        raise ValueError(
            f"Found a single class ({class_names[0]!r}) in {root!r}; a classifier needs at "
            "least two class folders."
        )
    return {"train": records}, class_names


def _split(
    records: list[tuple[str, int]], val_fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Seeded per-class split, so every class appears in both parts when it can."""
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted({label for _, label in records}):
        items = sorted(r for r in records if r[1] == label)
        rng.shuffle(items)
        n_val = int(round(len(items) * val_fraction)) if len(items) > 1 else 0
        val += items[:n_val]
        train += items[n_val:]
    return sorted(train), sorted(val)


def _limit_per_class(records: list[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    kept, counts = [], {}
    for path, label in records:
        if counts.get(label, 0) < limit:
            counts[label] = counts.get(label, 0) + 1
            kept.append((path, label))
    return kept


def _check_split(records: list[tuple[str, int]], class_names: list[str], split: str,
                 root: str) -> None:
    labels = sorted({label for _, label in records})
    if not records:
        raise ValueError(f"The {split} split of {root!r} has no readable images.")
    if len(labels) < 2:
        raise ValueError(
            f"The {split} split of {root!r} has a single class "
            f"({class_names[labels[0]]!r}); it needs images of at least two classes."
        )


def find_unreadable(paths: list[str]) -> list[str]:
    """The files among `paths` that tf.io.decode_image cannot decode (`IMAGE_PARALLELISM`
    at a time)."""
    if not paths:
        return []

    def decode(path):
        return path, tf.shape(decode_image_tf(tf.io.read_file(path)))

    ds = tf.data.Dataset.from_tensor_slices(paths).map(decode,
                                                       num_parallel_calls=IMAGE_PARALLELISM)
    readable = {p.decode() for p, _ in ds.ignore_errors().as_numpy_iterator()}
    return [p for p in paths if p not in readable]


def _decode_file(path: tf.Tensor) -> tf.Tensor:
    return decode_image_tf(tf.io.read_file(path))


def limit_short_side(image: tf.Tensor, max_short_side: int) -> tf.Tensor:
    """Shrinks a uint8 image whose short side exceeds `max_short_side` (aspect kept,
    antialiased), so that what is cached holds no more pixels than the crops need."""
    shape = tf.shape(image)[:2]
    short = tf.reduce_min(shape)

    def shrink():
        scale = tf.cast(max_short_side, tf.float32) / tf.cast(short, tf.float32)
        size = tf.cast(tf.round(tf.cast(shape, tf.float32) * scale), tf.int32)
        resized = tf.image.resize(image, size, method="area", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return tf.cond(short > max_short_side, shrink, lambda: tf.cast(image, tf.uint8))


def _records_dataset(records: list[tuple[str, int]]) -> tf.data.Dataset:
    paths = [p for p, _ in records]
    labels = [label for _, label in records]
    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int64)))
    return ds.map(lambda p, y: (_decode_file(p), y), num_parallel_calls=IMAGE_PARALLELISM)


def _load_tfds(name: str, data_dir: str | None, download: bool, val_fraction: float) -> ImageData:
    import tensorflow_datasets as tfds

    if not name:
        raise ValueError("`data` 'tfds:NAME' needs a dataset name, e.g. 'tfds:tf_flowers'.")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"Unknown tensorflow-datasets dataset {name!r} (data='tfds:{name}'): "
            f"{str(e).splitlines()[0]}"
        ) from None
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"tfds dataset {name!r} is not prepared in data_dir={builder.data_dir!r}. "
                "Pass download=True (CLI: --download) to download it, or point data_dir "
                "(--data-dir) at a folder where it is prepared."
            )
        builder.download_and_prepare()
    splits = builder.info.splits
    val_split = next((s for s in VAL_SPLITS if s in splits), None)
    if "train" not in splits:
        raise ValueError(f"tfds dataset {name!r} has no 'train' split; it has {list(splits)}.")
    if val_split is None:
        # tfds' split slicing is deterministic: the last val_fraction of "train".
        pct = int(round(100 * (1 - val_fraction)))
        split_names = [f"train[:{pct}%]", f"train[{pct}%:]"]
    else:
        split_names = ["train", val_split]
    supervised = builder.info.supervised_keys
    if not supervised:
        raise ValueError(f"tfds dataset {name!r} has no (image, label) supervised keys.")
    label_feature = builder.info.features[supervised[1]]
    class_names = list(getattr(label_feature, "names", None) or [])
    if len(class_names) < 2:
        raise ValueError(f"tfds dataset {name!r} must have a ClassLabel with at least two classes.")
    train, val = (builder.as_dataset(split=s, as_supervised=True) for s in split_names)
    counts = [splits[s].num_examples for s in split_names]

    def to_rgb(image, label):
        image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
        return image, tf.cast(label, tf.int64)

    fingerprint = hashlib.sha256(
        f"{name}\0{builder.info.version}\0{split_names}\0{counts}".encode()).hexdigest()
    return ImageData(train.map(to_rgb), val.map(to_rgb), class_names, counts[0], counts[1],
                     f"{TFDS_PREFIX}{name}", fingerprint=fingerprint)


# --- the tf.data pipeline --------------------------------------------------------------


def random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Inception-style crop: 8-100% of the area, aspect 3/4-4/3, resized to `size`.

    `seed` is a stateless seed of shape (2,)."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        seed=seed,
    )
    image = tf.slice(image, begin, crop_size)
    return tf.image.resize(image, (size, size), method="bilinear")


def _augmented(ds: tf.data.Dataset, image_size: int, crop_pct: float, finish: Any, *,
               cache: bool, shuffle: bool, shuffle_buffer: int, seed: int | None
               ) -> tf.data.Dataset:
    """Training elements with random resized crops and flips, then `finish`."""
    # Photos are cached at no more than twice the crop size (random crops keep their
    # detail; a folder of 12-megapixel photos no longer fills the memory).
    max_short = max(2 * image_size, round(image_size / crop_pct))
    ds = ds.map(lambda image, label: (limit_short_side(image, max_short), label),
                num_parallel_calls=IMAGE_PARALLELISM)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # Stateless ops fed by a random stream that changes every epoch: seeded
    # stateful ops would repeat the same crops each epoch.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def augment(example, pair):
        image, label = example
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
        image = random_resized_crop(image, image_size, seed=crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return finish(image, label)

    return tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=AUTOTUNE)


def make_pipeline(
    ds: tf.data.Dataset,
    *,
    image_size: int,
    num_classes: int,
    batch_size: int,
    training: bool,
    crop_pct: float = DEFAULT_CROP_PCT,
    cache: bool = True,
    shuffle_buffer: int = 1024,
    seed: int | None = 0,
    augment: bool = True,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batched `(images in [-1, 1], one-hot labels)` from decoded `(image, label)` elements.

    Training: shuffle, random resized crop, horizontal flip (`augment=False`: the
    evaluation crop, still shuffled unless `shuffle=False`). Evaluation: center crop
    with `crop_pct`. Decoded images (training) or final crops (evaluation) are cached
    in memory when `cache` is True; batches are prefetched with AUTOTUNE. Full-size
    images are decoded and resized `IMAGE_PARALLELISM` at a time (the memory of a folder
    of large photos stays that of a few of them). Distributed,
    the batches are sharded between workers by data (`AutoShardPolicy.DATA`).
    """
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"`crop_pct` must be in (0, 1]; received crop_pct={crop_pct}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")

    def finish(image, label):
        # The package's one scaling, in TensorFlow ops: tf.data runs TensorFlow whatever
        # the Keras backend (keras.ops would be JAX's on JAX).
        image = tf.ensure_shape(tf_preprocess(image), (image_size, image_size, 3))
        return image, tf.one_hot(label, num_classes)

    if training and not augment:
        ds = ds.map(lambda image, label: (center_crop_tf(image, image_size, crop_pct), label),
                    num_parallel_calls=IMAGE_PARALLELISM)
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE)
    elif training:
        ds = _augmented(ds, image_size, crop_pct, finish, cache=cache, shuffle=shuffle,
                        shuffle_buffer=shuffle_buffer, seed=seed)
    else:
        ds = ds.map(
            lambda image, label: finish(center_crop_tf(image, image_size, crop_pct), label),
            num_parallel_calls=IMAGE_PARALLELISM)
        if cache:
            ds = ds.cache()
    # Under tf.distribute, each worker keeps its share of the batches (DATA policy): a
    # list of image paths or tfds records has no files to split between workers.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.batch(batch_size).prefetch(AUTOTUNE).with_options(options)
