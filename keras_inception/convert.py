"""Converters from the reference implementations' weights to our Keras models.

* `load_timm_weights(model, state_dict)`: timm state dicts (NumPy arrays, e.g. from
  `safetensors.numpy.load_file` or an `.npz`) for Inception-v4 and Inception-ResNet-v2.
* `load_slim_checkpoint(model, path)`: TF-slim checkpoints (`InceptionV4/...`,
  `InceptionResnetV2/...`), read with `tf.train.load_checkpoint`.

The name mapping is derived from the Keras layer names the builders set (block,
branch, step), never from the order of the weights. Loading is all-or-nothing: every
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
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.features import model_family

TIMM_CLASSIFIERS = {"inception_v4": "last_linear", "inception_resnet_v2": "classif"}
SLIM_SCOPES = {"inception_v4": "InceptionV4", "inception_resnet_v2": "InceptionResnetV2"}
_NO_REFERENCE = (
    "Inception-ResNet-v1 has no {source} counterpart (timm and TF-slim ship only "
    "Inception-v4 and Inception-ResNet-v2, and no public ImageNet weights exist for it)."
)
# How many offending names an error message lists before summarising.
_MAX_LISTED = 12

_BRANCH = re.compile(r"^(?P<block>.+)_branch(?P<b>\d+)_(?P<k>\d+)(?P<split>[ab]?)(?:_pool)?$")
_RESIDUAL = re.compile(r"^block(?P<size>35|17|8)_(?P<n>\d+)$")


@dataclasses.dataclass(frozen=True)
class _Step:
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
class _Unit:
    """A weighted unit of the Keras model and where it sits in the network."""

    kind: str  # "conv_bn", "conv_bias" or "dense"
    layers: tuple[str, ...]  # Keras layers: (conv, bn), (conv,) or (dense,)
    where: tuple  # ("stem", name) | ("branch", block, b, step) | ("up", block) | ("head",)


class _Structure:
    """Blocks, branches and steps of one of our models, read from its layer names."""

    def __init__(self, model: keras.Model) -> None:
        self.family = model_family(model)
        self.model = model
        self.layers = {layer.name: layer for layer in model.layers}
        self.branches: dict[str, dict[int, list[_Step]]] = {}
        for layer in model.layers:
            m = _BRANCH.match(layer.name)
            pooling = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)
            if m and isinstance(layer, (keras.layers.Conv2D, *pooling)):
                steps = self.branches.setdefault(m["block"], {}).setdefault(int(m["b"]), [])
                steps.append(_Step(layer, int(m["k"]), m["split"]))
        for block in self.branches.values():
            for steps in block.values():
                steps.sort(key=lambda s: (s.k, s.split))
        # Blocks in network order: Inception-v4's timm modules are numbered by it.
        self.mixed = [
            layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Concatenate) and layer.name in self.branches
        ]
        self.stem = [
            layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and re.fullmatch(r"conv_\d[a-z]", layer.name)
        ]
        residual = [m for name in self.layers if (m := _RESIDUAL.match(name))]
        self.last_block8 = max((int(m["n"]) for m in residual if m["size"] == "8"), default=0)

    def units(self) -> Iterator[_Unit]:
        for layer in self.model.layers:
            if not layer.weights:
                continue
            name = layer.name
            if isinstance(layer, keras.layers.Dense):
                yield _Unit("dense", (name,), ("head",))
            elif isinstance(layer, keras.layers.Conv2D):
                bn = f"{name}_bn"
                if layer.use_bias:
                    block = name[: -len("_conv")]
                    yield _Unit("conv_bias", (name,), ("up", block))
                    continue
                m = _BRANCH.match(name)
                where = (
                    ("branch", m["block"], int(m["b"]), f"{m['k']}{m['split']}")
                    if m else ("stem", name)
                )
                yield _Unit("conv_bn", (name, bn) if bn in self.layers else (name,), where)

    def targets(self, unit: _Unit) -> dict[str, Any]:
        """Slot -> Keras variable of a unit (Keras BN weights: beta, moving mean, variance)."""
        variables = [v for name in unit.layers for v in self.layers[name].weights]
        slots = ["kernel"] + (["bias"] if unit.kind != "conv_bn" else [])
        if unit.kind == "conv_bn" and len(unit.layers) == 2:
            slots += ["beta", "mean", "var"]
        if len(slots) != len(variables):
            raise ValueError(
                f"Layer(s) {', '.join(unit.layers)} of model {self.model.name!r} have "
                f"{len(variables)} weights, expected {len(slots)}: not a keras_inception layout."
            )
        return dict(zip(slots, variables, strict=True))

    def branch_step(self, block: str, b: int, step: str) -> tuple[list[_Step], int]:
        steps = self.branches[block][b]
        position = next(i for i, s in enumerate(steps) if f"{s.k}{s.split}" == step)
        return steps, position

    def residual(self, block: str) -> tuple[str, int, bool] | None:
        """(size, n, is_last_block8) for `block35_3` etc., None for other blocks."""
        m = _RESIDUAL.match(block)
        if m is None:
            return None
        n = int(m["n"])
        return m["size"], n, m["size"] == "8" and n == self.last_block8


class _Dialect:
    """Naming and layout conventions of one source of weights."""

    label = ""

    def source_family(self, keys: list[str]) -> str | None:
        raise NotImplementedError

    def name(self, s: _Structure, where: tuple) -> str:
        raise NotImplementedError

    def keys(self, kind: str, prefix: str) -> list[tuple[str, str, bool]]:
        """(slot, key, required) for a unit; slots: kernel, bias, gamma, beta, mean, var."""
        raise NotImplementedError

    def source_shape(self, kind: str, slot: str, keras_shape: tuple) -> tuple:
        return keras_shape

    def to_keras(self, kind: str, slot: str, value: np.ndarray) -> np.ndarray:
        return value

    def ignored(self, key: str, family: str, has_top: bool) -> bool:
        raise NotImplementedError


class _Timm(_Dialect):
    label = "timm"

    def source_family(self, keys):
        if any(k.startswith(("features.", "last_linear.")) for k in keys):
            return "inception_v4"
        if any(k.startswith(("conv2d_1a.", "repeat.", "classif.")) for k in keys):
            return "inception_resnet_v2"
        return None

    def _block(self, s: _Structure, block: str) -> str:
        if s.family == "inception_v4":
            return f"features.{len(s.stem) + s.mixed.index(block)}"
        residual = s.residual(block)
        if residual is None:
            return block  # mixed_5b, mixed_6a, mixed_7a
        size, n, last = residual
        if last:
            return "block8"  # the final, linear block8 is a module of its own
        stage = {"35": "repeat", "17": "repeat_1", "8": "repeat_2"}[size]
        return f"{stage}.{n - 1}"

    def name(self, s, where):
        kind = where[0]
        if kind == "head":
            return TIMM_CLASSIFIERS[s.family]
        if kind == "stem":
            if s.family == "inception_v4":
                return f"features.{s.stem.index(where[1])}"
            return "conv2d_" + where[1][len("conv_"):]
        if kind == "up":
            return f"{self._block(s, where[1])}.conv2d"
        _, block, b, step = where
        steps, position = s.branch_step(block, b, step)
        convs_in_block = sum(st.is_conv for br in s.branches[block].values() for st in br)
        if convs_in_block == 1:
            sub = "conv"  # Mixed3a / Mixed5a hold a single conv named `conv`
        elif any(st.split for st in steps):
            sub = f"branch{b}_{step}"  # Inception-C: flat attributes branch1_1a, ...
        elif len(steps) == 1:
            sub = f"branch{b}"
        else:
            sub = f"branch{b}.{steps[position].k}"
        return f"{self._block(s, block)}.{sub}"

    def keys(self, kind, prefix):
        if kind == "conv_bn":
            return [
                ("kernel", f"{prefix}.conv.weight", True),
                ("gamma", f"{prefix}.bn.weight", True),
                ("beta", f"{prefix}.bn.bias", True),
                ("mean", f"{prefix}.bn.running_mean", True),
                ("var", f"{prefix}.bn.running_var", True),
            ]
        return [("kernel", f"{prefix}.weight", True), ("bias", f"{prefix}.bias", True)]

    def source_shape(self, kind, slot, keras_shape):
        if slot != "kernel":
            return keras_shape
        if kind == "dense":
            return keras_shape[::-1]  # (out, in)
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)

    def to_keras(self, kind, slot, value):
        if slot != "kernel":
            return value
        return value.T if kind == "dense" else value.transpose(2, 3, 1, 0)

    def ignored(self, key, family, has_top):
        if key.endswith(".num_batches_tracked"):
            return True
        return not has_top and key.startswith(TIMM_CLASSIFIERS[family] + ".")


class _Slim(_Dialect):
    label = "TF-slim"

    def __init__(self, background_class: bool) -> None:
        self.background_class = background_class

    def source_family(self, keys):
        for family, scope in SLIM_SCOPES.items():
            if any(k.startswith(scope + "/") for k in keys):
                return family
        return None

    def _block(self, s: _Structure, block: str) -> str:
        residual = s.residual(block)
        if residual is None:
            return block[0].upper() + block[1:]  # mixed_5b -> Mixed_5b
        size, n, last = residual
        if last:
            return "Block8"
        stage = {"35": "Repeat", "17": "Repeat_1", "8": "Repeat_2"}[size]
        return f"{stage}/block{size}_{n}"

    def name(self, s, where):
        scope = SLIM_SCOPES[s.family]
        kind = where[0]
        if kind == "head":
            return f"{scope}/Logits/Logits"
        if kind == "stem":
            kh, kw = s.layers[where[1]].kernel_size
            return f"{scope}/Conv2d_{where[1][len('conv_'):]}_{kh}x{kw}"
        if kind == "up":
            return f"{scope}/{self._block(s, where[1])}/Conv2d_1x1"
        _, block, b, step = where
        steps, position = s.branch_step(block, b, step)
        current = steps[position]
        kh, kw = current.layer.kernel_size
        if s.family == "inception_v4" and block == "mixed_3a":
            # The one slim scope that breaks the rule below (a VALID conv named 0a).
            conv = f"Conv2d_0a_{kh}x{kw}"
        elif s.family != "inception_v4" and len(steps) == 1 and (kh, kw) == (1, 1):
            conv = "Conv2d_1x1"  # Inception-ResNet single 1x1 branches
        else:
            # Conv2d_{0|1}{letter}_{kh}x{kw}: 1 for VALID steps, letters count the
            # branch's earlier steps (pools included) of the same kind.
            earlier = sum(1 for st in steps[:position] if st.valid == current.valid)
            conv = f"Conv2d_{int(current.valid)}{chr(ord('a') + earlier)}_{kh}x{kw}"
        return f"{scope}/{self._block(s, block)}/Branch_{b}/{conv}"

    def keys(self, kind, prefix):
        if kind == "conv_bn":
            return [
                ("kernel", f"{prefix}/weights", True),
                ("gamma", f"{prefix}/BatchNorm/gamma", False),  # slim Inception: scale=False
                ("beta", f"{prefix}/BatchNorm/beta", True),
                ("mean", f"{prefix}/BatchNorm/moving_mean", True),
                ("var", f"{prefix}/BatchNorm/moving_variance", True),
            ]
        return [("kernel", f"{prefix}/weights", True), ("bias", f"{prefix}/biases", True)]

    def source_shape(self, kind, slot, keras_shape):
        if kind == "dense" and self.background_class:
            return (*keras_shape[:-1], keras_shape[-1] + 1)
        return keras_shape

    def to_keras(self, kind, slot, value):
        if kind == "dense" and self.background_class:
            return value[..., 1:]  # class 0 is slim's "background"
        return value

    def ignored(self, key, family, has_top):
        scope = SLIM_SCOPES[family]
        if key == "global_step" or key.startswith(f"{scope}/AuxLogits/"):
            return True
        return not has_top and key.startswith(f"{scope}/Logits/")


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _structure(model: keras.Model, dialect: _Dialect) -> _Structure:
    s = _Structure(model)
    if s.family not in TIMM_CLASSIFIERS:
        raise ValueError(_NO_REFERENCE.format(source=dialect.label))
    return s


def _plan(
    model: keras.Model, source: Mapping[str, Any], dialect: _Dialect
) -> list[tuple[Any, np.ndarray]]:
    """Checks everything and returns (variable, value) pairs; assigns nothing."""
    s = _structure(model, dialect)
    keys = list(source)
    found = dialect.source_family(keys)
    if found is not None and found != s.family:
        raise ValueError(
            f"Wrong model family: the {dialect.label} weights are for {found} (keys such as "
            f"{keys[0]!r}), but model {model.name!r} is {s.family}. Build the matching "
            "network to load them."
        )
    has_top = any(isinstance(layer, keras.layers.Dense) for layer in model.layers)

    plan: list[tuple[Any, np.ndarray]] = []
    used: set[str] = set()
    missing: list[str] = []
    bad_shapes: list[str] = []
    class_message = ""
    covered: set[int] = set()
    for unit in s.units():
        prefix = dialect.name(s, unit.where)
        target = s.targets(unit)
        variables = list(target.values())
        values: dict[str, np.ndarray] = {}
        for slot, key, required in dialect.keys(unit.kind, prefix):
            if key not in source:
                if required and (slot in target or slot == "gamma"):
                    missing.append(f"{key} (for {unit.layers[0]})")
                continue
            used.add(key)
            value = np.asarray(source[key])
            ref = target["kernel" if slot == "gamma" else slot]
            keras_shape = tuple(ref.shape)
            expected = (
                keras_shape[-1:] if slot == "gamma"
                else dialect.source_shape(unit.kind, slot, keras_shape)
            )
            if tuple(value.shape) != tuple(expected):
                if unit.kind == "dense" and value.ndim == len(expected):
                    class_message = (
                        f" The {dialect.label} classifier {key!r} has shape {value.shape} but "
                        f"model {model.name!r} expects {tuple(expected)}: build it with the "
                        "weights' number of classes, or with include_top=False to drop the "
                        "classifier."
                    )
                bad_shapes.append(
                    f"{key} {tuple(value.shape)} vs expected {tuple(expected)} "
                    f"(Keras {ref.path})"
                )
                continue
            values[slot] = dialect.to_keras(unit.kind, slot, value).astype(np.float64)
        covered.update(id(v) for v in variables)
        if not all(slot in values for slot in target):
            continue  # reported as missing or wrong shape
        gamma = values.pop("gamma", None)
        if gamma is not None and not np.all(gamma == 1.0):
            values["kernel"] = values["kernel"] * gamma  # scales the output channels
            if "mean" in values:
                values["mean"] = values["mean"] * gamma
            else:
                missing.append(f"BatchNormalization {unit.layers[0]}_bn to fold gamma into")
        plan += [(target[slot], values[slot].astype(target[slot].dtype)) for slot in target]

    uncovered = [v.path for v in model.weights if id(v) not in covered]
    unexpected = [
        k for k in keys if k not in used and not dialect.ignored(k, s.family, has_top)
    ]
    problems = []
    if missing:
        problems.append(f"missing {dialect.label} keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {dialect.label} keys (not used): {_listing(unexpected)}")
    if bad_shapes:
        problems.append(f"wrong shapes: {_listing(bad_shapes)}")
    if uncovered:
        problems.append(f"Keras weights without a source: {_listing(uncovered)}")
    if problems:
        raise ValueError(
            f"Cannot load {dialect.label} weights into {model.name!r} ({s.family}); nothing "
            f"was changed. " + "; ".join(problems) + "." + class_message
        )
    return plan


def _assign(plan: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in plan:
        variable.assign(value)


def timm_key_map(model: keras.Model) -> dict[str, str]:
    """timm key -> Keras weight path for `model` (num_batches_tracked left out)."""
    return _key_map(model, _Timm())


def slim_key_map(model: keras.Model, background_class: bool = True) -> dict[str, str]:
    """TF-slim variable name -> Keras weight path for `model` (optional gammas left out)."""
    return _key_map(model, _Slim(background_class))


def _key_map(model: keras.Model, dialect: _Dialect) -> dict[str, str]:
    s = _structure(model, dialect)
    mapping = {}
    for unit in s.units():
        prefix = dialect.name(s, unit.where)
        by_slot = {slot: key for slot, key, _ in dialect.keys(unit.kind, prefix)}
        target = s.targets(unit)
        for slot, variable in target.items():
            mapping[by_slot[slot]] = variable.path
        if isinstance(dialect, _Timm) and unit.kind == "conv_bn":
            mapping[by_slot["gamma"]] = f"{target['kernel'].path} (folded gamma)"
    return mapping


def load_timm_weights(model: keras.Model, state_dict: Mapping[str, Any]) -> None:
    """Loads a timm `inception_v4` / `inception_resnet_v2` state dict into `model`.

    Args:
        model: an `InceptionV4` or `InceptionResNetV2` built by this package, with
            or without the head (without it the classifier keys are ignored).
        state_dict: timm key -> array (NumPy, or anything `np.asarray` accepts).

    Raises:
        ValueError: wrong family, missing / unexpected keys, wrong shapes, or a
            classifier with another number of classes; the model is then unchanged.
    """
    _assign(_plan(model, state_dict, _Timm()))


def load_slim_checkpoint(
    model: keras.Model, path: str | os.PathLike, background_class: bool = True
) -> None:
    """Loads a TF-slim `inception_v4` / `inception_resnet_v2` checkpoint into `model`.

    Args:
        model: an `InceptionV4` or `InceptionResNetV2` built by this package.
        path: checkpoint prefix (`.../inception_v4.ckpt`) or its folder.
        background_class: the checkpoint's classifier has an extra class 0
            ("background", as in the released 1001-class checkpoints) to drop.

    `AuxLogits/*` and `global_step` are ignored; everything else must match as in
    `load_timm_weights`.
    """
    import tensorflow as tf

    path = os.fspath(path)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise FileNotFoundError(f"TF-slim checkpoint not found: path={path!r}.")
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    state = {name: reader.get_tensor(name) for name in names}
    _assign(_plan(model, state, _Slim(background_class)))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A timm state dict from `.safetensors` or `.npz`, as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"State dict file not found: {path!r}.")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    raise ValueError(
        f"Unsupported state dict file {path!r}: use .safetensors or .npz (convert a torch "
        "`.pth`/`.bin` with `safetensors.torch.save_file(state_dict, 'model.safetensors')`)."
    )


def save_weights_verified(
    model: keras.Model, path: str | os.PathLike, fresh_model: Callable[[], keras.Model]
) -> str:
    """Saves `model`'s weights to `path` (`.weights.h5`) atomically, after verifying them.

    The file is written under a temporary name beside `path`, loaded into
    `fresh_model()` (a new instance of the same architecture), compared weight by
    weight, and only then moved into place.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The output must be a `.weights.h5` file; received {path!r}.")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".partial-", dir=directory)
    try:
        temp = os.path.join(staging, os.path.basename(path))
        model.save_weights(temp)
        check = fresh_model()
        check.load_weights(temp)
        for saved, original in zip(check.weights, model.weights, strict=True):
            if not np.array_equal(np.asarray(saved), np.asarray(original)):
                raise RuntimeError(
                    f"Verification of {path!r} failed: {original.path} differs after reload."
                )
        os.replace(temp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
