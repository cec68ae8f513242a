"""`PresetLoading`: the one `from_preset` (and `save_to_preset`) of the family's classes."""

from __future__ import annotations

from typing import Any

from keras_inception.keras_hub.model_card import finish_preset_directory
from keras_inception.keras_hub.preset_dirs import keras_hub_handle
from keras_inception.keras_hub.presets import check_keywords, load_with_keras_hub


class PresetLoading:
    """The one `from_preset` of the family's classes (backbone, classifier, preprocessor,
    converter): the handle is mapped to what keras-hub's loader reads
    (`preset_dirs.keras_hub_handle`: a named preset or an `hf://timm/...` checkpoint
    becomes its preset directory), then keras-hub's own `from_preset` loads it, building
    the network once. Put before the keras-hub base class.
    """

    # The keyword arguments `from_preset` takes, or None to leave them to keras-hub.
    preset_keywords: tuple[str, ...] | None = None

    @classmethod
    def from_preset(cls, preset: Any, **kwargs: Any) -> Any:
        """Loads `preset` with keras-hub's loader (see the class's docstring).

        Args:
            preset: a preset name (`cls.presets`), an `hf://timm/<model>.<tag>` handle (its
                weights converted by the package's timm converter), or what keras-hub
                loads: a local directory written by `save_to_preset`, a `kaggle://` or
                `hf://` handle of one.
            **kwargs: keras-hub's `from_preset` arguments for the class (`load_weights`,
                the backbone's arguments, ...).

        Raises:
            ValueError: an unknown preset name (the message lists the presets), or an
                unknown keyword argument.
            ConnectionError: a remote handle's host cannot be reached (offline).
        """
        if cls.preset_keywords is not None:
            check_keywords(f"{cls.__name__}.from_preset", kwargs,
                           ["load_weights", *cls.preset_keywords])
        handle = keras_hub_handle(preset)
        kwargs = cls.preset_arguments(preset, handle, kwargs)
        return load_with_keras_hub(handle, lambda: super(PresetLoading, cls).from_preset(
            handle, **kwargs))

    @classmethod
    def preset_arguments(cls, preset: Any, handle: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments for keras-hub's `from_preset(handle, ...)` (a class that needs more
        than keras-hub's forwarding overrides this)."""
        return kwargs

    def save_to_preset(self, preset_dir: str, *args: Any, **kwargs: Any) -> None:
        """keras-hub's `save_to_preset`, then the directory's parameter count
        (`metadata.json`'s `params`) and model card (`README.md`) for the family."""
        super().save_to_preset(preset_dir, *args, **kwargs)
        finish_preset_directory(preset_dir)
