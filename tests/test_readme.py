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
pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# (block index, text in the README, what runs instead): only unreachable weights and sizes.
PYTHON_SUBSTITUTIONS = [
    (0, "ki.InceptionResNetV2()", "ki.InceptionResNetV2(weights=None)"),
    (3, 'weights="imagenet")', 'weights=None)'),
    (4, 'ki.InceptionResNetV2(weights="imagenet")',
     'ki.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))'),
    (4, 'calibration_dataset("data/train", 299, count=100)',
     'calibration_dataset("data/train", 75, count=10)'),
    (4, "load_image(sample_image_path(), 299)", "load_image(sample_image_path(), 75)"),
    (5, 'data="path/to/photos", weights="auto", epochs=10)',
     'data="path/to/photos", weights="auto", epochs=2, stage1_epochs=1, image_size=75,'
     ' max_per_class=4)'),
    (6, 'ki.InceptionResNetV2(weights="imagenet")',
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


@pytest.fixture(scope="module")
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


def _copy(scratch, name: str) -> tuple[Path, dict]:
    """A private copy (hard links) of the scratch folder for one test."""
    template, env = scratch
    folder = template.parent / name
    shutil.copytree(template, folder, copy_function=os.link)
    return folder, {**env, "KERAS_INCEPTION_CACHE": str(folder / "weights_cache")}


def test_readme_python_blocks_run(scratch):
    """Each block alone in a fresh interpreter, as a reader pastes it (one process for all of
    them would hold every model at once, gigabytes): a block that uses a name it does not
    import or define fails here."""
    folder, env = _copy(scratch, "python")
    code = _substitute(blocks("python"), PYTHON_SUBSTITUTIONS)
    assert len(code) == 7, "a README Python block was added or removed: update this test"
    outputs = []
    for index, block in enumerate(code):
        script = block + "\nprint('README-OK')\n"
        proc = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0 and "README-OK" in proc.stdout, (index, proc.stderr[-4000:])
        outputs.append(proc.stdout)
    printed = "".join(outputs)
    # What the blocks produced, checked: features, face verification, exports, training.
    assert "FeatureInfo(index=1" in printed
    for name in ("irv2_savedmodel", "irv2.tflite", "irv2_int8.tflite", "irv2.onnx"):
        assert (folder / name).exists(), name
    assert (folder / "runs" / "photos" / "report.json").is_file()


def test_readme_shell_blocks_run(scratch):
    """The shell blocks' commands, each in a fresh interpreter as a shell runs them (the
    multi-device training among them), in the scratch folder with its environment."""
    folder, env = _copy(scratch, "shell")
    shell = _substitute(blocks("bash"), SHELL_SUBSTITUTIONS)
    assert len(shell) == 6, "a README shell block was added or removed: update this test"
    ran = 0
    # Training (block 3) first: the export block exports the model it trains.
    for index in (1, 3, 4, 2):
        block = shell[index]
        assert index not in SHELL_NOT_RUN
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("#")[0].strip()
            if not command:
                continue
            assert command.startswith("keras-inception "), command
            argv = command.split()[1:]
            proc = run_cli_process(*argv, cwd=folder, env=env, timeout=1800)
            assert proc.returncode == 0, (command, proc.stderr[-3000:])
            ran += 1
    assert ran == 10 and set(SHELL_NOT_RUN) | {1, 2, 3, 4} == set(range(len(shell)))
    assert (folder / "v4.weights.h5").is_file() and (folder / "serving" / "1").is_dir()
