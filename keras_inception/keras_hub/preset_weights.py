"""The weights files of the package's preset directories (`preset_dirs`): placeholders
until the weights are first asked for, then the weights, filled through the package's own
loader into the network keras-hub has just built, and written in their place.

A placeholder is an HDF5 file holding no weights, only the handle of the preset it
stands for (attribute `PLACEHOLDER_ATTR`): keras-hub reads a preset's weights with
`backbone.load_weights(path)` and `task.load_task_weights(path)`, which the family's
classes override to fill placeholders (`fill_backbone`, `fill_classifier`).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import h5py
import keras

from keras_inception.keras_hub.presets import build_network, resolve_preset

# keras-hub's name of a preset directory's backbone weights.
BACKBONE_WEIGHTS = "model.weights.h5"
# The attribute of a placeholder weights file: the preset it stands for, as JSON.
PLACEHOLDER_ATTR = "keras_inception_weights_of"


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies the weights of `source`'s layers into `target`'s layers of the same names.

    Args:
        source: a model holding every weighted layer of `target` (by name).
        target: the model to fill.

    Raises:
        ValueError: a weighted layer of `target` is missing from `source` or has other
            shapes there; `target` is then unchanged.
    """
    pairs = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            values = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(f"{source.name!r} has no layer {layer.name!r} to copy.") from None
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != shapes:
            raise ValueError(f"Layer {layer.name!r}: {source.name!r} has weights of shapes "
                             f"{[v.shape for v in values]}, {target.name!r} needs {shapes}.")
        pairs.append((layer, values))
    for layer, values in pairs:
        layer.set_weights(values)


def write_placeholder(path: str, source: str, include_top: bool) -> None:
    """A weights file holding no weights, only the preset it stands for."""
    with h5py.File(path, "w") as f:
        f.attrs[PLACEHOLDER_ATTR] = json.dumps({"preset": source, "include_top": include_top})


def placeholder_of(path: str | os.PathLike) -> dict[str, Any] | None:
    """`{"preset": handle, "include_top": bool}` of a placeholder weights file, or None for
    any other file (real weights)."""
    path = os.fspath(path)
    if not (os.path.isfile(path) and h5py.is_hdf5(path)):
        return None
    with h5py.File(path, "r") as f:
        value = f.attrs.get(PLACEHOLDER_ATTR)
    return None if value is None else json.loads(value)


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[str]:
    """A temporary `.weights.h5` path beside `path`, moved onto it if the block succeeds."""
    staged = os.path.join(os.path.dirname(path), f".{uuid.uuid4().hex}.weights.h5")
    try:
        yield staged
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.remove(staged)


def _keeps_float32(model: keras.Model) -> bool:
    """Whether `model` holds its weights in float32 (so that a file it writes loses nothing)."""
    return all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in model.weights)


def fill_backbone(backbone: keras.Model, path: str, placeholder: dict[str, Any]) -> None:
    """Fills `backbone` with the weights of the preset a placeholder stands for (through
    the package's loader) and, for a float32 backbone, writes them over the placeholder
    `path`."""
    network = build_network(resolve_preset(placeholder["preset"]), include_top=False)
    copy_weights(network, backbone)
    if _keeps_float32(backbone):
        with _replacing(path) as staged:
            backbone.save_weights(staged)


def fill_classifier(classifier: Any, path: str, placeholder: dict[str, Any]) -> None:
    """Fills `classifier` (backbone and head) with the weights of the classifier preset a
    placeholder stands for (through the package's loader) and, for a float32 model, writes
    them over the placeholder `path` and the backbone's placeholder beside it."""
    network = build_network(resolve_preset(placeholder["preset"]), include_top=True)
    copy_weights(network, classifier.backbone)
    head = classifier.output_dense  # named as the package's head ("predictions")
    head.set_weights(network.get_layer(head.name).get_weights())
    classifier.backbone.filled_from = placeholder["preset"]  # its placeholder: nothing to do
    if not _keeps_float32(classifier):
        return
    with _replacing(path) as staged:
        classifier.save_task_weights(staged)
    backbone_path = os.path.join(os.path.dirname(path), BACKBONE_WEIGHTS)
    if placeholder_of(backbone_path) is not None:
        with _replacing(backbone_path) as staged:
            classifier.backbone.save_weights(staged)
