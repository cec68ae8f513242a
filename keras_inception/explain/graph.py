"""Which layer an explanation reads, and the model rebuilt to read it.

A fine-tuned model holds its network as a nested layer (`train`'s `best.keras`, a
builder given `input_tensor`, an ensemble), where a sub-model from the outer input to
an inner layer is "Graph disconnected". Instead, the model is rebuilt with
`keras.models.clone_model` on the same layer objects (same weights), down the path of
nested models that leads to the layer, with two changes:

* the layer's output passes through a `_Probe`, which adds a perturbation `delta`
  (zero) and keeps its output: d score / d delta is d score / d activation, on every
  backend, JAX included, where only inputs of a function can be differentiated;
* a final softmax is left out, so that the explained score is the class's logit (a
  confident softmax has no gradient left: Grad-CAM's paper explains the score before it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import keras

from keras_inception.registry import ModelSpec, match_spec

LayerPath = tuple[str, ...]  # names from the outer model down to the layer


def _walk(model: keras.Model, prefix: LayerPath = ()) -> Iterator[tuple[LayerPath, Any]]:
    """(path, layer) for every layer of `model`, nested models' layers included."""
    for layer in model.layers:
        path = (*prefix, layer.name)
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer, path)


def networks_in(model: keras.Model) -> list[tuple[LayerPath, ModelSpec, keras.Model]]:
    """(path, spec, network) of every network of the registry in `model`, at any depth
    (path `()` for `model` itself)."""
    candidates = [((), model), *((p, m) for p, m in _walk(model) if isinstance(m, keras.Model))]
    return [(path, spec, m) for path, m in candidates if (spec := match_spec(m)) is not None]


def _name(path: LayerPath) -> str:
    return "/".join(path)


def feature_tap_names(model: keras.Model) -> list[str]:
    """The layers `layer=` accepts by the networks' specs: each network's feature taps."""
    return [_name((*path, tap.layer)) for path, spec, _ in networks_in(model)
            for tap in spec.feature_taps]


def _spatial_size(shape: tuple) -> tuple[int | None, int | None]:
    """(rows, columns) of a 4-D feature map's shape, in Keras's image data format."""
    if keras.config.image_data_format() == "channels_first":
        return tuple(shape[2:4])
    return tuple(shape[1:3])


def resolve_layer(model: keras.Model, layer: str | None,
                  size: tuple[int, int] | None = None) -> tuple[LayerPath, Any]:
    """(path, layer object) of the layer `layer` names (see `grad_cam`); ValueError with
    the feature taps for a name that is unknown, ambiguous or not a spatial map.

    `layer=None` or a network's name chooses that network's last feature tap, unless its
    map is a single cell at an input of `size` (height, width; None: the model's own
    input size, where fixed): Grad-CAM's map would then be uniform, so the deepest tap
    whose map is larger is chosen (the last tap where none is).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    networks = networks_in(model)
    if layer is None:
        if len(networks) != 1:
            found = ", ".join(_name(p) or model.name for p, _, _ in networks) or "none"
            raise ValueError(
                f"layer=None needs a model holding one of keras_inception's networks; model "
                f"{model.name!r} holds {len(networks)} ({found}): pass `layer`, the name of a "
                "network or of a layer with a spatial output.")
        named = networks
    else:
        named = [(p, s, m) for p, s, m in networks if p and layer in (p[-1], _name(p))]
    layers = dict(_walk(model))
    if len(named) == 1:
        return _default_tap(model, *named[0][:2], layers, size)
    found = [(p, obj) for p, obj in layers.items() if layer in (p[-1], _name(p))
             or _name(p).endswith("/" + str(layer))]
    if len(found) == 1:
        return _checked(model, *found[0])
    taps = ", ".join(feature_tap_names(model)) or "none (not a keras_inception network)"
    if not found:
        raise ValueError(f"Unknown layer={layer!r}: model {model.name!r} has no layer of that "
                         f"name. Its networks' feature taps: {taps}.")
    raise ValueError(f"layer={layer!r} names {len(found)} layers of model {model.name!r} "
                     f"({', '.join(_name(p) for p, _ in found)}): pass one of these paths.")


def _default_tap(model: keras.Model, prefix: LayerPath, spec: ModelSpec, layers: dict,
                 size: tuple[int, int] | None) -> tuple[LayerPath, Any]:
    """The network's last feature tap, or the deepest larger than one cell where the last
    is a single cell at `size` (unknown sizes count as larger for the last tap, as too
    small for the others: a tap is only left for one known to be better)."""
    paths = [(*prefix, tap.layer) for tap in reversed(spec.feature_taps)]
    last = _checked(model, paths[0], layers[paths[0]])
    cells = _cells(model, *last, size)
    if cells is None or max(cells) > 1:
        return last
    for path in paths[1:]:
        if max(_cells(model, path, layers[path], size) or (1,)) > 1:
            return _checked(model, path, layers[path])
    return last


def _cells(model: keras.Model, path: LayerPath, layer: Any,
           size: tuple[int, int] | None) -> tuple[int, int] | None:
    """(rows, columns) of the layer's map at an input of `size`: from its static shape
    where fixed, else traced through the model rebuilt with a probe there; None where
    neither tells."""
    cells = _spatial_size(layer.output.shape)
    if None not in cells:
        return cells
    if size is None:
        return None
    explained = _rebuilt(model, path, layer)
    shape = list(model.inputs[0].shape)
    shape[0] = 1
    rows = 2 if keras.config.image_data_format() == "channels_first" else 1
    shape[rows:rows + 2] = size
    explained.graph.compute_output_spec(keras.KerasTensor(tuple(shape)))
    cells = _spatial_size(explained.probe.state.shape)
    return None if None in cells else cells


def _checked(model: keras.Model, path: LayerPath, layer: Any) -> tuple[LayerPath, Any]:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # never called, or called more than once
        shape = None
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"layer={_name(path)!r} has no spatial output (output shape {shape}): explanations "
            f"read a 4-D feature map. The feature taps of model {model.name!r}: "
            f"{', '.join(feature_tap_names(model)) or 'none'}.")
    return path, layer


class _ProbeState:
    """What a `_Probe` reads and keeps during one call (plain Python: not tracked by Keras)."""

    delta: Any = None
    value: Any = None


class _Probe(keras.layers.Layer):
    """Identity, plus `state.delta` when set; keeps its output in `state.value`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = _ProbeState()

    def call(self, inputs: Any) -> Any:
        if self.state.delta is not None:
            inputs = inputs + self.state.delta
        self.state.value = inputs
        return inputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        self.state.shape = tuple(input_shape)  # the concrete shape when run symbolically
        return input_shape


class _Logits(keras.layers.Layer):
    """A softmax `Dense` without its softmax, on the same kernel and bias."""

    def __init__(self, dense: keras.layers.Dense, **kwargs: Any) -> None:
        super().__init__(dtype=dense.dtype_policy, name=f"{dense.name}_logits", **kwargs)
        self.dense = dense

    def call(self, inputs: Any) -> Any:
        logits = keras.ops.matmul(inputs, self.dense.kernel)
        return logits + self.dense.bias if self.dense.use_bias else logits

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.dense.units)


def _output_layer(model: keras.Model) -> Any:
    """The layer that makes `model`'s output, or None when it cannot be told."""
    for position, layer in enumerate(reversed(model.layers)):
        if isinstance(layer, keras.Model):
            # A nested model's `.output` is its own graph's; the functional layer order
            # puts the one that makes the output last.
            if position == 0:
                return layer
            continue
        try:
            if layer.output is model.outputs[0]:
                return layer
        except (AttributeError, ValueError):  # a layer called more than once
            continue
    return None


def _softmax_output(model: keras.Model) -> tuple[list[keras.Model], Any]:
    """(the nested models leading to it, the layer) that makes `model`'s output when that
    output is a softmax (a network given `input_tensor` has its head one model down);
    ([], None) otherwise."""
    nested, current = [], model
    while isinstance(layer := _output_layer(current), keras.Model):
        nested.append(layer)
        current = layer
    softmax = layer is not None and isinstance(
        layer, (keras.layers.Dense, keras.layers.Activation)) and layer.get_config().get(
        "activation") == "softmax"
    return (nested, layer) if softmax else ([], None)


@dataclasses.dataclass
class ExplainedGraph:
    """`model` rebuilt on its own layers: `graph(images)` gives its logits (its output when
    that is not a softmax), and `probe` sees the explained layer."""

    graph: keras.Model
    probe: _Probe | None
    layer_name: str | None
    logits: bool  # whether a final softmax was left out
    path: LayerPath = ()  # of the probed layer, from the outer model down


def rebuild(model: keras.Model, layer: str | None, *, probe: bool = True,
            size: tuple[int, int] | None = None) -> ExplainedGraph:
    """The model rebuilt without a final softmax, and with a probe at `layer` (see
    `resolve_layer`, for images of `size`) unless `probe` is False."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    if len(model.outputs) != 1:
        raise ValueError(f"Explanations need a model with one output; model {model.name!r} has "
                         f"{len(model.outputs)}.")
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2:
        raise ValueError(
            f"`model` must output one score vector per image, (batch, classes) or (batch, "
            f"embedding size); model {model.name!r} outputs shape {shape}: pool or flatten "
            "its output.")
    path, target = resolve_layer(model, layer, size) if probe else ((), None)
    return _rebuilt(model, path, target)


def _rebuilt(model: keras.Model, path: LayerPath, target: Any) -> ExplainedGraph:
    """`rebuild`, with a probe at the layer `target` found at `path` (None: no probe)."""
    probe = None if target is None else _Probe(dtype=target.dtype_policy, name="explain_probe")
    softmax_models, softmax_layer = _softmax_output(model)
    layers = dict(_walk(model))
    # The nested models to rebuild: those leading to the layer and to the softmax.
    on_path = {id(layers[path[:i]]) for i in range(1, len(path))} | set(map(id, softmax_models))
    calls = []

    def call(op: Any, *args: Any, **kwargs: Any) -> Any:
        if target is not None and op is target:
            calls.append(op)
            return probe(op(*args, **kwargs))
        if op is softmax_layer:
            return _Logits(op)(args[0]) if isinstance(op, keras.layers.Dense) else args[0]
        return op(*args, **kwargs)

    def copy(sub: Any) -> Any:
        return _clone(sub, copy, call) if id(sub) in on_path else sub

    graph = _clone(model, copy, call)
    if probe is not None and len(calls) != 1:
        raise ValueError(f"layer={_name(path)!r} is called {len(calls)} times in model "
                         f"{model.name!r}; explanations need a layer called once.")
    return ExplainedGraph(graph, probe, _name(path) or None, softmax_layer is not None, path)


def _clone(model: keras.Model, copy: Any, call: Any) -> keras.Model:
    """`model` on the same layers (`copy` rebuilds the nested models on the path), each
    layer called through `call`."""
    if isinstance(model, keras.Sequential):  # clone_model takes no call_function for these
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = call(copy(layer), x)
        return keras.Model(inputs, x, name=model.name)
    return keras.models.clone_model(model, clone_function=copy, call_function=call)
