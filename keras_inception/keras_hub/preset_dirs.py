"""The package's presets as keras-hub built-in presets, for keras-hub's base classes.

keras-hub's base classes (`keras_hub.models.ImageClassifier.from_preset(name)`,
`keras_hub.models.Backbone.from_preset(name)`, ...) look a preset name up among the
built-in presets and read the preset's files from its `"kaggle_handle"`: a Kaggle handle,
or a local preset directory. The package's presets have no Kaggle copy: their weights
come through the package's own loader. So each one is registered
(`register_presets`) with a handle that is a local preset directory in the weights cache,
written on first use by the family's own `from_preset(name)` and `save_to_preset`
(`preset_directory`), then read by keras-hub like any other preset directory.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from keras_inception.keras_hub import _compat
from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.classifier import InceptionImageClassifier
from keras_inception.keras_hub.preprocessor import InceptionImageClassifierPreprocessor
from keras_inception.keras_hub.presets import named_presets, preset_table
from keras_inception.registry import get_spec

# The folder of the weights cache that holds the preset directories.
PRESET_DIRS_FOLDER = "keras_hub_presets"
# keras-hub's key for where a built-in preset's files are.
HANDLE_KEY = "kaggle_handle"


def preset_directory(name: str) -> str:
    """The local keras-hub preset directory of the package's preset `name`, written into
    the weights cache on first use (its weights through the package's loader).

    The folder's name holds a digest of the registry entry, so that a changed entry (a
    mirror, new weights) gets a new directory.

    Args:
        name: a preset name (`keras_inception.keras_hub.preset_names()`).
    """
    from keras_inception.files import staged_path
    from keras_inception.presets.fetch import ensure_cache_dir

    entry = named_presets()[name]
    digest = hashlib.sha256(repr(entry).encode()).hexdigest()[:12]
    path = os.path.join(ensure_cache_dir(), PRESET_DIRS_FOLDER, f"{name}-{digest}")
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    try:
        with staged_path(path, overwrite=False, create_parents=True, arg="preset directory",
                         kind="keras-hub preset") as staged:
            _write_preset(name, staged)
    except FileExistsError:
        if not os.path.isfile(os.path.join(path, "config.json")):  # not written meanwhile
            raise
    return path


def _write_preset(name: str, folder: str) -> None:
    """Saves the family's preset `name` as a keras-hub preset directory: the classifier
    (backbone, head, preprocessor), or for an embedding network its backbone and
    preprocessor."""
    if get_spec(named_presets()[name].model).classifier:
        InceptionImageClassifier.from_preset(name).save_to_preset(folder)
        return
    InceptionBackbone.from_preset(name).save_to_preset(folder)
    InceptionImageClassifierPreprocessor.from_preset(name).save_to_preset(folder)


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
    _compat.register_presets(presets, InceptionBackbone)
    return list(presets)
