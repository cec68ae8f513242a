"""What `pip install "keras_inception[...]"` and `make venv` put into an environment."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Distributions that install the same `tensorflow` package folder: two of them in one
# environment overwrite each other's files, and removing one breaks the other.
TENSORFLOW_BUILDS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras() -> dict[str, list[str]]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return {extra: [line.strip() for line in value.splitlines() if line.strip()]
            for extra, value in config["options.extras_require"].items()}


def test_this_environment_has_one_tensorflow_build():
    """`make venv` (every extra, keras-hub's tensorflow-text included) installs one."""
    installed = {_canonical(d.metadata["Name"]) for d in metadata.distributions()}
    builds = sorted(installed & TENSORFLOW_BUILDS)
    assert len(builds) == 1, f"several TensorFlow builds share one folder: {builds}"


def test_no_extra_names_a_second_tensorflow_build():
    """keras-hub -> tensorflow-text requires `tensorflow` by name: an extra that brings
    `tensorflow-cpu` would install both beside it."""
    named = {extra: sorted({_canonical(re.split(r"[<>=~!\[; ]", line)[0]) for line in lines}
                           & TENSORFLOW_BUILDS)
             for extra, lines in _extras().items()}
    assert {extra: builds for extra, builds in named.items() if builds} == {
        "cpu": ["tensorflow"], "gpu": ["tensorflow"]}


def test_pins_are_ranges():
    """No exact pin where a range works; an upper bound where a private API is patched."""
    lines = [line for lines in _extras().values() for line in lines]
    assert not [line for line in lines if "==" in line]
    (tf2onnx,) = [line for line in lines if line.startswith("tf2onnx")]
    assert "<" in tf2onnx
