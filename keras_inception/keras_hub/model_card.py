"""The model card (`README.md`) of the family's preset directories.

keras-hub's `upload_preset` uploads a preset directory as it is to Kaggle; to a new
Hugging Face repository it uploads a generic card of its own, which says nothing of
what loading the files needs: `keras_inception` installed with its `keras-hub` extra,
and imported, so that keras-hub finds the family's classes. So `save_to_preset` of the
family writes this card into the directory (`finish_preset_directory`), and the upload
uses it (`_compat.use_family_model_cards`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from keras_inception._registration import KERAS_HUB_INSTALL_HINT, KERAS_HUB_MODULE

# keras-hub's file names in a preset directory.
CARD_FILE, METADATA_FILE = "README.md", "metadata.json"
CONFIG_FILES = ("config.json", "task.json", "preprocessor.json", "image_converter.json")
# The `registered_name` prefix of the family's classes (their Keras package).
FAMILY_PREFIX = "keras_inception>"


def _read_json(folder: str, name: str) -> dict[str, Any] | None:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_family_preset(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a preset directory of the family (its backbone's class is)."""
    config = _read_json(os.fspath(folder), "config.json")
    return bool(config) and str(config.get("registered_name", "")).startswith(FAMILY_PREFIX)


def _front_matter(classifier: bool) -> list[str]:
    """The card's YAML header (what the Hugging Face hub reads)."""
    kind = ["- image-classification", "pipeline_tag: image-classification"] if classifier else []
    return ["---", "library_name: keras-hub", "tags:", "- keras_inception", *kind, "---"]


def _install_and_load(main_class: str, loader: str) -> list[str]:
    """The card's lines on what loading the preset needs: the extra, and the import."""
    handle = "<this preset's handle>"
    return [
        f"A model of the keras-hub model family of `keras_inception` (`{main_class}`). Its "
        "classes come from `keras_inception`: install it with the `keras-hub` extra and "
        f"import `{KERAS_HUB_MODULE}` before loading the preset.",
        "",
        "## Install",
        "",
        "```shell",
        KERAS_HUB_INSTALL_HINT,
        "```",
        "",
        "## Load",
        "",
        "```python",
        "import keras_hub",
        f"import {KERAS_HUB_MODULE}  # registers the family's classes with keras-hub",
        "",
        f'model = keras_hub.models.{loader}.from_preset("{handle}")',
        f'# or: {KERAS_HUB_MODULE}.{main_class}.from_preset("{handle}")',
        "```",
        "",
    ]


def model_card(folder: str | os.PathLike) -> str:
    """The model card of the family's preset directory `folder`: how to install and load
    it, its classes, its parameter count and its backbone's config.

    Raises:
        FileNotFoundError: `folder` has no `config.json` (no backbone saved there).
    """
    folder = os.fspath(folder)
    configs = {name: _read_json(folder, name) for name in CONFIG_FILES}
    if configs["config.json"] is None:
        raise FileNotFoundError(f"No config.json in the preset directory {folder!r}: save the "
                                "backbone or the task there first.")
    backbone = configs["config.json"]
    task = configs["task.json"]
    loader = "ImageClassifier" if task else "Backbone"
    main_class = (task or backbone)["class_name"]
    classes = [config["class_name"] for config in configs.values() if config]
    metadata = _read_json(folder, METADATA_FILE) or {}
    params = metadata.get("params", metadata.get("parameter_count"))
    architecture = backbone["config"].get("architecture", "inception")
    lines = [*_front_matter(bool(task)), f"# {main_class} ({architecture})", "",
             *_install_and_load(main_class, loader), "## Classes", "",
             *(f"* `{KERAS_HUB_MODULE}.{name}`" for name in classes), ""]
    if params is not None:
        lines += [f"Parameters (backbone): {params:,}", ""]
    lines += ["## Backbone config", "",
              *(f"* **{key}:** {value}" for key, value in backbone["config"].items()), ""]
    return "\n".join(lines)


def write_model_card(folder: str | os.PathLike) -> str:
    """Writes `model_card(folder)` to `folder/README.md`; returns its path."""
    path = os.path.join(os.fspath(folder), CARD_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(model_card(folder))
    return path


def finish_preset_directory(folder: str | os.PathLike) -> None:
    """After keras-hub's `save_to_preset` of one of the family's objects: adds `params` (the
    backbone's parameter count, as keras-hub's preset tables name it) to `metadata.json`
    and writes the model card, once the directory holds a backbone."""
    folder = os.fspath(folder)
    if not is_family_preset(folder):
        return  # a converter or preprocessor saved alone, or beside a foreign backbone
    metadata = _read_json(folder, METADATA_FILE)
    if metadata is not None and "parameter_count" in metadata and "params" not in metadata:
        metadata["params"] = metadata["parameter_count"]
        with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=4)
    write_model_card(folder)
