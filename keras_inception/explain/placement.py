"""Where the cells of a layer's feature map sit on the input image.

Cell `j` of a map (along one axis) stands for input pixel `first + stride * j`, the
centre of its receptive field. A convolution or pooling with kernel `k`, stride `s` and
dilation `d` centres its output `o` on input coordinate
`s * o + d * (k - 1) / 2 - pad_before`, where `pad_before` is 0 for VALID padding and,
for SAME, half the total padding rounded down,
`pad_total = max((out - 1) * s + d * (k - 1) + 1 - in, 0)` (TensorFlow's convention,
which Keras follows on every backend). `ZeroPadding2D` and `Cropping2D` shift the
coordinates; every other layer (normalization, activations, concatenations, sums) keeps
them. These maps are composed along the layers from the model's input to the explained
layer, following each layer's first input (the branches of a block end aligned), into
nested models too; the spatial size at each layer, which SAME padding depends on, is
carried forward from the image's. Each axis on its own: non-square inputs and 1x7
kernels need no more.

The path comes from the public `get_config()` of the functional models (their
`inbound_nodes`), the geometry from the layers' public configs. Where a layer on the
way is not understood (a transposed convolution, a resize, a subclassed model),
`cell_centres` raises `PlacementError`, and `grad_cam` falls back to `centred_cells`.
"""

from __future__ import annotations

import math
from typing import Any

import keras

# One axis of one layer: input coordinate = stride * output coordinate + offset.
AxisMap = tuple[float, float]


class PlacementError(Exception):
    """The layers between the input and the explained layer are not all understood."""


def _names(*names: str) -> tuple[type, ...]:
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


_CONVOLUTIONS = _names("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
_POOLS = _names("MaxPooling2D", "AveragePooling2D")
# Layers that move, resample or flatten the map in ways not modelled here.
_UNPLACEABLE = _names("Conv2DTranspose", "UpSampling2D", "Resizing", "CenterCrop",
                      "RandomCrop", "Reshape", "Permute", "Flatten")


def _first_tensor(structure: Any) -> tuple[str, int, int] | None:
    """(layer name, node index, tensor index) of the first Keras tensor among a
    serialized node's arguments, depth first."""
    if isinstance(structure, dict):
        if structure.get("class_name") == "__keras_tensor__":
            name, node, tensor = structure["config"]["keras_history"]
            return name, int(node), int(tensor)
        structure = list(structure.values())
    if isinstance(structure, (list, tuple)):
        for item in structure:
            if (found := _first_tensor(item)) is not None:
                return found
    return None


def _leaves(structure: Any) -> list[list]:
    """The `[name, node, tensor]` leaves of a functional config's `output_layers`."""
    if isinstance(structure, (list, tuple)) and len(structure) == 3 \
            and isinstance(structure[0], str):
        return [list(structure)]
    items = structure.values() if isinstance(structure, dict) else structure
    return [leaf for item in items for leaf in _leaves(item)]


def _graph_config(model: keras.Model, config: Any = None) -> dict:
    """`model.get_config()` (or `config`, the one its parent's config holds)."""
    if not isinstance(config, dict) or "layers" not in config:
        try:
            config = model.get_config()
        except (NotImplementedError, TypeError, ValueError) as error:
            raise PlacementError(f"model {model.name!r} has no config: {error}") from None
    if not isinstance(config, dict) or "layers" not in config:
        raise PlacementError(f"model {model.name!r} is neither functional nor sequential")
    return config


def _upstream(model: keras.Model, config: dict, name: str, node: int, tensor: int,
              include: bool) -> list[Any]:
    """The layers, in call order, from `model`'s input to output `tensor` of call `node`
    of its layer `name` along first inputs: `name` last, unless `include` is False."""
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        return [inner for layer in model.layers[:names.index(name) + include]
                for inner in _inside(layer, 0, None)]
    entries = {entry["name"]: entry for entry in config["layers"]}
    chain: list[Any] = []
    while entries[name]["class_name"] != "InputLayer":
        if include:
            chain.extend(reversed(_inside(model.get_layer(name), tensor, entries[name])))
        include = True
        nodes = entries[name]["inbound_nodes"]
        found = _first_tensor(nodes[node]["args"]) if node < len(nodes) else None
        if found is None:
            raise PlacementError(f"no input found for layer {name!r} of model {model.name!r}")
        name, node, tensor = found
    return chain[::-1]


def _inside(layer: Any, tensor: int, entry: dict | None) -> list[Any]:
    """`layer` itself, or for a nested model the layers that make its output `tensor`."""
    if not isinstance(layer, keras.Model):
        return [layer]
    config = _graph_config(layer, (entry or {}).get("config"))
    if isinstance(layer, keras.Sequential):
        return _upstream(layer, config, layer.layers[-1].name, 0, 0, include=True)
    name, node, index = _leaves(config["output_layers"])[tensor]
    if isinstance(layer.get_layer(name), keras.Model) \
            and not isinstance(layer.get_layer(name), keras.Sequential):
        node -= 1  # output_layers count a functional model's own first node; nodes do not
    return _upstream(layer, config, name, node, index, include=True)


def layers_to(model: keras.Model, path: tuple[str, ...], config: Any = None) -> list[Any]:
    """The layers from `model`'s input to the layer at `path` (names from the outer
    model down, as `graph.resolve_layer` gives it), in call order, that layer last."""
    config = _graph_config(model, config)
    if len(path) == 1:
        return _upstream(model, config, path[0], 0, 0, include=True)
    before = _upstream(model, config, path[0], 0, 0, include=False)
    entry = next((e for e in config["layers"] if e.get("name") == path[0]), {})
    return before + layers_to(model.get_layer(path[0]), path[1:], entry.get("config"))


def _pair(value: Any) -> tuple[int, int]:
    values = (value, value) if isinstance(value, int) else tuple(value)
    return int(values[0]), int(values[1])


def _edges(value: Any) -> list[tuple[int, int]]:
    """((top, bottom), (left, right)) of a ZeroPadding2D or Cropping2D config."""
    if isinstance(value, int):
        return [(value, value)] * 2
    return [(int(v), int(v)) if isinstance(v, int) else _pair(v) for v in value]


def _window(size: int, kernel: int, stride: int, dilation: int,
            padding: str) -> tuple[int, AxisMap]:
    """(output size, map) of a convolution or pooling along one axis."""
    extent = dilation * (kernel - 1) + 1
    if padding == "valid":
        out, before = (size - extent) // stride + 1, 0
    elif padding == "same":
        out = -(-size // stride)
        before = max((out - 1) * stride + extent - size, 0) // 2
    else:
        raise PlacementError(f"padding {padding!r}")
    if out < 1:
        raise PlacementError(f"an input of {size} is smaller than a window of {extent}")
    return out, (stride, (extent - 1) / 2 - before)


def _layer_maps(layer: Any, sizes: tuple[int, ...]) -> tuple[tuple[int, ...], list[AxisMap]]:
    """(output sizes, maps of both axes) of one layer, given its input's sizes."""
    if isinstance(layer, _CONVOLUTIONS + _POOLS):
        config = layer.get_config()
        if isinstance(layer, _CONVOLUTIONS):
            kernel, dilation = _pair(config["kernel_size"]), _pair(config["dilation_rate"])
        else:
            kernel, dilation = _pair(config["pool_size"]), (1, 1)
        strides = _pair(config["strides"] if config.get("strides") is not None else kernel)
        padding = str(config["padding"]).lower()
        out, maps = zip(*(_window(*axis, padding) for axis in zip(
            sizes, kernel, strides, dilation, strict=True)), strict=True)
        return tuple(out), list(maps)
    if isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
        config = layer.get_config()
        sign = 1 if isinstance(layer, keras.layers.ZeroPadding2D) else -1
        edges = _edges(config["padding" if sign == 1 else "cropping"])
        return (tuple(n + sign * (a + b) for n, (a, b) in zip(sizes, edges, strict=True)),
                [(1, -sign * a) for a, _ in edges])
    if isinstance(layer, _UNPLACEABLE + (keras.Model,)):
        raise PlacementError(f"layer {layer.name!r} ({type(layer).__name__})")
    return sizes, [(1, 0.0), (1, 0.0)]


def cell_centres(model: keras.Model, path: tuple[str, ...], size: tuple[int, int],
                 cells: tuple[int, int], *, config: dict | None = None,
                 ) -> list[tuple[float, float]]:
    """[(first cell's centre, stride)] in input pixels of the rows and of the columns of
    the map of the layer at `path`, for an input of `size` (height, width) that gives
    that layer a map of `cells` (rows, columns). `config`: `model.get_config()`, to
    place several layers of a large model without serializing it each time.

    Raises:
        PlacementError: a layer on the way is not understood, the model's graph cannot be
            read, or the layers' sizes do not come out at `cells`.
    """
    try:
        layers = layers_to(model, tuple(path), config)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise PlacementError(f"the path to {'/'.join(path)!r} cannot be followed: "
                          f"{error!r}") from None
    sizes = tuple(int(n) for n in size)
    composed = [(1.0, 0.0), (1.0, 0.0)]  # image coordinate = a * coordinate here + b
    for layer in layers:
        sizes, maps = _layer_maps(layer, sizes)
        composed = [(a * s, a * c + b) for (a, b), (s, c) in zip(composed, maps, strict=True)]
    if sizes != tuple(int(c) for c in cells):
        raise PlacementError(f"the layers on the path give a {sizes} map, not {tuple(cells)}")
    return [(b, a) for a, b in composed]


def centred_cells(size: int, cells: int) -> tuple[float, float]:
    """(first cell's centre, stride) without the layers: the power of two that fits as
    the stride (a map loses less than half its input to VALID borders), the cells
    centred on the input. Exact where the input leaves no remainder to the VALID
    reductions (299 px for Inception-ResNet-v2 at every level); up to half a stride off
    elsewhere, and on SAME-padded (aligned) networks."""
    stride = 2.0 ** math.floor(math.log2(size / cells)) if cells > 1 else float(size)
    return (size - 1) / 2 - stride * (cells - 1) / 2, stride
