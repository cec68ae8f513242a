"""The package's layout: no import cycles, a library core without the training app or
TensorFlow, a lazy public API, and the keras.applications drop-in points."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_inception as ki

PACKAGE = Path(ki.__file__).resolve().parent
# The library: what an applications user needs. Never imports the training app.
CORE = ("layers", "preprocessing", "registry", "models", "presets", "convert", "export", "facenet", "_lazy",
        "features", "files", "saving", "analysis", "_compat")
APP = ("train", "apps", "cli")


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
    # Every module of the package is in one of the two (a new folder must be placed).
    assert {_area(m) for m in graph} - {"", *CORE, *APP} == set()


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code.split("\0")] if "\0" in code else [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )


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
