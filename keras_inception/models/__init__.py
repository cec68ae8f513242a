"""The networks of Szegedy et al. (2016), one module each, and their registry entries.

Each module holds a network's builder, its block tables, its feature taps and its
presets, and registers its `ModelSpec` in `keras_inception.registry`.
"""

from typing import Any

import keras

from keras_inception.models.facenet import FaceNet
from keras_inception.models.inception_resnet_v1 import InceptionResNetV1
from keras_inception.models.inception_resnet_v2 import InceptionResNetV2
from keras_inception.models.inception_v4 import InceptionV4
from keras_inception.preprocessing import PIXEL_OFFSET, PIXEL_SCALE
from keras_inception.registry import get_spec, model_names


def get_builder(name: str):
    """The builder for a model name such as "inception_resnet_v2"."""
    return get_spec(name).builder


def pooled_backbone(name: str, weights: Any, input_shape: tuple) -> keras.Model:
    """The network `name` without its head, globally average-pooled, taking images in
    [-1, 1] like the classifiers (`preprocess_input`): the base of transfer learning.

    FaceNet's base is its body up to `avg_pool`, with its own standardisation inside
    (the weights expect it) after mapping [-1, 1] back to 0-255.
    """
    spec = get_spec(name)
    if spec.classifier:
        return spec.builder(include_top=False, weights=weights, input_shape=input_shape,
                            pooling="avg")
    network = spec.builder(weights=weights, input_shape=input_shape, include_preprocessing=True)
    inputs = keras.Input(input_shape, name="image")
    pixels = keras.layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_OFFSET / PIXEL_SCALE,
                                    name="to_pixels")(inputs)
    body = keras.Model(network.input, network.get_layer("avg_pool").output, name=name)
    return keras.Model(inputs, body(pixels), name=f"{name}_backbone")


__all__ = ["FaceNet", "InceptionResNetV1", "InceptionResNetV2", "InceptionV4", "get_builder", "model_names",
           "pooled_backbone"]
