"""The networks of `keras_inception` as a keras-hub model family (the `keras-hub` extra).

* `InceptionBackbone`: Inception-v4, Inception-ResNet-v1/-v2 or FaceNet's body, a
  `keras_hub.models.FeaturePyramidBackbone` with `pyramid_outputs` "P1".."P5";
* `InceptionImageConverter`, `InceptionImageClassifierPreprocessor`: the package's
  evaluation transform (resize, centre crop by `crop_pct`, `x / 127.5 - 1`);
* `InceptionImageClassifier`: a `keras_hub.models.ImageClassifier` on the backbone.

`from_preset` takes the package's presets as `<model>_<preset>` (`preset_names()`:
`inception_resnet_v2_imagenet`, `inception_v4_imagenet`, `facenet_vggface2`, ...), an
`hf://timm/<model>.<tag>` checkpoint, or what keras-hub loads (a preset directory written
by `save_to_preset`, ...). Every one is loaded by keras-hub's own loader from a preset
directory: the package's presets get theirs in the weights cache (`preset_dirs`), whose
weights come once through the package's own loader and timm converter. The classes are
registered with Keras (package "keras_inception") when this module is imported, and
`import keras_inception` imports it as soon as keras-hub is (or gets) imported: then
`keras.saving.load_model` and keras-hub's base classes read the family's files. The
presets are registered with keras-hub too (`preset_dirs`): its base classes find them
by name (`keras_hub.models.ImageClassifier.from_preset("inception_v4_imagenet")`).
`save_to_preset` writes a model card saying how to install and load the family
(`model_card`), which `keras_hub.upload_preset` uploads.

This is the only part of the package that imports keras-hub.
"""

from __future__ import annotations

from keras_inception._registration import KERAS_HUB_INSTALL_HINT

try:
    import keras_hub  # noqa: F401
except ModuleNotFoundError as e:
    if e.name != "keras_hub":
        raise
    raise ImportError(f"keras_inception.keras_hub needs keras-hub, which is not installed; "
                      f"install it with: {KERAS_HUB_INSTALL_HINT}") from None

from keras_inception.keras_hub._compat import use_family_model_cards
from keras_inception.keras_hub.backbone import InceptionBackbone
from keras_inception.keras_hub.classifier import InceptionImageClassifier
from keras_inception.keras_hub.image_converter import InceptionImageConverter
from keras_inception.keras_hub.model_card import is_family_preset, write_model_card
from keras_inception.keras_hub.preprocessor import InceptionImageClassifierPreprocessor
from keras_inception.keras_hub.preset_dirs import register_presets
from keras_inception.keras_hub.preset_weights import copy_weights
from keras_inception.keras_hub.presets import named_presets, preset_name, resolve_preset


def preset_names() -> list[str]:
    """The keras-hub names of the package's presets (`<model>_<preset>`), from the registry."""
    return list(named_presets())


register_presets()
use_family_model_cards(is_family_preset, write_model_card)

__all__ = [
    "InceptionBackbone",
    "InceptionImageClassifier",
    "InceptionImageClassifierPreprocessor",
    "InceptionImageConverter",
    "copy_weights",
    "preset_name",
    "preset_names",
    "resolve_preset",
]
