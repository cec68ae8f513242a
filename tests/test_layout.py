"""The package's layout: no import cycles, a library core without the training app or
TensorFlow, a lazy public API, and the keras.applications drop-in points."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
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


def test_predict_tflite_is_a_real_option(capsys):
    from keras_inception.cli import build_parser

    args = build_parser().parse_args(["predict", "--tflite", "m.tflite", "a.jpg", "b.jpg"])
    assert (args.tflite, args.model, args.images) == ("m.tflite", None, ["a.jpg", "b.jpg"])
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["predict", "--tflite", "m.tflite", "--model", "x.keras", "a.jpg"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_every_named_keras_applications_layer_exists_in_ours():
    reference = keras.applications.InceptionResNetV2(weights=None)
    generated = re.compile(
        r"(input_layer|conv2d|batch_normalization|activation|max_pooling2d|average_pooling2d|"
        r"concatenate|custom_scale_layer|lambda)(_\d+)?")
    named = [layer.name for layer in reference.layers if not generated.fullmatch(layer.name)]
    ours = {layer.name for layer in ki.InceptionResNetV2(weights=None).layers}
    assert len(named) >= 120
    assert [name for name in named if name not in ours] == []
    for name in ("block35_1_ac", "block17_20_ac", "block8_9_ac"):
        assert isinstance(ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(
            75, 75, 3)).get_layer(name), keras.layers.Activation)


def test_ensemble_of_backbones_on_one_input_tensor():
    inputs = keras.Input((96, 96, 3))
    a = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=inputs, pooling="avg")
    b = ki.InceptionV4(weights=None, include_top=False, input_tensor=inputs, pooling="avg")
    c = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=inputs, pooling="avg",
                             name="second_inception_resnet_v2")
    ensemble = keras.Model(inputs, keras.layers.Concatenate()([a.output, b.output, c.output]))
    assert ensemble.output_shape == (None, 1536 * 3)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    out = np.asarray(ensemble(x))
    np.testing.assert_allclose(out[:, :1536], np.asarray(a(x)), atol=1e-5)
    np.testing.assert_allclose(out[:, 1536:3072], np.asarray(b(x)), atol=1e-5)
    # The network is reachable as the nested layer, and the library still recognises it.
    assert a.get_layer("inception_resnet_v2").get_layer("block17_20_ac") is not None
    assert ki.feature_info(a)[3].layer == "block17_20_ac"


def test_input_tensor_after_other_layers():
    """keras.applications' own test: a custom input tensor computed by a layer."""
    inputs = keras.Input((200, 200, 4), name="custom_input")
    x = keras.layers.Conv2D(3, (2, 2), padding="valid", strides=(2, 2))(inputs)
    model = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=x)
    assert model.output_shape[-1] == 1536
    assert model.inputs[0].name == inputs.name


def test_backend_tensor_as_input_tensor_is_refused_clearly():
    tensor = keras.ops.zeros((1, 96, 96, 3))
    with pytest.raises(ValueError, match=r"symbolic Keras tensor.*input_shape=tensor.shape\[1:\]"):
        ki.InceptionResNetV1(weights=None, include_top=False, input_tensor=tensor)


@pytest.mark.subprocess
def test_load_model_registers_the_layers_in_a_fresh_process(tmp_path):
    model = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3), classes=3)
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 75, 75, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    proc = _run(
        "import sys, numpy as np, keras_inception as ki\n"
        f"m = ki.load_model({str(path)!r})\n"
        f"print(float(np.abs(np.asarray(m(np.load({str(tmp_path / 'x.npy')!r})))).sum()))"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(float(np.abs(np.asarray(model(x))).sum()),
                                                           rel=1e-5)


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
    """`keras_inception.facenet` is now `keras_inception.embeddings` (README, "Changes")."""
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


def test_the_package_ships_no_test_scaffolding_and_nothing_gpl():
    """Nothing under keras_inception/ imports faceie (GPL-3.0) or the repository's test
    and benchmark support; no extra of setup.cfg names a GPL package (`pip install
    keras_inception[anything]` pulls nothing GPL); the test-only packages come from
    requirements-test.txt."""
    repo = PACKAGE.parent
    tests = {p.stem for p in (repo / "tests").glob("*.py")}
    offenders = {
        f"{path.relative_to(repo)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _top_level_imports(path) & (GPL_PACKAGES | {"testing_support", "tests"} | tests)
    }
    assert not offenders, offenders
    import configparser

    config = configparser.ConfigParser()
    config.read(repo / "setup.cfg")
    extras = config["options.extras_require"]
    assert {name for extra in extras for name in _extra(extra)} & GPL_PACKAGES == set()
    assert "testing_support" not in config["options.packages.find"]["include"]
    required = (repo / "requirements-test.txt").read_text()
    assert all(re.search(rf"^{name}\b", required, re.M) for name in (*GPL_PACKAGES, "pytest"))


def test_benchmarks_and_testing_support_import_nothing_from_tests():
    """The rule: tests may import testing_support/; benchmarks/ and testing_support/ share
    it and never reach into tests/."""
    repo = PACKAGE.parent
    tests = {p.stem for p in (repo / "tests").glob("*.py")} | {"tests"}
    offenders = {
        f"{path.relative_to(repo)}: {name}"
        for folder in ("benchmarks", "testing_support")
        for path in (repo / folder).rglob("*.py")
        for name in _top_level_imports(path) & tests
    }
    assert not offenders, offenders
    # What moved out of the package is there.
    assert (repo / "testing_support" / "faces.py").is_file()
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
        for match in re.findall(r"(?:keras_inception|testing_support|tests)/[\w/]+\.py", path.read_text())
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


def test_a_run_without_room_for_its_files_stops_with_one_line(tmp_path, monkeypatch):
    """The disk check of the run's start: one line naming the folder, the free space and the
    way out; the folder is the existing one under `--basetemp` or the system's temp folder."""
    import tempfile

    from support import disk

    # A fixed free space: the disk is shared, and another process may write between calls.
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage)
    assert disk.shortage(tmp_path, needed_gib=0) is None
    free_gib = usage.free / 2**30
    message = disk.shortage(tmp_path, needed_gib=free_gib + 2)
    assert message is not None and "\n" not in message
    assert str(tmp_path) in message and f"{free_gib:.1f} GiB free" in message
    assert "--basetemp" in message
    assert disk.NEEDED_GIB > disk.PEAK_GIB

    class Options:
        basetemp = str(tmp_path / "not" / "yet" / "made")

    class Config:
        option = Options()

    assert disk.temporary_root(Config()) == tmp_path
    Options.basetemp = None
    assert disk.temporary_root(Config()) == Path(os.environ.get("PYTEST_DEBUG_TEMPROOT")
                                                 or tempfile.gettempdir())


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
