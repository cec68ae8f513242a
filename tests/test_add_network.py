"""Adding a network takes its module and one line in `registry.BUILTIN_MODELS`.

A copy of the package gets a toy fifth network, written as one module file that
uses the package's blocks and declares its `ModelSpec`, and one registration line:
nothing else changes. A fresh interpreter on that copy then finds the network
wherever the package names networks: `model_names()` and the classifiers, the
command line's choices (still without Keras), `keras_inception.ToyNet` and
`keras_inception.models.ToyNet`, `get_builder`, `feature_info` /
`feature_extractor`, the transfer-learning base, the timm and TF-slim key maps
and the `summary` subcommand.
"""

from __future__ import annotations

import difflib
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import keras_inception
from keras_inception import registry

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
    # The converters name the new network's weights from its layer names and spec:
    # timm's `repeat`, `repeat_1` stages, the final linear block as a module of its own.
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
