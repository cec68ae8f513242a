"""keras_inception: Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 for Keras 3.

Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning" (AAAI 2017).
"""

from keras_inception import layers
from keras_inception.features import feature_extractor
from keras_inception.imagenet import decode_predictions, preprocess_input
from keras_inception.models import InceptionResNetV1, InceptionResNetV2, InceptionV4, get_builder
from keras_inception.weights import list_weights

__version__ = "0.1.0"

__all__ = [
    "InceptionResNetV1",
    "InceptionResNetV2",
    "InceptionV4",
    "decode_predictions",
    "feature_extractor",
    "get_builder",
    "layers",
    "list_weights",
    "preprocess_input",
]
