"""Evaluation of a classifier on a dataset: accuracy, top-5, per-class accuracy, confusion."""

from __future__ import annotations

import os
import sys
from typing import Any

import keras
import numpy as np

from keras_inception.metadata import ModelMetadata, describe, of_model
from keras_inception.saving import load_model, model_metadata, read_class_names
from keras_inception.train.run_folder import recorded_crop_pct


def evaluate_model(model: keras.Model, dataset, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, top-5 (with >= 6 classes), per-class accuracy and confusion matrix of
    `model` on the batched `(images, one-hot labels)` of `dataset`."""
    probs, labels = [], []
    for x, y in dataset:
        probs.append(np.asarray(model(x, training=False), np.float32))
        labels.append(np.argmax(np.asarray(y), axis=-1))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    n = len(class_names)
    if probs.shape[-1] != n:
        raise ValueError(
            f"The model has {probs.shape[-1]} outputs but the data has {n} classes "
            f"({', '.join(class_names[:10])}{', ...' if n > 10 else ''})."
        )
    preds = probs.argmax(-1)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, preds), 1)
    support = confusion.sum(1)
    report = {
        "accuracy": float((preds == labels).mean()),
        "num_images": int(len(labels)),
        "class_names": list(class_names),
        "per_class_accuracy": {
            name: (float(confusion[i, i] / support[i]) if support[i] else None)
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
    }
    if n >= 6:
        top5 = np.argsort(probs, axis=-1)[:, -5:]
        report["top5_accuracy"] = float(np.mean([l in t for l, t in zip(labels, top5, strict=True)]))
    return report


def load_saved_model(path: str) -> tuple[keras.Model, ModelMetadata]:
    """(Keras model carrying its meaning, its `ModelMetadata`) from a `.keras` file: the
    file's own metadata, else an older version's run folder (a `SidecarWarning`), else
    the defaults (a `note:` line on stderr names them). What `predict`, `explain`,
    `export` and `evaluate` read a saved model with."""
    model = load_model(path)
    recorded = None if of_model(model) is not None else recorded_crop_pct(path)
    metadata, note = model_metadata(model, path, recorded_crop_pct=recorded)
    if note is not None:
        print(note, file=sys.stderr)
    return describe(model, metadata), metadata


def evaluate(model_path: str, data: str, *, data_dir: str | None = None, batch_size: int = 32,
             crop_pct: float | None = None, split: str = "val",
             max_per_class: int | None = None) -> dict[str, Any]:
    """Evaluates a saved `.keras` classifier on the `split` ("val" or "train") of `data`.

    The model's input size, crop and class names come from the file
    (`load_saved_model`); `crop_pct` overrides its crop.
    """
    from keras_inception.train import data as data_lib

    if split not in ("train", "val"):
        raise ValueError(f"`split` must be 'train' or 'val'; received split={split!r}.")
    model, metadata = load_saved_model(model_path)
    if not metadata.is_classifier:
        raise ValueError(f"{model_path!r} computes embeddings ({metadata.embedding_dim}-d), not "
                         "classes: evaluate takes a classifier.")
    crop_pct = metadata.crop_pct if crop_pct is None else crop_pct
    images = data_lib.load_data(data, data_dir=data_dir, max_per_class=max_per_class)
    names = None if metadata.class_names is None else list(metadata.class_names)
    if names is not None and names != images.class_names:
        raise ValueError(
            f"The classes of {data!r} ({images.class_names}) differ from those the model was "
            f"trained on ({names})."
        )
    size = metadata.image_size[0]
    count = images.train_count if split == "train" else images.val_count
    if batch_size > count:
        # A larger batch is one batch of every image: no more than that is allocated.
        print(f"--batch-size {batch_size} is more than the {count} images: using batches of "
              f"{count}", file=sys.stderr)
        batch_size = count
    ds = data_lib.make_pipeline(
        images.train if split == "train" else images.val, image_size=size,
        num_classes=images.num_classes, batch_size=batch_size, training=False,
        crop_pct=crop_pct, cache=False,
    )
    report = evaluate_model(model, ds, images.class_names)
    report.update({"model": os.path.basename(model_path), "data": images.source,
                   "image_size": size, "crop_pct": crop_pct, "split": split})
    return report


__all__ = ["evaluate", "evaluate_model", "load_saved_model", "read_class_names"]
