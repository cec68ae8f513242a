"""Every code block of the README runs as written.

Each Python block runs alone in a fresh interpreter (as a reader pastes it), in a scratch
folder holding the files they name. Where a block needs what this machine cannot
have (ImageNet weights: no network) or would take an hour (299 px, 10 epochs), the
substitutions below say what changes; each must match, so a README edit cannot silently
escape the test. Shell blocks run through `python -m keras_inception.cli` the same way;
the two that cannot run here are listed with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.runners import run_cli_process

# Each block runs in a fresh interpreter, as a reader pastes it.
RUNS_A_BLOCK = [pytest.mark.slow, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# (block index, text in the README, what runs instead): only unreachable weights and sizes.
PYTHON_SUBSTITUTIONS = [
    (0, "ki.InceptionResNetV2()", "ki.InceptionResNetV2(weights=None)"),
    (3, 'weights="imagenet")', 'weights=None)'),
    (4, 'InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet")',
     'InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet", load_weights=False)'),
    (4, 'InceptionBackbone.from_preset("facenet_ms_celeb_1m", ',
     'InceptionBackbone.from_preset("facenet_ms_celeb_1m", load_weights=False, '),
    (5, 'ki.InceptionResNetV2(weights="imagenet")',
     'ki.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))'),
    (5, 'calibration_dataset("data/train", 299, count=100)',
     'calibration_dataset("data/train", 75, count=10)'),
    (5, "load_image(sample_image_path(), 299)", "load_image(sample_image_path(), 75)"),
    (6, 'data="path/to/photos", weights="auto", epochs=10)',
     'data="path/to/photos", weights="auto", epochs=2, stage1_epochs=1, image_size=75,'
     ' max_per_class=4)'),
    (7, 'ki.InceptionResNetV2(weights="imagenet")',
     'ki.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))'),
    (7, "load_image(sample_image_path(), 299)", "load_image(sample_image_path(), 75)"),
    (7, "integrated_gradients(model, images, steps=32)",
     "integrated_gradients(model, images, steps=2)"),
    (8, 'ki.InceptionResNetV2(weights="imagenet")',
     'ki.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))'),
]
# Shell blocks that cannot run on one machine, with the reason.
SHELL_NOT_RUN = {
    0: "`make demo` / `make test`: CI runs `make test` itself, tests/test_demo.py the demo",
    5: "two machines (TF_CONFIG with host1 and host2): tests/test_distribute.py runs the same "
       "on 127.0.0.1",
}
SHELL_SUBSTITUTIONS = [
    (2, "--model inception_resnet_v2 --weights imagenet --format tflite",
     "--model inception_resnet_v2 --weights none --image-size 75 --format tflite"),
    (2, "--calibration-data data/train", "--calibration-data data/train --calibration-size 10"),
    (3, "--image-size 299 \\\n    --epochs 10 --weights imagenet",
     "--image-size 75 \\\n    --epochs 2 --stage1-epochs 1 --max-per-class 4 --weights base.weights.h5"),
    (4, "--batch-size 32 --data path/to/photos --out runs/photos",
     "--batch-size 8 --data path/to/photos --out runs/mirrored --image-size 75 --epochs 1 "
     "--max-per-class 4 --weights none"),
]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def _substitute(code: list[str], substitutions) -> list[str]:
    code = list(code)
    for index, old, new in substitutions:
        assert old in code[index], f"README block {index} no longer contains {old!r}"
        code[index] = code[index].replace(old, new)
    return code


@pytest.fixture(scope="session")  # its tests spread over the workers: once per worker
def scratch(tmp_path_factory, flowers_dir, facenet_h5, face_crops_by_person):
    """A folder with the files the README's examples name, and an environment whose
    weights cache holds FaceNet's file (the `auto` and `ms_celeb_1m` paths)."""
    from PIL import Image
    from safetensors.numpy import save_file
    from test_convert import slim_variables

    import keras_inception as ki
    from keras_inception import _compat

    folder = tmp_path_factory.mktemp("readme")
    cache = folder / "weights_cache"
    cache.mkdir()
    shutil.copy(facenet_h5, cache)
    fixtures = Path(os.environ.get("KERAS_INCEPTION_SHARED", REPO.parent / "shared")) / \
        "fixtures" / "timm_parity"
    sys.path.insert(0, str(fixtures))
    import json

    import make_state
    import tensorflow as tf

    checkpoints = {"inception_v4": "inception_v4.ckpt",
                   "inception_resnet_v2": "inception_resnet_v2_2016_08_30.ckpt"}
    for name, checkpoint in checkpoints.items():
        spec = json.loads((fixtures / f"{name}.spec.json").read_text())
        state = make_state.make_state(spec["params"], spec["seed"])
        if name == "inception_v4":
            save_file(state, str(folder / "model.safetensors"))
        arrays = slim_variables(name, state, np.random.default_rng(0))
        variables = {key: tf.Variable(value) for key, value in arrays.items()}
        tf.compat.v1.train.Saver(var_list=variables).save(None, str(folder / checkpoint))
    _compat.save_legacy_h5_weights(
        ki.InceptionResNetV2(weights=None),
        folder / "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5")
    ki.InceptionResNetV2(include_top=False, weights=None, input_shape=(75, 75, 3),
                         pooling="avg").save_weights(folder / "base.weights.h5")
    shutil.copytree(flowers_dir / "train", folder / "data" / "train")
    photos = folder / "path" / "to" / "photos"
    for split in ("train", "val"):
        for cls in sorted(os.listdir(flowers_dir / split)):
            target = photos / split / cls
            target.mkdir(parents=True)
            for file in sorted(os.listdir(flowers_dir / split / cls))[:6]:
                shutil.copy(flowers_dir / split / cls / file, target)
    for i, name in enumerate(("photo.jpg", "photo1.jpg", "photo2.jpg")):
        cls = sorted(os.listdir(flowers_dir / "val"))[i]
        shutil.copy(flowers_dir / "val" / cls / sorted(os.listdir(flowers_dir / "val" / cls))[0],
                    folder / name)
    person = sorted(face_crops_by_person)[0]  # run-time only, in the scratch folder
    for i, crop in enumerate(face_crops_by_person[person][:2]):
        Image.fromarray(crop.astype(np.uint8)).save(folder / f"face{i + 1}.jpg")
    env = {**os.environ, "KERAS_INCEPTION_CACHE": str(cache), "KERAS_BACKEND": "tensorflow",
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder / "no_index")}
    (folder / "no_index").mkdir()
    return folder, env


def _copy(scratch, folder: Path) -> tuple[Path, dict]:
    """A private copy (hard links) of the scratch folder for one test, in the test's
    `tmp_path` (removed when the test passes: each holds its exports or its training run)."""
    template, env = scratch
    shutil.copytree(template, folder, copy_function=os.link)
    return folder, {**env, "KERAS_INCEPTION_CACHE": str(folder / "weights_cache")}


# What each Python block leaves behind, checked after it runs: (printed text, files).
PYTHON_CHECKS = {
    3: (["FeatureInfo(index=1"], []),
    4: (["(1, 1000)", "(1, 128, 128, 4)"], []),
    5: ([], ["irv2_savedmodel", "irv2.tflite", "irv2_int8.tflite", "irv2.onnx"]),
    6: ([], ["runs/photos/report.json"]),
    7: ([], ["daisy_gradcam.png"]),
}
# The shell blocks that run, in groups that share a folder, in order (training, block 3,
# before the export block, 2, which exports the model it trains), with their command counts.
SHELL_GROUPS = {"convert": (1,), "train_export": (3, 2), "mirrored": (4,)}
SHELL_COMMANDS = {1: 3, 2: 3, 3: 3, 4: 1}


def test_readme_blocks_are_all_covered():
    """Every README block runs below (or is listed with its reason), and every substitution
    still finds its text: a README edit cannot silently escape the block tests."""
    code = _substitute(blocks("python"), PYTHON_SUBSTITUTIONS)
    assert len(code) == 9, "a README Python block was added or removed: update this test"
    shell = _substitute(blocks("bash"), SHELL_SUBSTITUTIONS)
    assert len(shell) == 6, "a README shell block was added or removed: update this test"
    grouped = [index for group in SHELL_GROUPS.values() for index in group]
    assert sorted(grouped) == sorted(SHELL_COMMANDS) and not set(grouped) & set(SHELL_NOT_RUN)
    assert set(SHELL_NOT_RUN) | set(grouped) == set(range(len(shell)))
    assert sum(SHELL_COMMANDS.values()) == 10
    assert all(len(_commands(shell[index])) == SHELL_COMMANDS[index] for index in grouped)


def _commands(block: str) -> list[str]:
    commands = [line.split("#")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [command for command in commands if command]


@pytest.mark.parametrize("index", [pytest.param(i, marks=RUNS_A_BLOCK) for i in range(9)])
def test_readme_python_block_runs(scratch, index, tmp_path):
    """Each block alone in a fresh interpreter, as a reader pastes it (one process for all of
    them would hold every model at once, gigabytes): a block that uses a name it does not
    import or define fails here. What it produced is checked: features, exports, training."""
    folder, env = _copy(scratch, tmp_path / f"python{index}")
    block = _substitute(blocks("python"), PYTHON_SUBSTITUTIONS)[index]
    proc = subprocess.run([sys.executable, "-c", block + "\nprint('README-OK')\n"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and "README-OK" in proc.stdout, (index, proc.stderr[-4000:])
    printed, files = PYTHON_CHECKS.get(index, ([], []))
    for text in printed:
        assert text in proc.stdout, (index, text)
    for name in files:
        assert (folder / name).exists(), name


@pytest.mark.parametrize("group", [pytest.param(g, marks=RUNS_A_BLOCK) for g in SHELL_GROUPS])
def test_readme_shell_blocks_run(scratch, group, tmp_path):
    """The shell blocks' commands, each in a fresh interpreter as a shell runs them (the
    multi-device training among them), in the scratch folder with its environment."""
    folder, env = _copy(scratch, tmp_path / f"shell_{group}")
    shell = _substitute(blocks("bash"), SHELL_SUBSTITUTIONS)
    for index in SHELL_GROUPS[group]:
        commands = _commands(shell[index])
        assert len(commands) == SHELL_COMMANDS[index]
        for command in commands:
            assert command.startswith("keras-inception "), command
            proc = run_cli_process(*command.split()[1:], cwd=folder, env=env, timeout=1800)
            assert proc.returncode == 0, (command, proc.stderr[-3000:])
    if group == "convert":
        assert (folder / "v4.weights.h5").is_file()
    if group == "train_export":
        assert (folder / "serving" / "1").is_dir()
