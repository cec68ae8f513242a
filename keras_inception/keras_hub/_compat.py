"""Every use of a private or undocumented keras-hub API, in one place.

The package's core never imports keras-hub (the `keras-hub` extra), so these live here
rather than in `keras_inception._compat`. Each function says what it touches and why no
public API does the job; `tests/test_compat.py` checks each of them, so that a keras-hub
release that changes one fails loudly there instead of silently elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras
import keras_hub
from keras_hub.src.utils import preset_utils


def register_presets(presets: Mapping[str, Mapping[str, Any]], backbone_cls: type) -> None:
    """Makes `presets` built-in presets of keras-hub, for `backbone_cls` and every task of it,
    through `keras_hub.src.utils.preset_utils.register_presets`.

    keras-hub registers its own families' presets this way (0.32 has no public
    registration); its base classes (`keras_hub.models.ImageClassifier.from_preset(name)`)
    then find a name, and `cls.presets` lists it. Each value is keras-hub's layout,
    `{"metadata": {...}, "kaggle_handle": ...}`, and keras-hub reads
    `presets[name]["kaggle_handle"]` (a Kaggle handle, or a local preset directory) each
    time it opens a file of the preset (`preset_utils.get_file`).
    """
    preset_utils.register_presets(dict(presets), backbone_cls)


def unregister_presets(names: Iterable[str], backbone_cls: type) -> None:
    """Removes presets added by `register_presets` (the registry's tables are private)."""
    for name in names:
        preset_utils.BUILTIN_PRESETS.pop(name, None)
        preset_utils.BUILTIN_PRESETS_FOR_BACKBONE[backbone_cls].pop(name, None)


def set_converter_resizing(converter: keras_hub.layers.ImageConverter,
                           resizing: keras.layers.Resizing) -> None:
    """Makes `resizing` the resizing step of `converter`.

    keras-hub's `ImageConverter` resizes through its attribute `resizing` (a
    `keras.layers.Resizing`, undocumented), which also holds its `image_size` (the
    property reads and sets `resizing.height` / `resizing.width`). No argument of the
    converter resizes the short side and then crops the centre, so the package's
    converter puts a `Resizing` subclass that does in its place.
    """
    converter.resizing = resizing


def use_family_model_cards(is_family: Callable[[str], bool], write_card: Callable[[str], Any]) -> None:
    """Makes `keras_hub.upload_preset` upload the family's model card with the family's
    preset directories (`is_family(preset)`), through `create_model_card` and
    `delete_model_card` of `keras_hub.src.utils.preset_utils`.

    To a Hugging Face repository without a card, `upload_preset` writes keras-hub's
    generic card into the directory with `create_model_card(preset)` (replacing a
    README.md there), uploads, then removes it with `delete_model_card(preset)`; keras-hub
    0.32 has no argument or hook for the card. For the family's directories the card is
    `write_card(preset)` instead, and it is kept afterwards (`save_to_preset` wrote the same
    card there). Other directories keep keras-hub's behaviour. Installed once; checked
    through `keras_hub.upload_preset` in `tests/test_keras_hub_presets.py`.
    """
    create, delete = preset_utils.create_model_card, preset_utils.delete_model_card
    if getattr(create, "family_card_writer", False):
        return

    def create_model_card(preset: str) -> None:
        if is_family(preset):
            write_card(preset)
        else:
            create(preset)

    def delete_model_card(preset: str) -> None:
        if not is_family(preset):
            delete(preset)

    create_model_card.family_card_writer = True
    preset_utils.create_model_card = create_model_card
    preset_utils.delete_model_card = delete_model_card
