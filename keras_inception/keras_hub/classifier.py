"""`InceptionImageClassifier`: keras-hub's image classifier on `InceptionBackbone`."""

from __future__ import annotations

import inspect
import os
from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub import preset_weights
from keras_inception.keras_hub.backbone import BACKBONE_ARGS, LAYER_ARGS, InceptionBackbone
from keras_inception.keras_hub.preprocessor import InceptionImageClassifierPreprocessor
from keras_inception.keras_hub.preset_loading import PresetLoading
from keras_inception.keras_hub.presets import check_keywords
from keras_inception.registry import network_of

# The classification head of the package's classifiers, and of keras-hub's.
HEAD_LAYER = "predictions"


def classifier_args() -> list[str]:
    """The keyword arguments of keras-hub's `ImageClassifier` (its signature's, and those
    of every Keras model and keras-hub task)."""
    parameters = inspect.signature(keras_hub.models.ImageClassifier.__init__).parameters
    named = [name for name, p in parameters.items()
             if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [*named, *LAYER_ARGS, "compile"]


def _backbone_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Takes the backbone's arguments out of a task's `kwargs`."""
    return {name: kwargs.pop(name) for name in BACKBONE_ARGS if name in kwargs}


@keras.saving.register_keras_serializable(package="keras_inception")
class InceptionImageClassifier(PresetLoading, keras_hub.models.ImageClassifier):
    """An image classifier on `InceptionBackbone`: global pooling, dropout, `Dense`.

    `from_preset("inception_resnet_v2_imagenet")` gives the 1000-class ImageNet
    classifier (the package's `predictions` head; `num_classes=N` puts a new head on the
    preset's backbone, as an embedding network's preset needs, and the backbone's
    arguments `image_shape`, `output_stride`, ... reach the backbone); `from_network(model)`
    the classifier of a model built by the package's builders with `include_top=True`.
    Outputs are logits unless `activation="softmax"`.

    Args:
        backbone: an `InceptionBackbone`.
        num_classes: the number of classes.
        preprocessor: an `InceptionImageClassifierPreprocessor`, or None.
        **kwargs: the other arguments of `keras_hub.models.ImageClassifier`
            (`pooling`, `activation`, `dropout`, `head_dtype`, `name`, ...).

    Examples:
    ```python
    classifier = InceptionImageClassifier.from_preset("inception_v4_imagenet")
    classifier.predict(np.random.randint(0, 256, (2, 400, 300, 3)))
    ```
    """

    backbone_cls = InceptionBackbone
    preprocessor_cls = InceptionImageClassifierPreprocessor
    preset_keywords = tuple(name for name in (*classifier_args(), *BACKBONE_ARGS)
                            if name != "backbone")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_keywords("InceptionImageClassifier", kwargs, classifier_args())
        super().__init__(*args, **kwargs)

    @classmethod
    def from_network(cls, network: keras.Model, **kwargs: Any) -> InceptionImageClassifier:
        """The classifier of a package classifier built with its head, with its weights.

        Args:
            network: a model of `keras_inception` built with `include_top=True`.
            **kwargs: the backbone's arguments (`image_shape`, `output_stride`, ...) and
                the classifier's (`preprocessor`, `activation`, ...).

        Raises:
            ValueError: `network` has no classification head.
        """
        _, network = network_of(network)
        names = {layer.name for layer in network.layers}
        if HEAD_LAYER not in names:
            raise ValueError(f"{network.name!r} has no classification head ({HEAD_LAYER!r}): "
                             "build it with include_top=True, or build the classifier from "
                             "InceptionBackbone.from_network(network) and num_classes.")
        head = network.get_layer(HEAD_LAYER)
        backbone = cls.backbone_cls.from_network(network, **_backbone_kwargs(kwargs))
        classifier = cls(backbone=backbone, num_classes=head.units, **kwargs)
        classifier.output_dense.set_weights(head.get_weights())
        return classifier

    @classmethod
    def preset_arguments(cls, preset: Any, handle: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """keras-hub's arguments for `from_preset`: a preset without a classifier (an
        embedding network's) needs `num_classes`; the backbone's arguments beyond
        keras-hub's `image_shape` and `dtype` build the backbone, handed to keras-hub.

        Raises:
            ValueError: a preset directory without `task.json` and no `num_classes`.
        """
        local = os.path.isdir(handle)
        has_task = local and os.path.isfile(os.path.join(handle, "task.json"))
        if "num_classes" not in kwargs and local and not has_task:
            raise ValueError(f"Preset {preset!r} has no classification head (its network makes "
                             "embeddings): pass num_classes to put a new head on its backbone.")
        if any(name in kwargs for name in BACKBONE_ARGS if name not in ("image_shape", "dtype")):
            # With task.json keras-hub loads the backbone's weights into the one given.
            load_weights = kwargs.get("load_weights", True) and not has_task
            kwargs["backbone"] = cls.backbone_cls.from_preset(
                handle, load_weights=load_weights, **_backbone_kwargs(kwargs))
        return kwargs

    def load_task_weights(self, filepath: str) -> None:
        """keras-hub's `load_task_weights`; a placeholder weights file of a preset directory
        in the weights cache (`preset_dirs`) is filled through the package's loader first."""
        placeholder = preset_weights.placeholder_of(filepath)
        if placeholder is None:
            super().load_task_weights(filepath)
        else:
            preset_weights.fill_classifier(self, filepath, placeholder)
