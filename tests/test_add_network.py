"""Adding a network takes its module and one line in `registry.BUILTIN_MODELS`.

A copy of the package gets a toy fifth network, written as one module file that
uses the package's blocks and declares its `ModelSpec`, and one registration line:
nothing else changes. A fresh interpreter on that copy then finds the network
wherever the package names networks: `model_names()` and the classifiers, the
command line's choices (still without Keras), `keras_inception.ToyNet` and
`keras_inception.models.ToyNet`, `get_builder`, `feature_info` /
`feature_extractor`, the transfer-learning base, the timm and TF-slim key maps
and the `summary` subcommand.

The toy network's timm naming table (declared and registered in its module) is all
the timm converter needs: a timm-layout state dict round-trips exactly, and a wrong
table fails the round trip.
"""

from __future__ import annotations

import dataclasses
import difflib
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_inception
from keras_inception import registry
from keras_inception.convert import load_timm_weights, naming, timm_key_map

PACKAGE = Path(keras_inception.__file__).resolve().parent
REGISTRATION = '    "toy_net": BuiltinModel("keras_inception.models.toy_net", "ToyNet"),\n'

# The toy network's module, as a new network's author would write it (tests/support/toy_net.py).
TOY_MODULE = (Path(__file__).parent / "support" / "toy_net.py").read_text()

CHECKS = '''\
import contextlib, io, json, sys
from pathlib import Path

from keras_inception import registry
from keras_inception.cli import build_parser

summary = build_parser()._subparsers._group_actions[0].choices["summary"]
choices = next(a for a in summary._actions if a.dest == "model").choices
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"keras", "tensorflow", "jax", "torch"})

import numpy as np
import keras_inception as ki
import keras_inception.models as models
from keras_inception.cli import main
from keras_inception.convert import slim_key_map, timm_key_map

model = ki.ToyNet(weights=None, input_shape=(75, 75, 3), classes=3)
extractor = ki.feature_extractor(model)
maps = extractor(np.zeros((1, 75, 75, 3), "float32"), training=False)
backbone = models.pooled_backbone("toy_net", None, (75, 75, 3))
timm_keys, slim_keys = timm_key_map(model), slim_key_map(model)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["summary", "--model", "toy_net", "--image-size", "75"])
print(json.dumps({
    "package": str(Path(ki.__file__).resolve().parent),
    "model_names": registry.model_names(),
    "classifiers": registry.classifier_names(),
    "choices": list(choices),
    "heavy_after_cli": heavy,
    "exported": ki.ToyNet is models.ToyNet is ki.get_builder("toy_net"),
    "in_all": "ToyNet" in ki.__all__ and "ToyNet" in models.__all__,
    "spec_of": registry.spec_of(model).name,
    "feature_info": [(i.layer, i.num_chs, i.reduction) for i in ki.feature_info(model)],
    "map_shapes": [list(m.shape) for m in maps],
    "backbone": list(backbone.output.shape),
    "timm_keys": sorted(timm_keys),
    "timm_targets": sorted({v for v in timm_keys.values() if "gamma" not in v}),
    "weights": sorted(v.path for v in model.weights),
    "slim_keys": sorted(slim_keys),
    "summary": [code, out.getvalue()],
}))
'''


def _copy_with_toy_network(root: Path) -> Path:
    copy = root / "keras_inception"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "models" / "toy_net.py").write_text(TOY_MODULE)
    source = (copy / "registry.py").read_text()
    start = source.index("BUILTIN_MODELS: dict[str, BuiltinModel] = {\n")
    end = source.index("\n}\n", start) + 1  # the line closing the dict
    (copy / "registry.py").write_text(source[:end] + REGISTRATION + source[end:])
    return copy


def _changes(original: Path, copy: Path) -> tuple[list[str], list[str]]:
    """(files only in the copy, files that differ), relative to the package."""
    added, changed = [], []

    def walk(cmp: filecmp.dircmp, prefix: str) -> None:
        added.extend(prefix + n for n in cmp.right_only if n != "__pycache__")
        changed.extend(prefix + n for n in cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(original, copy, ignore=["__pycache__"]), "")
    return added, changed


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_new_network_is_its_module_and_one_line(tmp_path):
    copy = _copy_with_toy_network(tmp_path)
    added, changed = _changes(PACKAGE, copy)
    assert (added, changed) == (["models/toy_net.py"], ["registry.py"])
    diff = [line for line in difflib.unified_diff(
        (PACKAGE / "registry.py").read_text().splitlines(keepends=True),
        (copy / "registry.py").read_text().splitlines(keepends=True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert diff == ["+" + REGISTRATION]

    env = {**os.environ, "PYTHONPATH": str(tmp_path), "KERAS_BACKEND": "numpy"}
    proc = subprocess.run([sys.executable, "-c", CHECKS], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.splitlines()[-1])

    assert found["package"] == str(copy.resolve())
    assert found["model_names"] == [*registry.model_names(), "toy_net"]
    assert found["classifiers"] == [*registry.classifier_names(), "toy_net"]
    assert found["choices"] == found["model_names"]
    assert found["heavy_after_cli"] == []
    assert found["exported"] and found["in_all"]
    assert found["spec_of"] == "toy_net"
    assert found["feature_info"] == [["conv_2b_ac", 64, 2], ["block_a_2_ac", 96, 4],
                                     ["block_b_2", 128, 8], ["mixed_5a", 160, 16],
                                     ["mixed_6a", 192, 32]]
    assert found["map_shapes"] == [[1, 35, 35, 64], [1, 17, 17, 96], [1, 8, 8, 128],
                                   [1, 3, 3, 160], [1, 1, 1, 192]]
    assert found["backbone"] == [None, 192]
    # The converters name the new network's weights through the naming tables its module
    # registers: timm's `repeat`, `repeat_1` stages, the final linear block as a module
    # of its own.
    timm_keys = found["timm_keys"]
    assert found["timm_targets"] == found["weights"]
    assert {"conv2d_1a.conv.weight", "repeat.0.branch0.conv.weight",
            "repeat.1.branch1.1.conv.weight", "block_b.branch0.conv.weight",
            "block_b.conv2d.weight", "block_b.conv2d.bias", "mixed_3a.conv.conv.weight",
            "head.weight", "head.bias"} <= set(timm_keys)
    assert not any(k.startswith(("repeat_1.1.", "block_a.")) for k in timm_keys)
    assert {"ToyNet/Conv2d_1a_3x3/weights", "ToyNet/Repeat/block_a_1/Branch_0/Conv2d_1x1/weights",
            "ToyNet/Repeat_1/block_b_1/Conv2d_1x1/biases", "ToyNet/Block_b/Conv2d_1x1/weights",
            "ToyNet/Logits/Logits/weights"} <= set(found["slim_keys"])
    code, text = found["summary"]
    assert code == 0 and "toy_net" in text


# --------------------------------------------------------------------------- timm naming

# The toy network's weights as a timm port of it names them (its module tree, as in
# timm's Inception-ResNet-v2), spelt out here independently of its naming table:
# Keras layer -> timm module.
TOY_TIMM_MODULES = {
    "conv_1a": "conv2d_1a", "conv_2a": "conv2d_2a", "conv_2b": "conv2d_2b",
    "mixed_3a_branch0_0": "mixed_3a.conv",
    "block_a_1_branch0_0": "repeat.0.branch0", "block_a_1_branch1_0": "repeat.0.branch1.0",
    "block_a_1_branch1_1": "repeat.0.branch1.1", "block_a_1_conv": "repeat.0.conv2d",
    "block_a_2_branch0_0": "repeat.1.branch0", "block_a_2_branch1_0": "repeat.1.branch1.0",
    "block_a_2_branch1_1": "repeat.1.branch1.1", "block_a_2_conv": "repeat.1.conv2d",
    "mixed_4a_branch0_0": "mixed_4a.conv",
    "block_b_1_branch0_0": "repeat_1.0.branch0", "block_b_1_branch1_0": "repeat_1.0.branch1.0",
    "block_b_1_branch1_1": "repeat_1.0.branch1.1", "block_b_1_conv": "repeat_1.0.conv2d",
    "block_b_2_branch0_0": "block_b.branch0", "block_b_2_branch1_0": "block_b.branch1.0",
    "block_b_2_branch1_1": "block_b.branch1.1", "block_b_2_conv": "block_b.conv2d",
    "mixed_5a_branch0_0": "mixed_5a.conv", "mixed_6a_branch0_0": "mixed_6a.conv",
    "predictions": "head",
}


def _timm_state(model, rng) -> dict[str, np.ndarray]:
    """A random timm state dict of `model` in timm's layout (OIHW convs, (out, in) linear
    weights, BatchNorm weight/bias/running_mean/running_var), its shapes read from the
    Keras layers; BatchNorm weights (gammas) are 1, so every value lands unchanged."""
    state: dict[str, np.ndarray] = {}

    def put(key: str, shape: tuple) -> None:
        state[key] = rng.normal(0, 1, shape).astype("float32")

    for layer_name, module in TOY_TIMM_MODULES.items():
        layer = model.get_layer(layer_name)
        kernel = tuple(layer.kernel.shape)
        if isinstance(layer, keras.layers.Dense):
            put(f"{module}.weight", kernel[::-1])
            put(f"{module}.bias", kernel[-1:])
        elif layer.use_bias:  # a residual block's up-projection
            put(f"{module}.weight", (kernel[3], kernel[2], *kernel[:2]))
            put(f"{module}.bias", kernel[-1:])
        else:
            put(f"{module}.conv.weight", (kernel[3], kernel[2], *kernel[:2]))
            state[f"{module}.bn.weight"] = np.ones(kernel[-1:], "float32")
            put(f"{module}.bn.bias", kernel[-1:])
            put(f"{module}.bn.running_mean", kernel[-1:])
            state[f"{module}.bn.running_var"] = rng.uniform(0.5, 2, kernel[-1:]).astype("float32")
            state[f"{module}.bn.num_batches_tracked"] = np.array(7, "int64")
    return state


def _mismatches(model, state: dict[str, np.ndarray]) -> list[str]:
    """The Keras layers whose weights differ from their source values in `state`."""
    checked, wrong = 0, []
    for layer_name, module in TOY_TIMM_MODULES.items():
        layer = model.get_layer(layer_name)
        if isinstance(layer, keras.layers.Dense):
            pairs = [(layer.kernel, state[f"{module}.weight"].T), (layer.bias, state[f"{module}.bias"])]
        elif layer.use_bias:
            pairs = [(layer.kernel, state[f"{module}.weight"].transpose(2, 3, 1, 0)),
                     (layer.bias, state[f"{module}.bias"])]
        else:
            bn = model.get_layer(f"{layer_name}_bn")
            pairs = [(layer.kernel, state[f"{module}.conv.weight"].transpose(2, 3, 1, 0)),
                     (bn.beta, state[f"{module}.bn.bias"]),
                     (bn.moving_mean, state[f"{module}.bn.running_mean"]),
                     (bn.moving_variance, state[f"{module}.bn.running_var"])]
        checked += len(pairs)
        if not all(np.array_equal(keras.ops.convert_to_numpy(v), value) for v, value in pairs):
            wrong.append(layer_name)
    assert checked == len(model.weights)  # every Keras weight compared
    return wrong


def test_toy_timm_naming_table_round_trips(toy_net):
    """One naming table, declared and registered by the toy network's module, is all the
    timm converter needs: a timm-layout state dict loads exactly."""
    assert naming.naming_table(naming.TIMM, "toy_net") is toy_net.TIMM_NAMES
    model = toy_net.ToyNet(input_shape=(75, 75, 3), classes=3)
    state = _timm_state(model, np.random.default_rng(0))
    assert _mismatches(model, state) == list(TOY_TIMM_MODULES)  # nothing matches before
    load_timm_weights(model, state)
    assert _mismatches(model, state) == []
    assert timm_key_map(model).keys() == {k for k in state if not k.endswith("_tracked")}


def _swapped(template: dict[str, str]) -> dict[str, str]:
    """Branch 0 and the first conv of branch 1 exchanged: the same shapes (1x1, 16)."""
    return {**template, "branch0_0": template["branch1_0"], "branch1_0": template["branch0_0"]}


def _wrong_tables(table):
    blocks = {block.keras: block for block in table.blocks}
    swapped = dataclasses.replace(blocks["block_a_1"], template=_swapped(blocks["block_a_1"].template))
    misplaced = dataclasses.replace(blocks["block_b_2"], source="repeat_1.1")
    layers = {k: v for k, v in table.layers.items() if k != "conv_2b"}
    return {
        "swapped": dataclasses.replace(
            table, blocks=tuple(swapped if b.keras == "block_a_1" else b for b in table.blocks)),
        "misplaced": dataclasses.replace(
            table, blocks=tuple(misplaced if b.keras == "block_b_2" else b for b in table.blocks)),
        "incomplete": dataclasses.replace(table, layers=layers),
    }


@pytest.mark.parametrize("wrong", ["swapped", "misplaced", "incomplete"])
def test_a_wrong_toy_naming_table_fails_the_round_trip(toy_net, wrong):
    """The round trip checks the table: two same-shaped branches exchanged load the wrong
    values, a block under another module name and a layer left out are refused."""
    model = toy_net.ToyNet(input_shape=(75, 75, 3), classes=3)
    state = _timm_state(model, np.random.default_rng(1))
    naming.register_naming(naming.TIMM, _wrong_tables(toy_net.TIMM_NAMES)[wrong], replace=True)
    try:
        if wrong == "swapped":
            load_timm_weights(model, state)
            assert _mismatches(model, state) == ["block_a_1_branch0_0", "block_a_1_branch1_0"]
        else:
            before = [keras.ops.convert_to_numpy(v) for v in model.weights]
            expected = {"misplaced": r"missing timm keys: .*repeat_1\.1\.branch0\.conv\.weight",
                        "incomplete": "naming table of toy_net does not name: conv_2b"}[wrong]
            with pytest.raises(ValueError, match=expected):
                load_timm_weights(model, state)
            assert all(np.array_equal(a, keras.ops.convert_to_numpy(v))
                       for a, v in zip(before, model.weights, strict=True))
    finally:
        naming.register_naming(naming.TIMM, toy_net.TIMM_NAMES, replace=True)


def test_a_naming_table_gives_each_source_name_to_one_layer(toy_net):
    """Two layers under one source name would load one tensor twice: the table is refused
    when it is declared, naming the name."""
    blocks = tuple(
        dataclasses.replace(b, template={**b.template, "branch1_0": "branch0"})
        if b.keras == "block_a_1" else b for b in toy_net.TIMM_NAMES.blocks)
    with pytest.raises(ValueError, match=r"'toy_net' lists source names more than once: "
                                         r"repeat\.0\.branch0\.$"):
        dataclasses.replace(toy_net.TIMM_NAMES, blocks=blocks)
