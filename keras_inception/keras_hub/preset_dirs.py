"""The package's presets as keras-hub preset directories: the one way they are loaded.

keras-hub loads a preset from a directory of configs (`config.json`, `task.json`,
`preprocessor.json`, `image_converter.json`), `metadata.json` and weights
(`model.weights.h5`, `task.weights.h5`). Each preset of the registry (and each
`hf://timm/...` checkpoint the package converts) gets such a directory in the weights
cache, written from the registry without building a network (`preset_directory`). Until
the weights are first asked for, its weights files are placeholders naming the preset:
the family's `load_weights` / `load_task_weights` then fill the network keras-hub has just
built through the package's own loader (download, hash check, conversion) and write the
real files in their place, so that later loads read them like any keras-hub preset.

The presets are registered as keras-hub built-in presets (`register_presets`) whose
`"kaggle_handle"` is that directory, so keras-hub's base classes find them by name
(`keras_hub.models.ImageClassifier.from_preset("inception_v4_imagenet")`), with or
without weights; the family's own `from_preset` maps every handle with `keras_hub_handle`
and hands it to keras-hub's.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub import _compat
from keras_inception.keras_hub.model_card import write_model_card
from keras_inception.keras_hub.preset_weights import BACKBONE_WEIGHTS, write_placeholder
from keras_inception.keras_hub.presets import (
    BACKBONE_PARAMS,
    HF_PREFIX,
    converter_config,
    named_presets,
    preset_name,
    preset_table,
    resolve_preset,
    table_metadata,
)
from keras_inception.registry import WeightsPreset

# The folder of the weights cache that holds the preset directories.
PRESET_DIRS_FOLDER = "keras_hub_presets"
# keras-hub's key for where a built-in preset's files are.
HANDLE_KEY = "kaggle_handle"
# keras-hub's file names in a preset directory.
BACKBONE_CONFIG, TASK_CONFIG = "config.json", "task.json"
PREPROCESSOR_CONFIG, CONVERTER_CONFIG = "preprocessor.json", "image_converter.json"
METADATA_FILE, TASK_WEIGHTS = "metadata.json", "task.weights.h5"
# The family's classes, by the modules that define them (and register them with Keras).
PACKAGE = "keras_inception"
CLASSES = {
    "InceptionBackbone": "keras_inception.keras_hub.backbone",
    "InceptionImageClassifier": "keras_inception.keras_hub.classifier",
    "InceptionImageClassifierPreprocessor": "keras_inception.keras_hub.preprocessor",
    "InceptionImageConverter": "keras_inception.keras_hub.image_converter",
}
# Changed when the layout of the directories changes (a new folder is then written).
LAYOUT = "2"


def keras_hub_handle(preset: Any) -> str:
    """What keras-hub's `from_preset` is to read for the handle `preset`: the preset
    directory of a preset name or of an `hf://timm/...` checkpoint, else `preset` itself
    (a local preset directory, a `kaggle://` or `hf://` handle).

    Raises:
        ValueError: `preset` names nothing; the message lists the presets.
    """
    entry = resolve_preset(preset)
    if entry is None:
        return os.fspath(preset)
    named = named_presets()
    source = preset_name(entry) if named.get(preset_name(entry)) == entry else HF_PREFIX + entry.hf_repo
    return entry_directory(entry, source)


def preset_directory(name: str) -> str:
    """The keras-hub preset directory of the package's preset `name` (`preset_names()`)."""
    return entry_directory(named_presets()[name], name)


def entry_directory(entry: WeightsPreset, source: str) -> str:
    """The preset directory of `entry` in the weights cache, written on first use from the
    registry alone (no network built, nothing downloaded).

    The folder's name holds a digest of the registry entry, so that a changed entry (a
    mirror, new weights) gets a new directory.

    Args:
        entry: the preset.
        source: the handle that names it again (`resolve_preset(source)`), recorded in the
            placeholder weights files.
    """
    from keras_inception.files import staged_path
    from keras_inception.presets.fetch import ensure_cache_dir

    digest = hashlib.sha256((LAYOUT + repr(entry)).encode()).hexdigest()[:12]
    path = os.path.join(ensure_cache_dir(), PRESET_DIRS_FOLDER, f"{preset_name(entry)}-{digest}")
    if os.path.isfile(os.path.join(path, BACKBONE_CONFIG)):
        return path
    try:
        with staged_path(path, overwrite=False, create_parents=True, arg="preset directory",
                         kind="keras-hub preset") as staged:
            write_preset_files(entry, source, staged)
    except FileExistsError:
        if not os.path.isfile(os.path.join(path, BACKBONE_CONFIG)):  # not written meanwhile
            raise
    return path


def serialized(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """`config` as Keras serializes an object of the family's class `class_name` (what
    `keras.saving.deserialize_keras_object` reads), without building the object."""
    return {"module": CLASSES[class_name], "class_name": class_name, "config": config,
            "registered_name": f"{PACKAGE}>{class_name}"}


def family_class(class_name: str) -> type:
    """The family's class `class_name`, as registered with Keras (`serialized`)."""
    return keras.saving.get_registered_object(f"{PACKAGE}>{class_name}")


def write_preset_files(entry: WeightsPreset, source: str, folder: str) -> None:
    """Writes the preset directory of `entry` into `folder`: configs (the classes'
    arguments that the preset sets; the others keep their defaults), metadata, model
    card, placeholder weights; with `task.json` (the classifier and its head) for a
    classifier's preset, without it for an embedding network's (a task needs
    `num_classes` then)."""
    os.makedirs(folder, exist_ok=True)
    converter = serialized("InceptionImageConverter", converter_config(entry))
    preprocessor = serialized("InceptionImageClassifierPreprocessor",
                              {"image_converter": converter})
    backbone = serialized("InceptionBackbone", {"architecture": entry.model})
    files: dict[str, Any] = {BACKBONE_CONFIG: backbone, PREPROCESSOR_CONFIG: preprocessor,
                             CONVERTER_CONFIG: converter, METADATA_FILE: preset_metadata(entry)}
    write_placeholder(os.path.join(folder, BACKBONE_WEIGHTS), source, include_top=False)
    if entry.embedding is None:  # a classifier's weights: the task and its head
        files[TASK_CONFIG] = serialized("InceptionImageClassifier", {
            "backbone": backbone, "preprocessor": preprocessor, "num_classes": entry.classes})
        write_placeholder(os.path.join(folder, TASK_WEIGHTS), source, include_top=True)
    for name, value in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(value, f, indent=4)
    write_model_card(folder)


def backbone_params(architecture: str) -> int:
    """The parameter count of `InceptionBackbone(architecture)`: `BACKBONE_PARAMS`, or for a
    network added to the registry, counted once on a backbone built for it."""
    if architecture not in BACKBONE_PARAMS:
        backbone = family_class("InceptionBackbone")(architecture)
        BACKBONE_PARAMS[architecture] = backbone.count_params()
    return BACKBONE_PARAMS[architecture]


def preset_metadata(entry: WeightsPreset) -> dict[str, Any]:
    """`metadata.json` of a preset directory: keras-hub's keys (as `save_to_preset` writes
    them; `parameter_count` is the backbone's) and the preset's row of keras-hub's preset
    table (`params`, description, source, license)."""
    params = backbone_params(entry.model)
    return {
        "keras_version": keras.version(),
        "keras_hub_version": keras_hub.__version__,
        "parameter_count": params,
        "tasks": ["ImageClassifier"],
        **table_metadata(entry),
        "params": params,
    }


class LazyPreset(dict):
    """keras-hub's record of a built-in preset (`{"metadata": ..., "kaggle_handle": ...}`)
    whose handle, the preset directory, is written when keras-hub first reads it."""

    def __init__(self, name: str, metadata: dict[str, Any]) -> None:
        super().__init__(metadata=metadata, **{HANDLE_KEY: None})
        self.name = name

    def __getitem__(self, key: str) -> Any:
        if key == HANDLE_KEY:
            return preset_directory(self.name)
        return super().__getitem__(key)


def register_presets() -> list[str]:
    """Registers every preset of the registry as a keras-hub built-in preset of
    `InceptionBackbone` (and so of the family's tasks and of keras-hub's base classes).

    Returns:
        The names registered.
    """
    presets = {name: LazyPreset(name, row["metadata"]) for name, row in preset_table().items()}
    _compat.register_presets(presets, family_class("InceptionBackbone"))
    return list(presets)
