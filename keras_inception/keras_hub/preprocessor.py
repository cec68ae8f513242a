"""`InceptionImageClassifierPreprocessor`: keras-hub's image classification preprocessor
with `InceptionImageConverter`."""

from __future__ import annotations

import os
from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.image_converter import InceptionImageConverter
from keras_inception.keras_hub.presets import PresetTable, load_with_keras_hub, resolve_preset


@keras.saving.register_keras_serializable(package="keras_inception")
class InceptionImageClassifierPreprocessor(keras_hub.models.ImageClassifierPreprocessor):
    """Images (and labels) to the inputs of `InceptionImageClassifier`.

    Args:
        image_converter: an `InceptionImageConverter` (resize, centre crop, scaling), or
            None to pass the images through.
        **kwargs: the other arguments of `keras_hub.models.ImageClassifierPreprocessor`.

    Examples:
    ```python
    preprocessor = InceptionImageClassifierPreprocessor.from_preset(
        "inception_resnet_v2_imagenet")
    images = preprocessor(np.random.randint(0, 256, (2, 400, 300, 3)))  # (2, 299, 299, 3)
    ```
    """

    backbone_cls = InceptionBackbone
    image_converter_cls = InceptionImageConverter
    presets = PresetTable()

    @classmethod
    def from_preset(cls, preset: str, config_file: str = "preprocessor.json",
                    **kwargs: Any) -> InceptionImageClassifierPreprocessor:
        """The preprocessor of a preset.

        Args:
            preset: a preset name (`cls.presets`), an `hf://timm/...` handle, or what
                keras-hub loads (a local preset directory, ...).
            config_file: the preprocessor's file in a keras-hub preset directory.
            **kwargs: the preprocessor's arguments (`image_converter`, ...).

        Raises:
            ValueError: an unknown preset name; the message lists the presets.
            ConnectionError: a remote handle's host cannot be reached (offline).
        """
        entry = resolve_preset(preset)
        if entry is None:
            return load_with_keras_hub(os.fspath(preset), lambda: super(
                InceptionImageClassifierPreprocessor, cls).from_preset(
                    preset, config_file=config_file, **kwargs))
        if "image_converter" not in kwargs:
            kwargs["image_converter"] = cls.image_converter_cls.from_preset(preset)
        return cls(**kwargs)
