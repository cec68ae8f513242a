"""The networks, one module each, and the helpers that take a network by name.

Each network's module holds its builder, its block tables, its feature taps and its
presets, and registers its `ModelSpec` in `keras_inception.registry`; the builders
are exported here from `registry.BUILTIN_MODELS`, imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keras_inception._lazy import lazy_exports
from keras_inception.registry import CLASSIFIER, builder_exports, get_spec, model_kind
from keras_inception.registry import model_names as model_names  # re-exported

if TYPE_CHECKING:
    import keras


def get_builder(name: str):
    """The builder for a model name such as "inception_resnet_v2"."""
    return get_spec(name).builder


def pooled_backbone(name: str, weights: Any, input_shape: tuple) -> keras.Model:
    """The network `name` without its head, globally average-pooled, taking images in
    [-1, 1] like the classifiers (`preprocess_input`): the base of transfer learning.

    FaceNet's base is its body up to `avg_pool`, with its own standardisation inside
    (the weights expect it) after mapping [-1, 1] back to 0-255.
    """
    import keras

    from keras_inception.preprocessing import PIXEL_OFFSET, PIXEL_SCALE

    spec = get_spec(name)
    if model_kind(name) == CLASSIFIER:
        return spec.builder(include_top=False, weights=weights, input_shape=input_shape,
                            pooling="avg")
    network = spec.builder(weights=weights, input_shape=input_shape, include_preprocessing=True)
    inputs = keras.Input(input_shape, name="image")
    pixels = keras.layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_OFFSET / PIXEL_SCALE,
                                    name="to_pixels")(inputs)
    body = keras.Model(network.input, network.get_layer("avg_pool").output, name=name)
    return keras.Model(inputs, body(pixels), name=f"{name}_backbone")


# Builder name -> its network's module (`InceptionV4`, ...), from the registry.
_EXPORTS = builder_exports()
# Importable as attributes too (`keras_inception.models.blocks`): the shared modules and
# the networks' modules.
_SUBMODULES = ("blocks", "builder", *(
    module.rpartition(".")[2] for module in _EXPORTS.values()
    if module.rpartition(".")[0] == __name__
))

__all__ = sorted([*_EXPORTS, "get_builder", "model_names", "pooled_backbone"])

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
