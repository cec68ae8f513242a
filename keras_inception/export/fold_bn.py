"""Inference-time rewrites of a trained model."""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np

# Registered with the package's other layers (one module imported when Keras loads).
from keras_inception.layers import FoldedBatchNorm


def _history_names(value: Any) -> list[str]:
    """Names of the layers producing the tensors in a serialized call argument
    (`{"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, index]}}`)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [name for v in value.values() for name in _history_names(v)]
    if isinstance(value, (list, tuple)):
        return [name for v in value for name in _history_names(v)]
    return []


def _output_names(value: Any) -> list[str]:
    """Layer names in a functional config's `output_layers` (`[name, node, index]` entries,
    alone or nested in lists / dicts)."""
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        return [value[0]]
    if isinstance(value, dict):
        return [name for v in value.values() for name in _output_names(v)]
    if isinstance(value, (list, tuple)):
        return [name for v in value for name in _output_names(v)]
    return []


def _graph(model: keras.Model) -> tuple[dict[str, list[list[str]]], dict[str, int]]:
    """From the model's public config: layer name -> the producing layers of each of its
    calls, and layer name -> how many tensors consume its outputs (model outputs included)."""
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        # each layer is called once, on the previous one's output (the first on the input)
        producers = {name: [[previous]] for previous, name in itertools.pairwise(["", *names])}
        consumers = {name: 1 for name in names}
        return producers, consumers
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    if not isinstance(config, dict) or "output_layers" not in config:
        raise ValueError(
            "`model` must be a functional or Sequential keras.Model (its config lists its "
            f"layers' connections); received a {type(model).__name__} without one."
        )
    producers: dict[str, list[list[str]]] = {}
    consumers: dict[str, int] = {}
    for layer in config["layers"]:
        calls = [_history_names(node) for node in layer.get("inbound_nodes", [])]
        producers[layer["name"]] = calls
        for name in (n for call in calls for n in call):
            consumers[name] = consumers.get(name, 0) + 1
    for name in _output_names(config["output_layers"]):
        consumers[name] = consumers.get(name, 0) + 1
    return producers, consumers


def _folded_pairs(model: keras.Model) -> dict[str, keras.layers.Conv2D]:
    """BatchNormalization layer name -> the Conv2D that alone feeds it (called once,
    linear, read by nothing else)."""
    producers, consumers = _graph(model)
    layers = {layer.name: layer for layer in model.layers}
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3):
            continue
        calls = producers.get(layer.name, [])
        if len(calls) != 1 or len(calls[0]) != 1:
            continue
        source = layers.get(calls[0][0])
        if (isinstance(source, keras.layers.Conv2D) and len(producers.get(source.name, [])) == 1
                and consumers.get(source.name) == 1
                and source.activation is keras.activations.linear):
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
        model: a functional (or Sequential) Keras model, channels_last, e.g. from
            our builders. The conv feeding each BatchNormalization is found from
            the model's config (`model.get_config()["layers"][i]["inbound_nodes"]`).

    Returns:
        A new `keras.Model`; `model` is not modified.
    """
    if not isinstance(model, keras.Model):
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
        if layer.name in pairs or not layer.weights:  # (clone_model may rename input layers)
            continue
        target = folded.get_layer(layer.name)
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
