"""The strict, all-or-nothing engine shared by the converters (`timm`, `slim`, FaceNet's).

A *dialect* is a source's layout of parameters (`.conv.weight`, `/BatchNorm/beta`,
OIHW kernels, ...); the source's names of a network's layers come from its naming
table (`keras_inception.convert.naming`), looked up by Keras layer name. The engine
knows no network: it walks the model's weighted layers, names each through the table
and plans every assignment before making any. Loading is all-or-nothing: every
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
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.convert.naming import NamingTable, naming_table, naming_tables
from keras_inception.registry import network_of

# How many offending names an error message lists before summarising.
_MAX_LISTED = 12


@dataclasses.dataclass(frozen=True)
class Unit:
    """A weighted unit of the Keras model: a layer and the BatchNorm that follows it."""

    kind: str  # "conv_bn", "conv_bias", "dense" or "dense_bn"
    layers: tuple[str, ...]  # Keras layers: (conv, bn), (conv,), (dense,) or (dense, bn)


class Structure:
    """The weighted units of one of our models, and the naming table of a source for it."""

    def __init__(self, model: keras.Model, dialect: Dialect) -> None:
        self.spec, model = network_of(model)
        self.family = self.spec.name
        self.model = model
        self.layers = {layer.name: layer for layer in model.layers}
        table = dialect.table(self.family)
        if table is None:
            raise ValueError(
                f"{self.spec.title} has no {dialect.label} counterpart: {dialect.label} ships "
                "no such network, so there are no weights of it to convert."
            )
        self.table: NamingTable = table

    def units(self) -> Iterator[Unit]:
        for layer in self.model.layers:
            if not layer.weights:
                continue
            name = layer.name
            bn = f"{name}_bn"  # conv2d_bn's BatchNorm; FaceNet's bottleneck's
            if isinstance(layer, keras.layers.Dense):
                yield Unit("dense_bn", (name, bn)) if bn in self.layers else Unit("dense", (name,))
            elif isinstance(layer, keras.layers.Conv2D):
                if layer.use_bias:
                    yield Unit("conv_bias", (name,))  # a residual block's up-projection
                else:
                    yield Unit("conv_bn", (name, bn) if bn in self.layers else (name,))

    def name(self, unit: Unit) -> str | None:
        """The source's name of a unit (its table's name of its first layer), or None."""
        return self.table.names.get(unit.layers[0])

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


class Dialect:
    """The layout of one source's parameters; its names are in its naming tables."""

    label = ""
    source = ""  # the source's key in `naming.TABLES`
    # Whether key maps also list the BatchNorm gamma keys that are folded into kernels.
    lists_folded_gamma = False

    def table(self, network: str) -> NamingTable | None:
        """The source's naming table of `network`; None: the source has no such network."""
        return naming_table(self.source, network)

    def family_of(self, keys: list[str], own: NamingTable) -> str | None:
        """The network whose file `keys` are, when they are another network's than `own`'s
        (by the tables' markers); None when they are `own`'s or nobody's."""
        if own.marks(keys):
            return None
        return next((t.network for t in naming_tables(self.source).values() if t.marks(keys)),
                    None)

    def keys(self, kind: str, prefix: str) -> list[tuple[str, str, bool]]:
        """(slot, key, required) for a unit; slots: kernel, bias, gamma, beta, mean, var."""
        raise NotImplementedError

    def source_shape(self, kind: str, slot: str, keras_shape: tuple) -> tuple:
        return keras_shape

    def to_keras(self, kind: str, slot: str, value: np.ndarray) -> np.ndarray:
        return value

    def skipped(self, key: str) -> bool:
        """Keys of the source's bookkeeping that no network loads (`global_step`, ...)."""
        return False

    def ignored(self, key: str, table: NamingTable, has_top: bool) -> bool:
        """Keys left unused without complaint: the source's bookkeeping, what the table
        ignores, and the classifier's keys when the model has no head."""
        return (self.skipped(key) or key.startswith(table.ignored)
                or (not has_top and key.startswith(table.top)))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _unnamed_message(dialect: Dialect, s: Structure, unnamed: list[str]) -> str:
    return (f"Keras layers that the {dialect.label} naming table of {s.family} does not "
            f"name: {_listing(unnamed)}")


@dataclasses.dataclass
class _Problems:
    """What a conversion found wrong, collected over all units before anything is assigned."""

    missing: list[str] = dataclasses.field(default_factory=list)
    bad_shapes: list[str] = dataclasses.field(default_factory=list)
    unnamed: list[str] = dataclasses.field(default_factory=list)
    used: set[str] = dataclasses.field(default_factory=set)
    class_message: str = ""

    def raise_if_any(self, dialect: Dialect, s: Structure, model: keras.Model,
                     unexpected: list[str], uncovered: list[str]) -> None:
        label = dialect.label
        problems = [text for found, text in (
            (self.unnamed, _unnamed_message(dialect, s, self.unnamed)),
            (self.missing, f"missing {label} keys: {_listing(self.missing)}"),
            (unexpected, f"unexpected {label} keys (not used): {_listing(unexpected)}"),
            (self.bad_shapes, f"wrong shapes: {_listing(self.bad_shapes)}"),
            (uncovered, f"Keras weights without a source: {_listing(uncovered)}"),
        ) if found]
        if problems:
            raise ValueError(
                f"Cannot load {label} weights into {model.name!r} ({s.family}); nothing "
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
    s = Structure(model, dialect)
    model = s.model  # the network itself, when nested in `model`
    keys = list(source)
    found = dialect.family_of(keys, s.table)
    if found is not None:
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
        covered.update(id(v) for v in target.values())
        prefix = s.name(unit)
        if prefix is None:
            problems.unnamed.append(unit.layers[0])
            continue
        values = _unit_values(unit, target, prefix, source, dialect, model, problems)
        if not all(slot in values for slot in target):
            continue  # reported as missing or wrong shape
        _fold_gamma(values, unit, problems)
        assignments += [(target[slot], values[slot].astype(target[slot].dtype))
                        for slot in target]
    unexpected = [k for k in keys
                  if k not in problems.used and not dialect.ignored(k, s.table, has_top)]
    uncovered = [v.path for v in model.weights if id(v) not in covered]
    problems.raise_if_any(dialect, s, model, unexpected, uncovered)
    return assignments


def assign(plan: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in plan:
        variable.assign(value)


def key_map(model: keras.Model, dialect: Dialect) -> dict[str, str]:
    """Source key -> Keras weight path of every weight of `model` (its table must name
    every weighted layer)."""
    s = Structure(model, dialect)
    units = list(s.units())
    unnamed = [unit.layers[0] for unit in units if s.name(unit) is None]
    if unnamed:
        raise ValueError(_unnamed_message(dialect, s, unnamed) + ".")
    mapping = {}
    for unit in units:
        by_slot = {slot: key for slot, key, _ in dialect.keys(unit.kind, s.name(unit))}
        target = s.targets(unit)
        for slot, variable in target.items():
            mapping[by_slot[slot]] = variable.path
        if dialect.lists_folded_gamma and unit.kind == "conv_bn":
            mapping[by_slot["gamma"]] = f"{target['kernel'].path} (folded gamma)"
    return mapping
