"""`InceptionImageClassifierPreprocessor`: keras-hub's image classification preprocessor
with `InceptionImageConverter`."""

from __future__ import annotations

import keras
import keras_hub

from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.image_converter import InceptionImageConverter
from keras_inception.keras_hub.preset_loading import PresetLoading


@keras.saving.register_keras_serializable(package="keras_inception")
class InceptionImageClassifierPreprocessor(PresetLoading,
                                           keras_hub.models.ImageClassifierPreprocessor):
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
