"""What a model means, carried inside every model file the package writes.

A model's weights answer correctly only with the right input: its size, the evaluation
crop (`crop_pct`), the resampling, the pixel scaling (or the face standardisation), and
for reading the output, its kind (a classifier and its class names, or an embedding
model with its dimension, distance and threshold). `ModelMetadata` holds these; it is
stored as one JSON text under `METADATA_KEY` in each format:

* `.keras`: the config of `DescribedModel` (a registered functional model, so Keras'
  own `load_model` reads it back in safe mode, and `model.save` keeps it);
* SavedModel: `assets/keras_inception_metadata.json`;
* `.tflite`: the flatbuffer's metadata, under the same name;
* ONNX: `metadata_props`, under the same name.

Readers (`predict`, `explain`, `evaluate`, `embed`, `verify`, the runtimes) take the
meaning from the artifact first (`of_model`, `read_metadata`); a model without it gets
`infer_metadata`'s defaults, with the list of what was assumed so the caller can say so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

# The one name under which every format stores the metadata's JSON text.
METADATA_KEY = "keras_inception_metadata"
# The SavedModel asset that holds it.
SAVED_MODEL_ASSET = f"{METADATA_KEY}.json"
FORMAT_VERSION = 1

KINDS = ("classifier", "embedding")
# What the model's input expects (see `prepare`):
# "inception": RGB 0-255 scaled to [-1, 1] (`preprocessing.preprocess_input`);
# "prewhiten" / "fixed": a face crop standardised by `embeddings.preprocess_input(x, mode)`;
# "raw": RGB 0-255 as read (the model standardises or scales inside).
INPUT_SCALINGS = ("inception", "prewhiten", "fixed", "raw")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
DISTANCES = ("euclidean",)

DEFAULT_SIZE = 299
DEFAULT_CROP_PCT = 0.875


class MetadataError(ValueError):
    """Metadata that cannot be read or does not describe a model: one line naming where."""


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What a model's input and output mean.

    Args:
        kind: "classifier" or "embedding".
        image_size: `(height, width)` of the images the model takes.
        crop_pct: the evaluation crop: the short side is resized to `size / crop_pct`,
            then the center `size x size` is cropped (1.0: no margin, as face crops).
        interpolation: the resampling of that resize.
        input_scaling: what the input expects (`INPUT_SCALINGS`).
        class_names: a classifier's names, one per output (None: unnamed).
        embedding_dim, distance, threshold: an embedding model's output size, the
            distance its embeddings are compared with and the same-identity threshold.
        model: the network's name in the registry, when known ("facenet", ...).
    """

    kind: str = "classifier"
    image_size: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE)
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"
    input_scaling: str = "inception"
    class_names: tuple[str, ...] | None = None
    embedding_dim: int | None = None
    distance: str | None = None
    threshold: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, KINDS)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("input_scaling", self.input_scaling, INPUT_SCALINGS)
        size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else ()
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise MetadataError(f"`image_size` must be (height, width), positive integers; "
                                f"received image_size={self.image_size!r}.")
        object.__setattr__(self, "image_size", size)
        if not isinstance(self.crop_pct, (int, float)) or not 0 < self.crop_pct <= 1:
            raise MetadataError(f"`crop_pct` must be in (0, 1]; received crop_pct={self.crop_pct!r}.")
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.kind == "embedding":
            _check_choice("distance", self.distance or "euclidean", DISTANCES)

    @property
    def is_classifier(self) -> bool:
        return self.kind == "classifier"

    def to_dict(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["image_size"] = list(self.image_size)
        if self.class_names is not None:
            config["class_names"] = list(self.class_names)
        return {"format_version": FORMAT_VERSION, **config}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, config: dict[str, Any], where: str = "the metadata") -> ModelMetadata:
        if not isinstance(config, dict):
            raise MetadataError(f"Cannot read {where}: expected a JSON object; received "
                                f"{type(config).__name__}.")
        config = dict(config)
        version = config.pop("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MetadataError(f"Cannot read {where}: metadata format {version!r} is newer than "
                                f"this keras_inception reads ({FORMAT_VERSION}); upgrade it.")
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in config.items() if k in fields}
        try:
            return cls(**known)
        except (TypeError, MetadataError) as e:
            raise MetadataError(f"Cannot read {where}: {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "the metadata") -> ModelMetadata:
        try:
            config = json.loads(text)
        except ValueError as e:
            raise MetadataError(f"Cannot read {where}: not JSON ({e}).") from None
        return cls.from_dict(config, where)

    def replace(self, **changes: Any) -> ModelMetadata:
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise MetadataError(f"`{name}` must be one of {', '.join(choices)}; received "
                            f"{name}={value!r}.")


# --- Keras models -------------------------------------------------------------------------


def of_model(model: Any) -> ModelMetadata | None:
    """The metadata a Keras model carries (a `DescribedModel`), else None. A saved config's
    dict is checked here (a `MetadataError` naming the model when it is not metadata)."""
    metadata = getattr(model, "keras_inception_metadata", None)
    if isinstance(metadata, dict):
        metadata = ModelMetadata.from_dict(
            metadata, f"the metadata of model {getattr(model, 'name', '?')!r}")
        model.keras_inception_metadata = metadata
    return metadata if isinstance(metadata, ModelMetadata) else None


def describe(model: Any, metadata: ModelMetadata) -> Any:
    """`model` carrying `metadata`: the same layers and weights in a `DescribedModel`
    (a functional model whose saved config holds the metadata). A `DescribedModel` is
    updated in place; a functional or built Sequential model is wrapped (no copy)."""
    from keras_inception.layers import DescribedModel

    if not isinstance(metadata, ModelMetadata):
        raise TypeError(f"`metadata` must be a ModelMetadata; received {type(metadata).__name__}.")
    if isinstance(model, DescribedModel):
        model.keras_inception_metadata = metadata
        return model
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(f"Cannot describe {getattr(model, 'name', model)!r}: only a functional "
                         "or built Sequential model carries metadata (subclassed models do not).")
    # One tensor, not a list of one: calls and predictions keep the model's structure.
    described = DescribedModel(inputs=_single(inputs), outputs=_single(outputs), name=model.name,
                               metadata=metadata)
    described.trainable = model.trainable
    return described


def _single(tensors: list) -> Any:
    return tensors[0] if len(tensors) == 1 else tensors


def _static_size(model: Any) -> tuple[int, int] | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):  # several inputs: not an image model of ours
        return None
    if not shape or len(shape) != 4:
        return None
    height, width = shape[1], shape[2]
    return (int(height), int(width)) if height and width else None


def infer_metadata(model: Any) -> tuple[ModelMetadata, list[str]]:
    """The metadata of `model`: its own if it carries some, else what its structure tells
    (an `L2Normalize` output: an embedding model; a `FaceStandardization` or `Rescaling`
    inside: raw pixels; the input size) plus the defaults, with the names of the fields
    that were assumed (empty when the model carries its metadata)."""
    own = of_model(model)
    if own is not None:
        return own, []
    converted = _image_converter_metadata(model)
    if converted is not None:
        return converted
    from keras_inception.layers import FaceStandardization, L2Normalize

    layers = _all_layers(model)
    last = layers[-1] if layers else None
    assumed = ["crop_pct", "interpolation"]
    fields: dict[str, Any] = {}
    size = _static_size(model)
    if size is None:
        assumed.append("image_size")
    else:
        fields["image_size"] = size
    if any(isinstance(layer, FaceStandardization) for layer in layers):
        fields["input_scaling"] = "raw"
    else:
        assumed.append("input_scaling")
    if isinstance(last, L2Normalize):
        dim = int(model.output_shape[-1])
        fields.update(kind="embedding", embedding_dim=dim, distance="euclidean", crop_pct=1.0)
        if "input_scaling" not in fields:
            fields["input_scaling"] = "prewhiten"
        assumed.append("threshold")
    else:
        assumed.append("class_names")
    return ModelMetadata(**fields), assumed


def _image_converter_metadata(model: Any) -> tuple[ModelMetadata, list[str]] | None:
    """A keras-hub task's meaning from its preprocessor's image converter (size, crop,
    resizing, scaling), read by attribute: the core never imports keras-hub. None for
    other models."""
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    size = getattr(converter, "image_size", None)
    if converter is None or not size or None in tuple(size):
        return None
    standardization = getattr(converter, "standardization", None)
    scaling = standardization if standardization in ("prewhiten", "fixed") else "inception"
    interpolation = getattr(converter, "interpolation", "bicubic")
    metadata = ModelMetadata(
        image_size=(int(size[0]), int(size[1])), crop_pct=float(getattr(converter, "crop_pct", 1.0)),
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
        input_scaling=scaling)
    return metadata, ["class_names"]


def _all_layers(model: Any) -> list[Any]:
    """The layers of `model` and of the models nested in it, depth first, in order."""
    found = []
    for layer in getattr(model, "layers", ()):
        if hasattr(layer, "layers") and getattr(layer, "layers", None):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found


def assumed_line(assumed: Sequence[str], metadata: ModelMetadata, source: str) -> str:
    """One line saying which fields of `source`'s metadata were assumed, and their values."""
    values = {
        "image_size": f"image size {metadata.image_size[0]}x{metadata.image_size[1]}",
        "crop_pct": f"crop_pct {metadata.crop_pct:g}",
        "interpolation": f"{metadata.interpolation} resizing",
        "input_scaling": f"input scaling '{metadata.input_scaling}'",
        "class_names": "class names class_<i> (ImageNet's for 1000 outputs)",
        "threshold": "no distance threshold",
    }
    listed = ", ".join(values[name] for name in assumed if name in values)
    return (f"note: {source} carries no keras_inception metadata; assumed {listed} "
            "(save it with keras_inception to keep its meaning).")


# --- files ---------------------------------------------------------------------------------


def read_keras_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata in a `.keras` archive's config, read without building the model (cheap:
    the CLI checks a file before importing TensorFlow); None when it has none."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # not readable here: `load_model` says why, in one line
    inner = config.get("config") if isinstance(config, dict) else None
    stored = inner.get(METADATA_KEY) if isinstance(inner, dict) else None
    if stored is None:
        return None
    return ModelMetadata.from_dict(stored, f"the metadata of {path!r}")


def read_saved_model_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata asset of a SavedModel folder, or None."""
    asset = os.path.join(os.fspath(path), "assets", SAVED_MODEL_ASSET)
    if not os.path.isfile(asset):
        return None
    with open(asset, encoding="utf-8") as f:
        return ModelMetadata.from_json(f.read(), f"the metadata of {os.fspath(path)!r}")


def write_saved_model_metadata(path: str | os.PathLike, metadata: ModelMetadata) -> str:
    """Writes the metadata asset into the SavedModel folder at `path` (a staged folder)."""
    assets = os.path.join(os.fspath(path), "assets")
    os.makedirs(assets, exist_ok=True)
    target = os.path.join(assets, SAVED_MODEL_ASSET)
    with open(target, "w", encoding="utf-8") as f:
        f.write(metadata.to_json() + "\n")
    return target


def _from_entries(path: str | os.PathLike, read_entries: Any) -> ModelMetadata | None:
    """The metadata among the named entries that `read_entries(path)` finds in a file
    (`METADATA_KEY`), or None. The reader's ValueError (not a model of its format, a
    damaged file) becomes a one-line `MetadataError`; a missing file stays a
    FileNotFoundError."""
    path = os.fspath(path)
    try:
        entries = read_entries(path)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise MetadataError(str(e)) from None
    text = entries.get(METADATA_KEY)
    return None if text is None else ModelMetadata.from_json(text, f"the metadata of {path!r}")


def read_tflite_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata of a `.tflite` file: its flatbuffer's metadata entry `METADATA_KEY`,
    read without an interpreter (`keras_inception.export.tflite_metadata`); None when it
    carries none. FileNotFoundError for a missing file, a one-line `MetadataError` naming
    the file for one that is not a TFLite model or whose metadata cannot be read."""
    from keras_inception.export.tflite_metadata import read_tflite_entries

    return _from_entries(path, read_tflite_entries)


def read_onnx_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata of an `.onnx` file: its `metadata_props` entry `METADATA_KEY`
    (`keras_inception.export.onnx_metadata`; needs the `onnx` package); None when it
    carries none. FileNotFoundError for a missing file, a one-line `MetadataError` naming
    the file for one that is not an ONNX model or whose metadata cannot be read."""
    from keras_inception.export.onnx_metadata import read_metadata_props

    return _from_entries(path, read_metadata_props)


def read_openvino_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata of an OpenVINO IR: its `.xml`'s runtime information entry
    `METADATA_KEY` (`keras_inception.export.openvino_metadata`, read without OpenVINO);
    None when it carries none. FileNotFoundError for a missing file, a one-line
    `MetadataError` naming the file for one that is not an OpenVINO IR or whose metadata
    cannot be read."""
    from keras_inception.export.openvino_metadata import read_rt_info

    return _from_entries(path, read_rt_info)


def read_metadata(path: str | os.PathLike) -> ModelMetadata | None:
    """The metadata of the model file or folder at `path`, by its format: `.keras`,
    SavedModel folder, `.tflite`, `.onnx`, OpenVINO `.xml`. None when the file carries none."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_saved_model_metadata(path)
    if path.endswith(".keras"):
        return read_keras_metadata(path)
    if path.endswith(".tflite"):
        return read_tflite_metadata(path)
    if path.endswith(".onnx"):
        return read_onnx_metadata(path)
    if path.endswith(".xml"):
        return read_openvino_metadata(path)
    return None


__all__ = [
    "DEFAULT_CROP_PCT", "DEFAULT_SIZE", "INPUT_SCALINGS", "KINDS", "METADATA_KEY", "MetadataError",
    "ModelMetadata", "SAVED_MODEL_ASSET", "assumed_line", "describe", "infer_metadata", "of_model",
    "read_keras_metadata", "read_metadata", "read_onnx_metadata", "read_openvino_metadata",
    "read_saved_model_metadata", "read_tflite_metadata", "write_saved_model_metadata",
]
