"""An independent reference forward pass of ``facenet_keras.h5`` (Keras 2.1.2, FaceNet IR-v1).

The graph comes from the file's own ``model_config`` attribute (JSON) and the weights from
``model_weights/<layer>/<layer>/<name>:0``; every layer is evaluated with plain TensorFlow ops
(``tf.nn.conv2d``, ``tf.nn.max_pool2d``, ...). No keras_inception code and no Keras layer class is
used, so this checks an implementation against the file rather than against itself.

The 21 ``*_ScaleSum`` Lambda layers hold Python 3.6 bytecode that Keras 3 cannot load; their code is
checked to be ``lambda inputs, scale: inputs[0] + inputs[1] * scale`` and evaluated as such, with
``scale`` from the layer's ``arguments``.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import h5py
import numpy as np

# co_code of the stored lambda: LOAD_FAST inputs, LOAD_CONST 0, BINARY_SUBSCR, LOAD_FAST inputs,
# LOAD_CONST 1, BINARY_SUBSCR, LOAD_FAST scale, BINARY_MULTIPLY, BINARY_ADD, RETURN_VALUE.
_SCALE_SUM_CODE = bytes.fromhex("7c00640119007c00640219007c0114001700530029034ee900000000e901000000")
_SUPPORTED = {
    "InputLayer",
    "Conv2D",
    "BatchNormalization",
    "Activation",
    "MaxPooling2D",
    "Concatenate",
    "GlobalAveragePooling2D",
    "Dropout",
    "Dense",
    "Lambda",
}


@dataclass
class Layer:
    """One layer of the stored graph: its class, config, input layer names and weights."""

    name: str
    class_name: str
    config: dict
    inputs: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Graph:
    """The stored functional model, layers in an evaluation (topological) order."""

    layers: list[Layer]
    input_name: str
    output_name: str
    keras_version: str

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)


def _inbound(layer_cfg: dict) -> list[str]:
    nodes = layer_cfg["inbound_nodes"]
    if len(nodes) > 1:
        raise NotImplementedError(f"{layer_cfg['name']}: shared layers are not supported")
    if not nodes:
        return []
    for entry in nodes[0]:
        if entry[1] != 0 or entry[2] != 0:
            raise NotImplementedError(f"{layer_cfg['name']}: multi-node/multi-output inbound {entry}")
    return [entry[0] for entry in nodes[0]]


def _layer_weights(group: h5py.Group) -> dict[str, np.ndarray]:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    out = {}
    for full in names:  # e.g. "Conv2d_1a_3x3/kernel:0"
        key = full.rsplit("/", 1)[-1].split(":")[0]
        out[key] = np.asarray(group[full])
    return out


def _topological(layers: list[Layer]) -> list[Layer]:
    done: set[str] = set()
    ordered: list[Layer] = []
    pending = list(layers)
    while pending:
        rest = [layer for layer in pending if not set(layer.inputs) <= done]
        ready = [layer for layer in pending if set(layer.inputs) <= done]
        if not ready:
            raise ValueError(f"graph has a cycle or dangling inputs: {[x.name for x in rest[:5]]}")
        ordered += ready
        done.update(layer.name for layer in ready)
        pending = rest
    return ordered


@functools.lru_cache(maxsize=4)
def _load_graph_cached(path: str, mtime_ns: int) -> Graph:
    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        version = f.attrs.get("keras_version", b"?")
        version = version.decode() if isinstance(version, bytes) else str(version)
        if config["class_name"] != "Model":
            raise NotImplementedError(f"top-level {config['class_name']} (expected a functional Model)")
        weights_root = f["model_weights"]
        layers = []
        for cfg in config["config"]["layers"]:
            if cfg["class_name"] not in _SUPPORTED:
                raise NotImplementedError(f"{cfg['name']}: layer class {cfg['class_name']}")
            name = cfg["name"]
            weights = _layer_weights(weights_root[name]) if name in weights_root else {}
            layers.append(Layer(name, cfg["class_name"], cfg["config"], _inbound(cfg), weights))
    (input_name, _, _), *more_in = config["config"]["input_layers"]
    (output_name, _, _), *more_out = config["config"]["output_layers"]
    if more_in or more_out:
        raise NotImplementedError("only single-input single-output models are supported")
    return Graph(_topological(layers), input_name, output_name, version)


def load_graph(h5_path: str | os.PathLike) -> Graph:
    """Parse the h5's ``model_config`` and weights (cached per file and modification time)."""
    path = os.fspath(h5_path)
    return _load_graph_cached(os.path.abspath(path), os.stat(path).st_mtime_ns)


def _check_scale_sum(layer: Layer) -> float:
    cfg = layer.config
    code = base64.b64decode(cfg["function"][0]) if cfg.get("function_type") == "lambda" else b""
    args = cfg.get("arguments") or {}
    if _SCALE_SUM_CODE not in code or set(args) != {"scale"} or len(layer.inputs) != 2:
        raise NotImplementedError(f"{layer.name}: Lambda is not `inputs[0] + inputs[1] * scale`")
    return float(args["scale"])


def _activation(x, name: str, tf):
    fns = {"linear": lambda v: v, "relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh}
    if name not in fns:
        raise NotImplementedError(f"activation {name!r}")
    return fns[name](x)


def _apply(layer: Layer, inputs: list, tf, dtype):
    cfg, w = layer.config, layer.weights
    kind = layer.class_name

    def var(key: str):
        return tf.constant(w[key], dtype=dtype)

    if kind == "Conv2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise NotImplementedError(f"{layer.name}: data_format {cfg['data_format']}")
        if tuple(cfg["dilation_rate"]) != (1, 1) or cfg["padding"] not in ("valid", "same"):
            raise NotImplementedError(
                f"{layer.name}: dilation/padding {cfg['dilation_rate']} {cfg['padding']}"
            )
        strides = [1, *cfg["strides"], 1]
        y = tf.nn.conv2d(inputs[0], var("kernel"), strides=strides, padding=cfg["padding"].upper())
        if cfg["use_bias"]:
            y = tf.nn.bias_add(y, var("bias"))
        return _activation(y, cfg["activation"], tf)
    if kind == "BatchNormalization":
        x = inputs[0]
        if cfg["axis"] not in (-1, len(x.shape) - 1):
            raise NotImplementedError(f"{layer.name}: axis {cfg['axis']}")
        gamma = var("gamma") if cfg["scale"] else None
        beta = var("beta") if cfg["center"] else None
        inv = tf.math.rsqrt(var("moving_variance") + tf.constant(cfg["epsilon"], dtype))
        if gamma is not None:
            inv = inv * gamma
        y = (x - var("moving_mean")) * inv
        return y + beta if beta is not None else y
    if kind == "Activation":
        return _activation(inputs[0], cfg["activation"], tf)
    if kind == "MaxPooling2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise NotImplementedError(f"{layer.name}: data_format")
        return tf.nn.max_pool2d(
            inputs[0], ksize=cfg["pool_size"], strides=cfg["strides"], padding=cfg["padding"].upper()
        )
    if kind == "Concatenate":
        return tf.concat(inputs, axis=cfg["axis"])
    if kind == "GlobalAveragePooling2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise NotImplementedError(f"{layer.name}: data_format")
        return tf.reduce_mean(inputs[0], axis=[1, 2])
    if kind == "Dropout":
        return inputs[0]  # inference
    if kind == "Dense":
        y = tf.matmul(inputs[0], var("kernel"))
        if cfg["use_bias"]:
            y = y + var("bias")
        return _activation(y, cfg["activation"], tf)
    if kind == "Lambda":
        scale = _check_scale_sum(layer)
        return inputs[0] + tf.constant(scale, dtype) * inputs[1]
    raise NotImplementedError(f"{layer.name}: {kind}")


def reference_forward(
    h5_path: str | os.PathLike,
    images: np.ndarray,
    outputs: Iterable[str] | None = None,
    dtype: str = "float32",
) -> dict[str, np.ndarray]:
    """Evaluate the stored graph on NHWC ``images``; returns {layer name: activation} for the
    requested layer names (default: the model output only). ``dtype="float64"`` gives a
    higher-precision reference."""
    import tensorflow as tf

    graph = load_graph(h5_path)
    wanted = {graph.output_name} if outputs is None else set(outputs)
    unknown = wanted - {layer.name for layer in graph.layers}
    if unknown:
        raise KeyError(f"no such layers: {sorted(unknown)}")
    tf_dtype = tf.as_dtype(dtype)
    # Drop each activation after its last use so memory stays flat.
    last_use = {}
    for i, layer in enumerate(graph.layers):
        for name in layer.inputs:
            last_use[name] = i
    values: dict = {}
    result: dict[str, np.ndarray] = {}
    for i, layer in enumerate(graph.layers):
        if layer.class_name == "InputLayer":
            shape = layer.config["batch_input_shape"][1:]
            fits = len(shape) == images.ndim - 1 and all(
                d is None or d == n for d, n in zip(shape, images.shape[1:], strict=False)
            )
            if not fits:
                raise ValueError(f"images of shape {images.shape} do not fit input {shape}")
            value = tf.constant(images, dtype=tf_dtype)
        else:
            value = _apply(layer, [values[n] for n in layer.inputs], tf, tf_dtype)
        values[layer.name] = value
        if layer.name in wanted:
            result[layer.name] = value.numpy()
        for name in layer.inputs:
            if last_use[name] == i:
                del values[name]
    return result


def reference_embeddings(h5_path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """The h5's output for prewhitened NHWC float32 ``images``: (N, 128), before L2 normalisation."""
    graph = load_graph(h5_path)
    out = reference_forward(h5_path, np.asarray(images, np.float32), [graph.output_name])
    return out[graph.output_name].astype(np.float32)


def prewhiten(images: np.ndarray) -> np.ndarray:
    """FaceNet's per-image standardisation: ``(x - mean) / max(std, 1 / sqrt(x.size))``.

    Accepts one HWC image or an NHWC batch; statistics are over each whole image."""
    x = np.asarray(images, np.float64)
    single = x.ndim == 3
    if single:
        x = x[None]
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    floor = 1.0 / np.sqrt(np.prod(x.shape[1:]))
    y = ((x - mean) / np.maximum(std, floor)).astype(np.float32)
    return y[0] if single else y
