"""Inference-time rewrites of a trained model."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_inception")
class FoldedBatchNorm(keras.layers.Identity):
    """Stands where a BatchNormalization was folded into the preceding conv.

    An identity that accepts BatchNormalization's call arguments, so the cloned
    graph keeps its layer names and call structure.
    """

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(inputs)


def _folded_pairs(model: keras.Model) -> dict[str, keras.layers.Conv2D]:
    """BatchNormalization layer name -> the Conv2D that alone feeds it."""
    consumers: dict[int, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for parent in node.parent_nodes:
                consumers[id(parent.operation)] = consumers.get(id(parent.operation), 0) + 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        source = layer.input._keras_history.operation
        if (isinstance(source, keras.layers.Conv2D) and consumers.get(id(source)) == 1
                and len(source._inbound_nodes) == 1 and source.activation
                is keras.activations.linear and layer.axis in (-1, 3)):
            pairs[layer.name] = source
    return pairs


def fuse_batchnorm(model: keras.Model) -> keras.Model:
    """An equivalent inference model with each BatchNormalization folded into its conv.

    `Conv2D -> BatchNormalization` becomes one `Conv2D` with bias, whose kernel is
    scaled by `gamma / sqrt(moving_variance + epsilon)` and whose bias absorbs the
    moving mean and `beta`; the BatchNormalization is replaced by an identity
    (`FoldedBatchNorm`), so layer names stay the same. The result is for inference only: the
    folded model has no batch statistics left to train.

    Args:
        model: a functional Keras model (channels_last), e.g. from our builders.

    Returns:
        A new `keras.Model`; `model` is not modified.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_inbound_nodes"):
        raise ValueError(f"`model` must be a functional keras.Model; received {type(model)}.")
    pairs = _folded_pairs(model)
    convs = {conv.name: bn for bn, conv in pairs.items()}

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = folded.get_layer(layer.name)
        if layer.name in pairs:
            continue
        if layer.name not in convs:
            target.set_weights(layer.get_weights())
            continue
        bn = model.get_layer(convs[layer.name])
        kernel = np.asarray(layer.kernel, np.float64)
        bias = np.asarray(layer.bias, np.float64) if layer.use_bias else 0.0
        mean = np.asarray(bn.moving_mean, np.float64)
        factor = 1.0 / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
        if bn.scale:
            factor = factor * np.asarray(bn.gamma, np.float64)
        offset = np.asarray(bn.beta, np.float64) if bn.center else 0.0
        target.kernel.assign((kernel * factor).astype(target.kernel.dtype))
        target.bias.assign(((bias - mean) * factor + offset).astype(target.bias.dtype))
    return folded
