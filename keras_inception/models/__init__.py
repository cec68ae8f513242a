"""The networks of Szegedy et al. (2016), one module each, and their registry entries.

Each module holds a network's builder, its block tables, its feature taps and its
presets, and registers its `ModelSpec` in `keras_inception.registry`.
"""

from keras_inception.models.facenet import FaceNet
from keras_inception.models.inception_resnet_v1 import InceptionResNetV1
from keras_inception.models.inception_resnet_v2 import InceptionResNetV2
from keras_inception.models.inception_v4 import InceptionV4
from keras_inception.registry import get_spec, model_names


def get_builder(name: str):
    """The builder for a model name such as "inception_resnet_v2"."""
    return get_spec(name).builder


__all__ = ["FaceNet", "InceptionResNetV1", "InceptionResNetV2", "InceptionV4", "get_builder", "model_names"]
