"""The architecture rules of the repository: no import cycles, a library core without the
training app or TensorFlow, a lazy public API, extras that install what their modules
import, and one home for test support (tests/support/), which the package never imports."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import keras_inception as ki

PACKAGE = Path(ki.__file__).resolve().parent
# The library: what an applications user needs. Never imports the training app.
CORE = ("layers", "preprocessing", "registry", "models", "presets", "convert", "export", "embeddings",
        "explain", "features", "files", "saving", "analysis", "metadata", "_compat", "_lazy",
        "_registration")
APP = ("train", "apps", "cli")
# Integrations with other libraries' APIs (optional extras): they build on the core, which
# never imports them, and they do not import the application.
INTEGRATIONS = ("keras_hub",)


def _module_name(path: Path) -> str:
    parts = ["keras_inception", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports, at any level (functions included): an
    import inside a function is still a dependency, and cycles through them count."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            found = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                # `from pkg import sub` depends on the submodule, `from mod import x` on mod.
                found = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names]
            for target in found:
                # `from pkg import submodule` names the submodule; else the module itself.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("keras_inception") and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles():
    graph = import_graph()
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_library_core_never_imports_the_application():
    graph = import_graph()
    offenders = [
        f"{module} -> {target}"
        for module, targets in graph.items() if _area(module) in CORE
        for target in targets if _area(target) in APP
    ]
    assert not offenders, offenders
    # Every module of the package is in one of the three (a new folder must be placed).
    assert {_area(m) for m in graph} - {"", *CORE, *APP, *INTEGRATIONS} == set()


def test_integrations_are_optional_for_the_core_and_the_application():
    """Only keras_inception.keras_hub imports keras-hub (the `keras-hub` extra); nothing
    else of the package imports it, and it imports no application module."""
    graph = import_graph()
    offenders = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if (_area(target) in INTEGRATIONS and _area(module) not in INTEGRATIONS)
        or (_area(module) in INTEGRATIONS and _area(target) in APP)
    ]
    assert not offenders, offenders
    third_party = {
        _module_name(path) for path in PACKAGE.rglob("*.py")
        if "keras_hub" in _top_level_imports(path)
    }
    assert third_party and {_area(m) for m in third_party} == {"keras_hub"}, third_party
    assert "keras-hub" in _extra("keras-hub")


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code.split("\0")] if "\0" in code else [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )


@pytest.mark.subprocess
def test_core_imports_without_tensorflow():
    """With a non-TensorFlow backend, no core module pulls in TensorFlow or tfds."""
    core = [m for m in import_graph() if _area(m) in CORE]
    code = (
        "import importlib, json, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_datasets'))))\n"
    )
    proc = _run(code, KERAS_BACKEND="numpy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []


@pytest.mark.subprocess
def test_import_keras_inception_is_light():
    proc = _run(
        "import json, sys, keras_inception as ki\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'keras', 'tensorflow', 'tensorflow_datasets', 'jax', 'torch', 'matplotlib'})\n"
        "print(json.dumps([heavy, ki.__version__, sorted(ki.__all__)]))",
        KERAS_BACKEND="tensorflow",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    heavy, version, names = json.loads(proc.stdout.splitlines()[-1])
    assert heavy == []
    assert version and {"InceptionResNetV2", "feature_extractor", "preprocess_input"} <= set(names)


@pytest.mark.subprocess
def test_import_and_build_under_python_oo():
    """Docstrings are None under -OO: building the docs must not break the import."""
    proc = subprocess.run(
        [sys.executable, "-OO", "-c",
         "import keras_inception as ki\n"
         "m = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3), classes=3)\n"
         "print(m.count_params(), ki.InceptionV4.__doc__)"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "numpy"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, doc = proc.stdout.split()[-2:]
    assert int(count) > 20_000_000 and doc == "None"


@pytest.mark.subprocess
def test_cli_help_needs_no_keras():
    """`keras-inception --help` and every `SUBCOMMAND --help` build without Keras or TF."""
    code = (
        "import contextlib, io, json, sys\n"
        "from keras_inception.cli import build_parser, main\n"
        "parser = build_parser()\n"
        "commands = sorted(parser._subparsers._group_actions[0].choices)\n"
        "codes = []\n"
        "for argv in [['--help']] + [[c, '--help'] for c in commands]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            codes.append(e.code)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax'})\n"
        "print(json.dumps([commands, codes, heavy]))"
    )
    proc = _run(code, KERAS_BACKEND="tensorflow")
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands, codes, heavy = json.loads(proc.stdout.splitlines()[-1])
    assert {"summary", "predict", "train", "evaluate", "export", "convert", "weights"} <= set(commands)
    assert codes == [0] * (len(commands) + 1)
    assert heavy == []
    assert "TensorFlow" not in proc.stderr and "oneDNN" not in proc.stderr


def test_cli_model_choices_come_from_the_registry():
    from keras_inception.cli import build_parser
    from keras_inception.registry import model_names

    parser = build_parser()
    summary = parser._subparsers._group_actions[0].choices["summary"]
    model_action = next(a for a in summary._actions if a.dest == "model")
    assert tuple(model_action.choices) == tuple(model_names())
    # One way to name the model: `--model` in every subcommand that takes one.
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        dests = {a.dest: a for a in sub._actions}
        if "model" in dests:
            assert dests["model"].option_strings == ["--model"], name


def _extra(name: str) -> set[str]:
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    lines = config["options.extras_require"][name].strip().splitlines()
    return {re.split(r"[~<>=\[;]", line.strip())[0] for line in lines if line.strip()}


def test_extras_install_what_their_commands_import():
    """`pip install keras_inception[cpu]` must run `keras-inception train` to the end."""
    train_packages = {"tensorflow-datasets", "matplotlib", "tensorboard"}
    assert train_packages <= _extra("train")
    assert train_packages <= _extra("cpu") and train_packages <= _extra("gpu")
    # And the application's third-party imports are those (plus the backend).
    imported = set()
    for path in (PACKAGE / "train").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"keras_inception", "keras", "numpy"}
    # Besides the train extra: the Keras backends (tensorflow from cpu/gpu, jax, torch).
    assert third_party <= {"tensorflow", "tensorflow_datasets", "matplotlib", "jax", "torch"}, \
        third_party


def test_moved_module_names_still_resolve_with_a_warning():
    """`keras_inception.facenet` is now `keras_inception.embeddings` (docs/changes.md)."""
    import keras_inception.embeddings as embeddings

    with pytest.warns(DeprecationWarning, match="keras_inception.facenet is now keras_inception.embeddings"):
        from keras_inception import facenet
    assert facenet is embeddings and callable(facenet.verify)
    assert not (PACKAGE / "facenet.py").exists() and not (PACKAGE / "cli" / "facenet.py").exists()
    assert not (PACKAGE / "convert" / "facenet.py").exists()


# GPL-licensed packages that only the tests, benchmarks and notebooks may use.
GPL_PACKAGES = {"faceie"}


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _test_support_modules(repo: Path) -> set[str]:
    return {p.stem for p in (repo / "tests" / "support").glob("*.py")}


def test_the_package_ships_no_test_scaffolding_and_nothing_gpl():
    """Nothing under keras_inception/ imports faceie (GPL-3.0) or the repository's test
    and benchmark support; no extra of setup.cfg names a GPL package (`pip install
    keras_inception[anything]` pulls nothing GPL); the test-only packages come from
    requirements-test.txt."""
    repo = PACKAGE.parent
    tests = {p.stem for p in (repo / "tests").glob("*.py")} | _test_support_modules(repo)
    offenders = {
        f"{path.relative_to(repo)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _top_level_imports(path) & (GPL_PACKAGES | {"support", "tests"} | tests)
    }
    assert not offenders, offenders
    import configparser

    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    extras = config["options.extras_require"]
    assert {name for extra in extras for name in _extra(extra)} & GPL_PACKAGES == set()
    assert config["options.packages.find"]["include"].split() == ["keras_inception,", "keras_inception.*"]
    required = (repo / "requirements-test.txt").read_text()
    assert all(re.search(rf"^{name}\b", required, re.M) for name in (*GPL_PACKAGES, "pytest"))


# What the benchmarks and notebooks may borrow from tests/support/.
SHARED_SUPPORT = {"support.faces", "support.random_backbone", "support.segmentation"}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            # `from support import faces` names a module; `from support.faces import x` does too.
            names |= ({f"support.{alias.name}" for alias in node.names}
                      if node.module == "support" else {node.module})
    return names


def test_test_support_has_one_home():
    """tests/ holds test modules, conftest.py and support/, nothing else that is Python;
    support/ imports no test module; the benchmarks and notebooks take only the shared
    modules of support/, and no top-level folder besides tests/ holds test helpers."""
    repo = PACKAGE.parent
    loose = [p.name for p in (repo / "tests").glob("*.py")
             if not p.name.startswith("test_") and p.name != "conftest.py"]
    assert loose == []
    assert not (repo / "testing_support").exists()
    test_modules = {p.stem for p in (repo / "tests").glob("test_*.py")}
    offenders = {
        f"{path.relative_to(repo)}: {name}"
        for path in (repo / "tests" / "support").glob("*.py")
        for name in _top_level_imports(path) & test_modules
    }
    assert not offenders, offenders
    borrowed = {
        (path.relative_to(repo).as_posix(), name)
        for path in (repo / "benchmarks").rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] in {"support", "tests"} | test_modules
    }
    assert borrowed and {name for _, name in borrowed} <= SHARED_SUPPORT | {"support"}, borrowed
    notebooks = "".join(p.read_text() for p in (repo / "notebooks").glob("*.ipynb"))
    assert "from support" in notebooks and "testing_support" not in notebooks
    # What moved out of the package is there.
    assert (repo / "tests" / "support" / "faces.py").is_file()
    assert not (PACKAGE / "apps" / "faces.py").exists()
    assert not (PACKAGE / "apps" / "random_backbone.py").exists()


def test_committed_notebook_outputs_hold_no_machine_paths_and_no_warnings():
    """What a reader sees in notebooks/*.ipynb names no folder of the machine that ran it
    (/work/..., /root/..., /tmp/...) and holds no warning on stderr (tools/make_notebooks.py
    refuses to write such a run)."""
    machine_path = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/")
    warning = re.compile(r"\b\w*Warning\b|\bwarnings\.warn")
    notebooks = sorted((PACKAGE.parent / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 4
    found = []
    for path in notebooks:
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            for output in cell.get("outputs", []):
                texts = [output.get("text", "")] + [
                    v for k, v in output.get("data", {}).items() if k.startswith("text/")]
                stderr = output.get("name") == "stderr"
                for line in "".join("".join(t) for t in texts).splitlines():
                    if machine_path.search(line) or (stderr and warning.search(line)):
                        found.append(f"{path.name} cell {index}: {line[:120]}")
    assert found == []


def test_modules_named_by_the_benchmarks_and_tools_exist():
    """A path such as `keras_inception/apps/benchmark.py` in a benchmark's or tool's text
    names a file of the repository (benchmarks/throughput.py once named one that was not)."""
    repo = PACKAGE.parent
    named = {
        (path.name, match)
        for folder in ("benchmarks", "tools")
        for path in (repo / folder).glob("*.py")
        for match in re.findall(r"(?:keras_inception|tests)/[\w/]+\.py", path.read_text())
    }
    assert named and [(name, p) for name, p in sorted(named) if not (repo / p).is_file()] == []


def test_the_minimum_input_size_is_one_value():
    """The builders' minimum (models.builder.MIN_SIZE) is what the command line accepts and
    what the benchmark checks; the parser keeps a copy because it must not import Keras."""
    from keras_inception.apps import benchmark
    from keras_inception.cli import arguments
    from keras_inception.models import builder

    assert arguments.MIN_IMAGE_SIZE == builder.MIN_SIZE == 75
    assert benchmark.MIN_SIZE is builder.MIN_SIZE
    with pytest.raises(ValueError, match=r"at least 75"):
        ki.InceptionResNetV1(weights=None, include_top=False, input_shape=(74, 74, 3))


def test_the_openvino_extra_installs_what_only_its_modules_import():
    """openvino and nncf (the `openvino` extra, nothing else in it) are imported by
    keras_inception.export.openvino and .openvino_runtime only, never by another module, and
    those two modules import no other third-party package than the core's (numpy,
    TensorFlow for the conversion)."""
    optional = {"openvino", "nncf"}
    importers = {_module_name(path) for path in PACKAGE.rglob("*.py")
                 if _top_level_imports(path) & optional}
    assert importers == {"keras_inception.export.openvino",
                         "keras_inception.export.openvino_runtime"}, importers
    imported = set().union(*(_top_level_imports(PACKAGE / "export" / f"{name}.py")
                             for name in ("openvino", "openvino_runtime")))
    third_party = imported - set(sys.stdlib_module_names) - {"keras_inception"}
    assert third_party - {"numpy", "tensorflow"} == optional == _extra("openvino")
