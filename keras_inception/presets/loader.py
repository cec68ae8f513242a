"""Loading weights into a built model: a preset of its spec, or a file."""

from __future__ import annotations

import math
import os
import warnings
import zipfile

import keras
import numpy as np

from keras_inception import saving
from keras_inception._compat import parse_weights_mismatch
from keras_inception.convert import facenet_files
from keras_inception.presets import hub
from keras_inception.presets.converted import load_or_convert
from keras_inception.presets.fetch import (
    display_path,
    download,
    fetch_from_package,
    origin_of,
)
from keras_inception.registry import ModelSpec, WeightsPreset

# (model name, preset name) -> where this process last had the preset's weights from.
_PRESET_ORIGINS: dict[tuple[str, str], str] = {}


def preset_origin(model_name: str, name: str) -> str | None:
    """Where the weights of the preset `name` of `model_name` came from when this process
    last loaded them: "from the local cache (PATH)", "downloaded now from URL", "converted
    now from ... fetched through the Python package index (...)", ... None if not loaded."""
    return _PRESET_ORIGINS.get((model_name, name))


def _describe(path: str) -> str:
    origin = origin_of(path)
    return origin.describe() if origin is not None else f"from {display_path(path)}"


def load_preset(model: keras.Model, spec: ModelSpec, name: str, *, include_top: bool) -> str:
    """Fills `model` with the preset `name` of `spec` (downloaded or converted once)."""
    entry = spec.preset(name)
    if entry.source_format == "keras":
        path = download(entry.file_for(include_top))
        load_weights_file(model, path)
        _PRESET_ORIGINS[(spec.name, name)] = _describe(path)
        return path
    sources: list[str] = []  # filled when the preset is converted now (not cached)
    if entry.source_format == "timm":
        path = hub.load_converted(model, entry, include_top=include_top, sources=sources)
    else:
        path = load_or_convert(model, entry, include_top,
                               lambda model: _convert_original(model, entry, include_top, sources))
    _PRESET_ORIGINS[(spec.name, name)] = (
        f"converted now from the original file {sources[0]}, cached as {display_path(path)}"
        if sources else f"from the local cache ({display_path(path)}, converted once before)")
    return path


def _convert_original(model: keras.Model, entry: WeightsPreset, include_top: bool,
                      sources: list[str]) -> str:
    """Fills `model` from the preset's original file (FaceNet's: from the package index or
    a download); `sources` gets where that file came from. Returns its URL."""
    remote = entry.file_for(include_top)
    if entry.source_format == "facenet-keras":
        path = fetch_from_package(remote, entry.pip_requirement, entry.pip_member)
        facenet_files.load_facenet_keras_weights(model, path)
    elif entry.source_format == "facenet-pytorch":
        path = download(remote)
        facenet_files.load_facenet_pytorch_weights(model, path)
    else:
        raise ValueError(f"Unknown source format {entry.source_format!r} of preset {entry.name!r}.")
    sources.append(_describe(path))
    return remote.url


def _file_summary(path: str) -> str:
    """'N tensors, M values' of an h5 weights file, for error messages."""
    import h5py

    shapes: list[tuple] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: shapes.append(obj.shape) if isinstance(obj, h5py.Dataset)
                         else None)
    except OSError:
        return "unreadable"
    return f"{len(shapes)} tensors, {sum(math.prod(s) for s in shapes):,} values"


def _mismatch_message(path: str, model: keras.Model, error: Exception) -> str:
    """One short line from Keras' (very long) shape-mismatch error."""
    found = parse_weights_mismatch(error)
    parts = [f"Could not load weights from {path!r} into model {model.name!r}: the file does "
             "not fit this network"]
    if found.count is not None:
        parts.append(f"{found.count} layers disagree")
    if found.layer_name and found.expected_shape:
        parts.append(f"first: {found.layer_name} ({found.layer_class}) expects "
                     f"{found.expected_shape}, the file has {found.received_shape}")
    parts.append(f"file: {_file_summary(path)}; model: {len(model.weights)} tensors, "
                 f"{model.count_params():,} values")
    hint = "Build the network the weights were saved from (same model, classes and include_top)."
    names = {layer.name for layer in model.layers}
    if found.layer_name in names and isinstance(model.get_layer(found.layer_name), keras.layers.Dense):
        hint = ("The classifier differs: build the model with the file's number of classes, or "
                "include_top=False to load the rest.")
    return "; ".join(parts) + ". " + hint


def _restore(model: keras.Model, values: list[np.ndarray]) -> None:
    for variable, value in zip(model.weights, values, strict=True):
        variable.assign(value)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Loads `.weights.h5`, legacy `.h5` (keras.applications layout) or `.keras` weights.

    Errors name the file and say what is wrong with it in one line: missing,
    truncated or not a weights file, or weights of another network or class count.
    A file that fails to load leaves the model's weights as they were.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}.")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(
            f"Cannot read {path!r}: a .keras file is a zip archive and this one is not "
            "(damaged or not a Keras file). Save it again with model.save()."
        )
    # Keras assigns what fits before it raises: keep the values to restore on failure.
    before = [v.numpy() for v in model.weights]
    try:
        # Keras warns once per layer (with array dumps) before raising: the error below
        # says it in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saving.load_weights(model, path)  # a .keras archive in ~1 s, not ~27 s
    except saving.NotAKerasArchiveError:
        _restore(model, before)
        raise
    except ValueError as e:
        _restore(model, before)
        raise ValueError(_mismatch_message(path, model, e)) from None
    except (OSError, zipfile.BadZipFile, KeyError) as e:
        _restore(model, before)
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise ValueError(
            f"Cannot read weights from {path!r} ({type(e).__name__}: {first}): the file is "
            "truncated or not a Keras weights file. Download or save it again."
        ) from None
