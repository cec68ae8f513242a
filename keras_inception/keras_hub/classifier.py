"""`InceptionImageClassifier`: keras-hub's image classifier on `InceptionBackbone`."""

from __future__ import annotations

import inspect
import os
from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub.backbone import BACKBONE_ARGS, LAYER_ARGS, InceptionBackbone
from keras_inception.keras_hub.preprocessor import InceptionImageClassifierPreprocessor
from keras_inception.keras_hub.presets import (
    PresetTable,
    build_network,
    check_keywords,
    load_with_keras_hub,
    resolve_preset,
)
from keras_inception.registry import get_spec, network_of

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
class InceptionImageClassifier(keras_hub.models.ImageClassifier):
    """An image classifier on `InceptionBackbone`: global pooling, dropout, `Dense`.

    `from_preset("inception_resnet_v2_imagenet")` gives the 1000-class ImageNet
    classifier (the package's `predictions` head); `from_network(model)` the classifier
    of a model built by the package's builders with `include_top=True`. Outputs are
    logits unless `activation="softmax"`.

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
    presets = PresetTable()

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
        spec, network = network_of(network)
        names = {layer.name for layer in network.layers}
        if not spec.classifier or HEAD_LAYER not in names:
            raise ValueError(f"{network.name!r} has no classification head ({HEAD_LAYER!r}): "
                             "build it with include_top=True, or build the classifier from "
                             "InceptionBackbone.from_network(network) and num_classes.")
        head = network.get_layer(HEAD_LAYER)
        backbone = cls.backbone_cls.from_network(network, **_backbone_kwargs(kwargs))
        classifier = cls(backbone=backbone, num_classes=head.units, **kwargs)
        classifier.output_dense.set_weights(head.get_weights())
        return classifier

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True,
                    **kwargs: Any) -> InceptionImageClassifier:
        """A classifier from a preset, with the preset's head unless `num_classes` is given.

        Args:
            preset: a preset name (`cls.presets`), an `hf://timm/...` handle, or what
                keras-hub loads (a local preset directory written by `save_to_preset`,
                ...).
            load_weights: whether to load the weights (else random initialization).
            **kwargs: the backbone's arguments (`image_shape`, ...) and the classifier's
                (`num_classes` for a new head on the preset's backbone, `activation`,
                `preprocessor`, ...).

        Raises:
            ValueError: an unknown preset name (the message lists the presets), an
                unknown keyword argument, or a FaceNet preset without `num_classes` (its
                head makes embeddings).
            ConnectionError: a remote handle's host cannot be reached (offline).
        """
        entry = resolve_preset(preset)
        if entry is None:
            return load_with_keras_hub(os.fspath(preset), lambda: super(InceptionImageClassifier, cls)
                                       .from_preset(preset, load_weights=load_weights, **kwargs))
        check_keywords("InceptionImageClassifier.from_preset", kwargs,
                       [name for name in (*classifier_args(), *BACKBONE_ARGS) if name != "backbone"])
        if "num_classes" not in kwargs and not get_spec(entry.model).classifier:
            raise ValueError(f"Preset {preset!r} has no classification head ({entry.model} makes "
                             "embeddings): pass num_classes to put a new head on its backbone.")
        if "preprocessor" not in kwargs:
            kwargs["preprocessor"] = cls.preprocessor_cls.from_preset(preset)
        if load_weights and "num_classes" not in kwargs:
            return cls.from_network(build_network(entry, include_top=True), **kwargs)
        kwargs.setdefault("num_classes", entry.classes)
        backbone = cls.backbone_cls.from_preset(preset, load_weights=load_weights,
                                                **_backbone_kwargs(kwargs))
        return cls(backbone=backbone, **kwargs)
