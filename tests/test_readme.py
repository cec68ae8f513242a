"""Every code block of the README and of the pages in docs/ runs as written.

Each Python block runs alone in this process with globals of its own (a name it neither
imports nor defines fails, as where a reader pastes it), in a scratch folder holding the
files they name; Keras's state, the random seeds and the logging levels are put back after
each. Where a block needs what this machine cannot
have (ImageNet weights: no network) or would take an hour (299 px, 10 epochs), the
page's substitutions say what changes; each must match, so an edit of a page cannot
silently escape the test. Shell blocks run through the command line's `main` (what
`keras-inception` calls) in the same kind of folder, in this process too: a fresh interpreter
per block or command would only add TensorFlow's start-up (tests/test_run_folder.py runs
`python -m keras_inception.cli train` in fresh interpreters); the blocks that cannot run here
are listed with the reason. The README stays a front
page: at most 300 lines, linking every page of docs/.
"""

from __future__ import annotations

import contextlib
import gc
import io
import linecache
import logging
import os
import random
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from support.runners import run_cli

# Each block builds and runs full-size networks (in this process: no interpreter starts).
RUNS_A_BLOCK = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

IRV2_IMAGENET = 'ki.InceptionResNetV2(weights="imagenet")'
IRV2_75 = 'ki.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))'
DAISY_299 = "load_image(sample_image_path(), 299)"
DAISY_75 = "load_image(sample_image_path(), 75)"


@dataclass
class Page:
    """What the tests do with the code blocks of one page; block indices count per language.

    `python_subs` / `shell_subs`: (block, text on the page, what runs instead), only
    unreachable weights and sizes. `python_checks`: block -> (printed texts, paths it leaves;
    a path ending in "/" is a folder). `shell_groups`: the shell blocks that run, in groups
    sharing a folder, in order, with `shell_commands` (block -> its number of commands) and
    `shell_leaves` (group -> paths). `shell_not_run` / `other_not_run`: the shell blocks and
    the blocks of other languages (output, synopses) that do not run, with the reason."""

    python: int = 0
    shell: int = 0
    python_subs: list[tuple[int, str, str]] = field(default_factory=list)
    python_checks: dict[int, tuple[list[str], list[str]]] = field(default_factory=dict)
    shell_subs: list[tuple[int, str, str]] = field(default_factory=list)
    shell_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shell_commands: dict[int, int] = field(default_factory=dict)
    shell_leaves: dict[str, list[str]] = field(default_factory=dict)
    shell_not_run: dict[int, str] = field(default_factory=dict)
    other_not_run: dict[int, str] = field(default_factory=dict)


PAGES = {
    "README.md": Page(
        python=4, shell=3,
        python_subs=[
            (0, "ki.InceptionResNetV2()", "ki.InceptionResNetV2(weights=None)"),
            (1, 'weights="imagenet")', 'weights=None)'),
            (3, IRV2_IMAGENET, IRV2_75),
            (3, DAISY_299, DAISY_75),
            (3, "integrated_gradients(model, images, steps=32)",
             "integrated_gradients(model, images, steps=2)"),
        ],
        python_checks={1: (["FeatureInfo(index=1"], []), 3: ([], ["daisy_gradcam.png"])},
        shell_subs=[
            (1, "--image-size 299 \\\n    --epochs 10 --weights imagenet",
             "--image-size 75 \\\n    --epochs 1 --stage1-epochs 1 --max-per-class 4 "
             "--weights base.weights.h5"),
            (2, "--model inception_resnet_v2 --weights imagenet --format tflite",
             "--model inception_resnet_v2 --weights none --image-size 75 --format tflite"),
            (2, "--calibration-data data/train",
             "--calibration-data data/train --calibration-size 10"),
        ],
        # training first: the export block exports the model it trains
        shell_groups={"train_export": (1, 2)},
        shell_commands={1: 3, 2: 3},
        shell_leaves={"train_export": ["runs/photos/report.json", "irv2_int8.tflite",
                                       "serving/1/"]},
        shell_not_run={0: "`make demo` / `make test`: CI runs `make test` itself, "
                          "tests/test_demo.py the demo"},
    ),
    "docs/weights.md": Page(
        python=1, shell=1,
        shell_groups={"convert": (0,)}, shell_commands={0: 3},
        shell_leaves={"convert": ["v4.weights.h5", "irv2.weights.h5",
                                  "irv2_keras.weights.h5"]},
    ),
    "docs/dense_prediction.md": Page(
        python=1,
        python_subs=[
            (0, 'InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet")',
             'InceptionImageClassifier.from_preset("inception_resnet_v2_imagenet", '
             'load_weights=False)'),
            (0, 'InceptionBackbone.from_preset("facenet_ms_celeb_1m", ',
             'InceptionBackbone.from_preset("facenet_ms_celeb_1m", load_weights=False, '),
        ],
        python_checks={0: (["(1, 1000)", "(1, 128, 128, 4)"], [])},
    ),
    "docs/deployment.md": Page(
        python=2,
        python_subs=[
            (0, IRV2_IMAGENET, IRV2_75),
            (1, IRV2_IMAGENET, IRV2_75),
            (1, 'calibration_dataset("data/train", 299, count=100)',
             'calibration_dataset("data/train", 75, count=10)'),
            (1, DAISY_299, DAISY_75),
        ],
        python_checks={
            0: ([], ["irv2_savedmodel/", "irv2_raw/", "irv2.onnx", "irv2.xml", "irv2.bin"]),
            1: (["[("], ["irv2.tflite", "irv2_int8.tflite"]),
        },
    ),
    "docs/training.md": Page(
        python=1, shell=2,
        python_subs=[
            (0, 'data="path/to/photos", weights="auto", epochs=10)',
             'data="path/to/photos", weights="auto", epochs=2, stage1_epochs=1, image_size=75,'
             ' max_per_class=4)'),
        ],
        python_checks={0: ([], ["runs/photos/report.json"])},
        shell_subs=[
            (0, "--batch-size 32 --data path/to/photos --out runs/photos",
             "--batch-size 8 --data path/to/photos --out runs/mirrored --image-size 75 "
             "--epochs 1 --stage1-epochs 1 --max-per-class 4 --weights base.weights.h5"),
        ],
        shell_groups={"mirrored": (0,)}, shell_commands={0: 1},
        shell_leaves={"mirrored": ["runs/mirrored/report.json"]},
        shell_not_run={1: "two machines (TF_CONFIG with host1 and host2): "
                          "tests/test_distribute.py runs the same on 127.0.0.1"},
        other_not_run={0: "the output of a full `make demo` run (network access, minutes); "
                          "tests/test_demo.py runs the demo"},
    ),
    "docs/explanations.md": Page(
        other_not_run={0: "a synopsis of `keras-inception explain` and its options; "
                          "tests/test_explain_inputs.py runs the command"},
    ),
    "docs/performance.md": Page(
        python=1, python_subs=[(0, IRV2_IMAGENET, IRV2_75)],
    ),
    "docs/architecture.md": Page(
        other_not_run={0: "the registry line a new network adds, not a program; "
                          "tests/test_add_network.py adds one"},
    ),
    "docs/faces.md": Page(),
    "docs/what_happens_when.md": Page(),
    "docs/changes.md": Page(),
    "docs/testing.md": Page(),
}
PYTHON_BLOCKS = [(page, i) for page, spec in PAGES.items() for i in range(spec.python)]
SHELL_GROUPS = [(page, group) for page, spec in PAGES.items() for group in spec.shell_groups]


def _id(page: str) -> str:
    """A page's name in test IDs: no "/" (tests/support/schedule.py splits node IDs there)."""
    return Path(page).stem


def blocks(page: str, language: str) -> list[str]:
    """The page's fenced blocks of `language` ("python", "bash"; "" for every other)."""
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", (REPO / page).read_text(),
                        flags=re.S | re.M)
    if language:
        return [code for lang, code in fenced if lang == language]
    return [code for lang, code in fenced if lang not in ("python", "bash")]


def _substitute(page: str, code: list[str], substitutions) -> list[str]:
    code = list(code)
    for index, old, new in substitutions:
        assert old in code[index], f"{page} block {index} no longer contains {old!r}"
        code[index] = code[index].replace(old, new)
    return code


def _commands(block: str) -> list[str]:
    commands = [line.split("#")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [command for command in commands if command]


def _check_leaves(folder: Path, paths: list[str]) -> None:
    for name in paths:
        found = (folder / name).is_dir() if name.endswith("/") else (folder / name).is_file()
        assert found, name


@pytest.fixture(scope="session")
def scratch(tmp_path_factory, flowers_dir, facenet_h5, face_crops_by_person):
    """A folder with the files the pages' examples name, and an environment whose
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


@pytest.mark.parametrize("page", [pytest.param(p, id=_id(p)) for p in PAGES])
def test_doc_blocks_are_all_covered(page):
    """Every block of the page runs below (or is listed with its reason), every substitution
    still finds its text, and the counts are the page's: a block added to or removed from a
    page, or a page edit, cannot silently escape the block tests."""
    spec, text = PAGES[page], (REPO / page).read_text()
    fences = len(re.findall(r"^```", text, flags=re.M))
    assert fences == 2 * sum(len(blocks(page, lang)) for lang in ("python", "bash", "")), page
    code = _substitute(page, blocks(page, "python"), spec.python_subs)
    assert len(code) == spec.python, f"a Python block of {page} was added or removed"
    assert set(spec.python_checks) <= set(range(spec.python))
    shell = _substitute(page, blocks(page, "bash"), spec.shell_subs)
    assert len(shell) == spec.shell, f"a shell block of {page} was added or removed"
    grouped = [index for group in spec.shell_groups.values() for index in group]
    assert sorted(grouped) == sorted(spec.shell_commands)
    assert not set(grouped) & set(spec.shell_not_run)
    assert set(spec.shell_not_run) | set(grouped) == set(range(len(shell)))
    assert all(len(_commands(shell[index])) == spec.shell_commands[index] for index in grouped)
    assert set(spec.shell_leaves) <= set(spec.shell_groups)
    other = blocks(page, "")
    assert set(spec.other_not_run) == set(range(len(other))), f"a block of {page} in another language"


def test_documentation_covers_the_pages_and_totals():
    """Every page of docs/ has its table, and the runs add up: 10 Python blocks and 10
    commands in 3 groups (a block moved between pages keeps running)."""
    pages = {f"docs/{path.name}" for path in (REPO / "docs").glob("*.md")}
    assert pages | {"README.md"} == set(PAGES)
    assert len(PYTHON_BLOCKS) == 10
    assert sum(sum(spec.shell_commands.values()) for spec in PAGES.values()) == 10
    groups = [group for _, group in SHELL_GROUPS]
    assert len(groups) == len(set(groups)) == 3


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than - and _ dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def _links(page: str) -> list[tuple[Path, str]]:
    """The page's links to files of the repository: (target, anchor or "")."""
    text = re.sub(r"^```.*?^```", "", (REPO / page).read_text(), flags=re.S | re.M)
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        found.append(((REPO / page).parent / path if path else REPO / page, anchor))
    return found


def test_readme_is_a_front_door():
    """The README is at most 300 lines, links every page of docs/, and each page it links
    exists."""
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
    linked = {path.resolve() for path, _ in _links("README.md")}
    docs = {path.resolve() for path in (REPO / "docs").glob("*.md")}
    linked_docs = {path for path in linked if path.parent == (REPO / "docs").resolve()}
    assert all(path.is_file() for path in linked_docs), sorted(map(str, linked_docs - docs))
    assert docs <= linked, f"pages the README does not link: {sorted(map(str, docs - linked))}"


@pytest.mark.parametrize("page", [pytest.param(p, id=_id(p)) for p in PAGES])
def test_doc_links_resolve(page):
    """Each link of a page to a file of the repository finds the file, and its #anchor a
    heading there (moving text between pages cannot leave a dead link)."""
    for path, anchor in _links(page):
        assert path.exists(), f"{page} links {path}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page} links #{anchor} of {path.name}"


REPO_FILE = re.compile(r"(?<![\w/.-])((?:tests|tools|benchmarks|notebooks|keras_inception)/"
                       r"[\w/.-]*\.(?:py|ipynb|json|md|txt|sh))")


@pytest.mark.parametrize("page", [pytest.param(p, id=_id(p)) for p in PAGES])
def test_doc_named_files_exist(page):
    """Each file of the repository a page names (a test, tool, benchmark, notebook or
    module path) exists: a renamed file cannot leave the pages pointing at nothing."""
    named = set(REPO_FILE.findall((REPO / page).read_text()))
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing, f"{page} names files that do not exist: {missing}"


def _loggers() -> list[logging.Logger]:
    """The root logger and every logger made so far (a block's imports add their own)."""
    found = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in found if isinstance(logger, logging.Logger))]


@pytest.fixture
def process_state_kept():
    """Puts back after a block what blocks change for the whole process, so that neither the
    next block nor a later test of this worker sees it: Keras's session (and with it the
    block's models) and dtype policy (docs/performance.md sets mixed_bfloat16), the Python
    and NumPy random states and TensorFlow's global seed (training seeds all three, other
    blocks draw), the logging levels (exporting to ONNX sets absl's) and sys.path. The
    environment and the working folder are the test's `monkeypatch`'s (tf2onnx sets
    TF_CPP_MIN_LOG_LEVEL)."""
    import keras
    import tensorflow as tf

    policy, tf_seed = keras.config.dtype_policy(), tf.compat.v1.random.get_seed(None)[0]
    py_state, np_state, path = random.getstate(), np.random.get_state(), list(sys.path)
    levels = {logger: logger.level for logger in _loggers()}
    yield
    keras.backend.clear_session(free_memory=False)  # the policy too: set below; gc.collect last
    keras.config.set_dtype_policy(policy)
    random.setstate(py_state)
    np.random.set_state(np_state)
    tf.random.set_seed(tf_seed)
    for logger, level in levels.items():
        logger.setLevel(level)
    sys.path[:] = path
    gc.collect()


def _exec_block(block: str, name: str) -> tuple[str, str | None]:
    """Runs `block` in globals of its own, as a reader's script (`__name__` "__main__"):
    what it printed, and its traceback (None when it ran to the end)."""
    printed = io.StringIO()
    linecache.cache[name] = (len(block), None, block.splitlines(True), name)  # traceback lines
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block, name, "exec"), {"__name__": "__main__"})
    except (Exception, SystemExit):
        return printed.getvalue(), traceback.format_exc()
    return printed.getvalue(), None


@pytest.mark.parametrize("page, index", [pytest.param(p, i, marks=RUNS_A_BLOCK, id=f"{_id(p)}-{i}")
                                         for p, i in PYTHON_BLOCKS])
def test_doc_python_block_runs(scratch, page, index, tmp_path, monkeypatch, process_state_kept):
    """Each block alone, as a reader pastes it, in this process (a fresh interpreter per block
    would add TensorFlow's start-up, seconds of CPU each) with fresh globals: a block that
    uses a name it neither imports nor defines fails here. (A submodule that it reaches as an
    attribute without importing it could be one an earlier test imported.) What a block
    changes for the whole process is put back after it (`process_state_kept`). What it
    produced is checked: features, exports, training."""
    import keras

    spec = PAGES[page]
    folder, env = _copy(scratch, tmp_path / f"python{index}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(folder)
    block = _substitute(page, blocks(page, "python"), spec.python_subs)[index]
    stdout, error = _exec_block(block, f"<{page} block {index}>")
    assert error is None, (page, index, error[-4000:])
    assert keras.config.backend() == "tensorflow"
    printed, paths = spec.python_checks.get(index, ([], []))
    for text in printed:
        assert text in stdout, (page, index, text)
    _check_leaves(folder, paths)


@pytest.mark.slow
@pytest.mark.parametrize("page, group", [pytest.param(p, g, id=f"{_id(p)}-{g}")
                                         for p, g in SHELL_GROUPS])
def test_doc_shell_blocks_run(scratch, page, group, tmp_path, monkeypatch):
    """The shell blocks' commands in order (the multi-device training among them), in the
    scratch folder with its environment, each through the command line's `main` as
    `keras-inception` runs it: exit code 0, and the files the group leaves."""
    spec = PAGES[page]
    folder, env = _copy(scratch, tmp_path / f"shell_{group}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shell = _substitute(page, blocks(page, "bash"), spec.shell_subs)
    for index in spec.shell_groups[group]:
        commands = _commands(shell[index])
        assert len(commands) == spec.shell_commands[index]
        for command in commands:
            assert command.startswith("keras-inception "), command
            proc = run_cli(*command.split()[1:], cwd=folder)
            assert proc.returncode == 0, (command, proc.stderr[-3000:])
    _check_leaves(folder, spec.shell_leaves.get(group, []))
