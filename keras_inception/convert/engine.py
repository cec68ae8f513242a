"""The strict, all-or-nothing engine shared by the converters (`timm`, `slim`).

A *dialect* names each weighted unit of one of our models in a source's convention;
the engine plans every assignment before making any. The name mapping is derived
from the Keras layer names the builders set (block, branch, step) and from the
network's `ModelSpec` (its timm / TF-slim names), never from the order of the weights
nor from a table of one network's blocks: a new network built from the package's
blocks needs no change here. Loading is all-or-nothing: every
source tensor must be used and every Keras weight assigned, with matching shapes;
otherwise a ValueError lists the offending names and the model is left unchanged.

A BatchNorm scale gamma (absent from the TF-ported weights, i.e. 1) is folded into
the conv, since our BatchNormalization layers have `scale=False`:
`g * (conv(x, k) - m) / s + b == (conv(x, g * k) - g * m) / s + b`, so the kernel's
output channels and the moving mean are multiplied by g. The identity holds for any
real g (negative or zero included); it is exact at inference, where the moving
statistics are used.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.layers import ScaledResidual
from keras_inception.registry import ModelSpec, network_of

# How many offending names an error message lists before summarising.
_MAX_LISTED = 12

# The names `blocks.inception_branches` gives a branch's steps.
_BRANCH = re.compile(r"^(?P<block>.+)_branch(?P<b>\d+)_(?P<k>\d+)(?P<split>[ab]?)(?:_pool)?$")


@dataclasses.dataclass(frozen=True)
class Residual:
    """Where an Inception-ResNet block (`blocks.residual_stage`'s `{stage}_{n}`) sits."""

    stage: str  # the stage's name prefix, e.g. "block35"
    index: int  # the stage's position among the network's residual stages, from 0
    n: int  # the block's number in its stage, from 1
    last: bool  # the stage's final block is linear (no activation): a module of its own


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a branch: a conv (with its BN) or a pool."""

    layer: keras.layers.Layer
    k: int
    split: str  # "", "a" or "b" (Inception-v4's Inception-C split convs)

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, keras.layers.Conv2D)

    @property
    def valid(self) -> bool:
        return self.layer.padding == "valid"


@dataclasses.dataclass(frozen=True)
class Unit:
    """A weighted unit of the Keras model and where it sits in the network."""

    kind: str  # "conv_bn", "conv_bias", "dense" or "dense_bn"
    layers: tuple[str, ...]  # Keras layers: (conv, bn), (conv,) or (dense,)
    where: tuple  # ("stem", name) | ("branch", block, b, step) | ("up", block) | ("head",)


class Structure:
    """Blocks, branches and steps of one of our models, read from its layer names."""

    def __init__(self, model: keras.Model) -> None:
        self.spec, model = network_of(model)
        self.family = self.spec.name
        self.model = model
        self.layers = {layer.name: layer for layer in model.layers}
        self.branches: dict[str, dict[int, list[Step]]] = {}
        for layer in model.layers:
            m = _BRANCH.match(layer.name)
            pooling = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)
            if m and isinstance(layer, (keras.layers.Conv2D, *pooling)):
                steps = self.branches.setdefault(m["block"], {}).setdefault(int(m["b"]), [])
                steps.append(Step(layer, int(m["k"]), m["split"]))
        for block in self.branches.values():
            for steps in block.values():
                steps.sort(key=lambda s: (s.k, s.split))
        # Blocks in network order: Inception-v4's timm modules are numbered by it.
        self.mixed = [
            layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Concatenate) and layer.name in self.branches
        ]
        # Convs outside the blocks (no branch, no residual up-projection), in network order.
        self.stem = [
            layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and not layer.use_bias
            and not _BRANCH.match(layer.name)
        ]
        self._residuals = self._find_residuals()

    def _find_residuals(self) -> dict[str, Residual]:
        """The residual blocks, found by their `ScaledResidual` sum, by stage."""
        blocks = [layer.name for layer in self.model.layers if isinstance(layer, ScaledResidual)]
        stages: dict[str, list[tuple[int, str]]] = {}
        for name in blocks:
            stage, _, n = name.rpartition("_")
            if not (stage and n.isdigit()):
                raise ValueError(
                    f"Residual block {name!r} of model {self.model.name!r} is not named "
                    "`{stage}_{n}` (blocks.residual_stage): not a keras_inception layout."
                )
            stages.setdefault(stage, []).append((int(n), name))
        found = {}
        for index, (stage, members) in enumerate(stages.items()):
            final = max(n for n, _ in members)
            for n, name in members:
                linear = f"{name}_ac" not in self.layers
                found[name] = Residual(stage, index, n, n == final and linear)
        return found

    def units(self) -> Iterator[Unit]:
        for layer in self.model.layers:
            if not layer.weights:
                continue
            name = layer.name
            if isinstance(layer, keras.layers.Dense):
                bn = f"{name}_bn"  # FaceNet's bottleneck: Dense -> BatchNormalization
                if bn in self.layers:
                    yield Unit("dense_bn", (name, bn), ("head",))
                else:
                    yield Unit("dense", (name,), ("head",))
            elif isinstance(layer, keras.layers.Conv2D):
                bn = f"{name}_bn"
                if layer.use_bias:
                    block = name[: -len("_conv")]
                    yield Unit("conv_bias", (name,), ("up", block))
                    continue
                m = _BRANCH.match(name)
                where = (
                    ("branch", m["block"], int(m["b"]), f"{m['k']}{m['split']}")
                    if m else ("stem", name)
                )
                yield Unit("conv_bn", (name, bn) if bn in self.layers else (name,), where)

    def targets(self, unit: Unit) -> dict[str, Any]:
        """Slot -> Keras variable of a unit (Keras BN weights: beta, moving mean, variance)."""
        variables = [v for name in unit.layers for v in self.layers[name].weights]
        slots = []
        for name in unit.layers:
            layer = self.layers[name]
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.scale:
                slots += (["beta"] if layer.center else []) + ["mean", "var"]
            elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
                slots += ["kernel"] + (["bias"] if layer.use_bias else [])
        if len(slots) != len(variables):
            raise ValueError(
                f"Layer(s) {', '.join(unit.layers)} of model {self.model.name!r} have "
                f"{len(variables)} weights, expected {len(slots)}: not a keras_inception layout."
            )
        return dict(zip(slots, variables, strict=True))

    def branch_step(self, block: str, b: int, step: str) -> tuple[list[Step], int]:
        steps = self.branches[block][b]
        position = next(i for i, s in enumerate(steps) if f"{s.k}{s.split}" == step)
        return steps, position

    def residual(self, block: str) -> Residual | None:
        """Where the residual block `block` (`block35_3`, ...) sits; None for other blocks."""
        return self._residuals.get(block)


class Dialect:
    """Naming and layout conventions of one source of weights."""

    label = ""
    # Whether key maps also list the BatchNorm gamma keys that are folded into kernels.
    lists_folded_gamma = False

    def supports(self, spec: ModelSpec) -> bool:
        """Whether the source has this network at all."""
        raise NotImplementedError

    def source_family(self, keys: list[str]) -> str | None:
        raise NotImplementedError

    def name(self, s: Structure, where: tuple) -> str:
        raise NotImplementedError

    def keys(self, kind: str, prefix: str) -> list[tuple[str, str, bool]]:
        """(slot, key, required) for a unit; slots: kernel, bias, gamma, beta, mean, var."""
        raise NotImplementedError

    def source_shape(self, kind: str, slot: str, keras_shape: tuple) -> tuple:
        return keras_shape

    def to_keras(self, kind: str, slot: str, value: np.ndarray) -> np.ndarray:
        return value

    def ignored(self, key: str, spec: ModelSpec, has_top: bool) -> bool:
        raise NotImplementedError


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def structure(model: keras.Model, dialect: Dialect) -> Structure:
    s = Structure(model)
    if not dialect.supports(s.spec):
        raise ValueError(
            f"{s.spec.title} has no {dialect.label} counterpart: {dialect.label} ships no such "
            "network, so there are no weights of it to convert."
        )
    return s


@dataclasses.dataclass
class _Problems:
    """What a conversion found wrong, collected over all units before anything is assigned."""

    missing: list[str] = dataclasses.field(default_factory=list)
    bad_shapes: list[str] = dataclasses.field(default_factory=list)
    used: set[str] = dataclasses.field(default_factory=set)
    class_message: str = ""

    def raise_if_any(self, dialect: Dialect, family: str, model: keras.Model,
                     unexpected: list[str], uncovered: list[str]) -> None:
        label = dialect.label
        problems = [text for found, text in (
            (self.missing, f"missing {label} keys: {_listing(self.missing)}"),
            (unexpected, f"unexpected {label} keys (not used): {_listing(unexpected)}"),
            (self.bad_shapes, f"wrong shapes: {_listing(self.bad_shapes)}"),
            (uncovered, f"Keras weights without a source: {_listing(uncovered)}"),
        ) if found]
        if problems:
            raise ValueError(
                f"Cannot load {label} weights into {model.name!r} ({family}); nothing "
                f"was changed. " + "; ".join(problems) + "." + self.class_message
            )


def _unit_values(unit, target: dict, prefix: str, source: Mapping[str, Any], dialect: Dialect,
                 model: keras.Model, problems: _Problems) -> dict[str, np.ndarray]:
    """The source values of one unit, converted to Keras layout (float64); what is missing
    or has the wrong shape goes to `problems`."""
    values: dict[str, np.ndarray] = {}
    for slot, key, required in dialect.keys(unit.kind, prefix):
        if key not in source:
            if required and (slot in target or slot == "gamma"):
                problems.missing.append(f"{key} (for {unit.layers[0]})")
            continue
        if slot not in target and slot != "gamma":
            continue  # e.g. a bias our layer does not have: reported as unexpected
        problems.used.add(key)
        value = np.asarray(source[key])
        ref = target["kernel" if slot == "gamma" else slot]
        expected = tuple(
            tuple(ref.shape)[-1:] if slot == "gamma"
            else dialect.source_shape(unit.kind, slot, tuple(ref.shape))
        )
        if tuple(value.shape) != expected:
            if unit.kind in ("dense", "dense_bn") and value.ndim == len(expected):
                problems.class_message = (
                    f" The {dialect.label} head {key!r} has shape {value.shape} but "
                    f"model {model.name!r} expects {expected}: build it with the "
                    "weights' number of outputs (classes, or embedding_dim), or without "
                    "the head (include_top=False)."
                )
            problems.bad_shapes.append(
                f"{key} {tuple(value.shape)} vs expected {expected} (Keras {ref.path})"
            )
            continue
        values[slot] = dialect.to_keras(unit.kind, slot, value).astype(np.float64)
    return values


def _fold_gamma(values: dict[str, np.ndarray], unit, problems: _Problems) -> None:
    """A source scale (`gamma`) without a Keras slot is folded into the kernel (it scales
    the output channels) and the BatchNorm mean."""
    gamma = values.pop("gamma", None)
    if gamma is None or np.all(gamma == 1.0):
        return
    values["kernel"] = values["kernel"] * gamma
    if "mean" in values:
        values["mean"] = values["mean"] * gamma
    else:
        problems.missing.append(f"BatchNormalization {unit.layers[0]}_bn to fold gamma into")


def plan_assignments(
    model: keras.Model, source: Mapping[str, Any], dialect: Dialect
) -> list[tuple[Any, np.ndarray]]:
    """Checks everything and returns (variable, value) pairs; assigns nothing."""
    s = structure(model, dialect)
    model = s.model  # the network itself, when nested in `model`
    keys = list(source)
    found = dialect.source_family(keys)
    if found is not None and found != s.family:
        raise ValueError(
            f"Wrong model family: the {dialect.label} weights are for {found} (keys such as "
            f"{keys[0]!r}), but model {model.name!r} is {s.family}. Build the matching "
            "network to load them."
        )
    has_top = any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    assignments: list[tuple[Any, np.ndarray]] = []
    problems = _Problems()
    covered: set[int] = set()
    for unit in s.units():
        target = s.targets(unit)
        values = _unit_values(unit, target, dialect.name(s, unit.where), source, dialect,
                              model, problems)
        covered.update(id(v) for v in target.values())
        if not all(slot in values for slot in target):
            continue  # reported as missing or wrong shape
        _fold_gamma(values, unit, problems)
        assignments += [(target[slot], values[slot].astype(target[slot].dtype))
                        for slot in target]
    unexpected = [k for k in keys
                  if k not in problems.used and not dialect.ignored(k, s.spec, has_top)]
    uncovered = [v.path for v in model.weights if id(v) not in covered]
    problems.raise_if_any(dialect, s.family, model, unexpected, uncovered)
    return assignments


def assign(plan: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in plan:
        variable.assign(value)


def key_map(model: keras.Model, dialect: Dialect) -> dict[str, str]:
    s = structure(model, dialect)
    mapping = {}
    for unit in s.units():
        prefix = dialect.name(s, unit.where)
        by_slot = {slot: key for slot, key, _ in dialect.keys(unit.kind, prefix)}
        target = s.targets(unit)
        for slot, variable in target.items():
            mapping[by_slot[slot]] = variable.path
        if dialect.lists_folded_gamma and unit.kind == "conv_bn":
            mapping[by_slot["gamma"]] = f"{target['kernel'].path} (folded gamma)"
    return mapping
