"""The three networks of Szegedy et al. (2016), one module each."""

from keras_inception.models.inception_resnet_v1 import InceptionResNetV1
from keras_inception.models.inception_resnet_v2 import InceptionResNetV2
from keras_inception.models.inception_v4 import InceptionV4

# CLI / registry names -> builders.
BUILDERS = {
    "inception_v4": InceptionV4,
    "inception_resnet_v1": InceptionResNetV1,
    "inception_resnet_v2": InceptionResNetV2,
}


def get_builder(name: str):
    """The builder for a model name such as "inception_resnet_v2"."""
    try:
        return BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model {name!r}; available: {', '.join(sorted(BUILDERS))}."
        ) from None


__all__ = ["BUILDERS", "InceptionResNetV1", "InceptionResNetV2", "InceptionV4", "get_builder"]
