"""What the first training step costs: said before it runs, measured after it.

The first step of every `fit` traces the training step into a graph and, with XLA,
compiles it; on a CPU that takes seconds to minutes during which nothing is printed.
`CompileNotice` prints, before it,

    compiling the training step

and after it `first step took N s`. The measurement is recorded in the weights cache
(`presets.cache_dir()/compile_times.json`, keyed by the step: stage kind, network,
image size, batch, backend, XLA, device); a later run on this machine that compiles
the same step says what it took then:

    compiling the training step (took N s when this machine last ran it)

No figure is printed that this machine did not measure. Whether XLA compiles the step
is Keras' choice (`jit_compile="auto"`) unless `TrainConfig.jit` says otherwise.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras

CACHE_FILE = "compile_times.json"


def current_device() -> str:
    """"gpu", "tpu" or "cpu": where the backend runs the training step."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        for kind in ("TPU", "GPU"):
            if tf.config.list_logical_devices(kind):
                return kind.lower()
        return "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def jit_compile(jit: bool | None) -> bool | str:
    """`compile`'s `jit_compile` for `TrainConfig.jit`: None leaves it to Keras ("auto")."""
    return "auto" if jit is None else jit


def step_key(step: str, model: keras.Model, batch_size: int) -> str:
    """What identifies a training step's compile: `step` (the stage kind, the network and
    the image size, as the caller names it), the batch, backend, XLA and device."""
    backend = keras.backend.backend()
    return (f"{step}|b{batch_size}|{backend}|xla={getattr(model, 'jit_compile', None)}|"
            f"{current_device()}")


def _times_path() -> str:
    from keras_inception.presets.fetch import cache_dir

    return os.path.join(cache_dir(), CACHE_FILE)


def read_measurements(path: str | None = None) -> dict[str, float]:
    """The first steps this machine measured (key -> seconds); {} when none or unreadable."""
    try:
        with open(path or _times_path(), encoding="utf-8") as f:
            values = json.load(f)
        return {k: float(v) for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0}
    except (OSError, ValueError, AttributeError):
        return {}


def record_measurement(key: str, seconds: float, path: str | None = None) -> None:
    """Adds a measured first step to the measurements (atomically)."""
    from keras_inception import files

    path = path or _times_path()
    values = read_measurements(path)
    values[key] = round(seconds, 2)
    files.write_json_atomic(path, values, create_parents=True)


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{max(value, 0.1):.1f}"


class CompileNotice(keras.callbacks.Callback):
    """Prints that the step compiles before the first step of a `fit`, then the measured
    time; quotes this machine's own earlier measurement of the same step when it has one.

    Args:
        step: names the step (e.g. "head_on_features|inception_resnet_v1|75").
        batch_size: the batch of the step.
        record: record the measurement (False: only print).
        path: the measurements file (default: `compile_times.json` in the weights cache).
        print_fn: where the two lines go.
    """

    def __init__(self, step: str, batch_size: int, *, record: bool = True,
                 path: str | None = None, print_fn: Any = print) -> None:
        super().__init__()
        self.step, self.batch_size, self.record, self.path = step, batch_size, record, path
        self.print_fn = print_fn
        self.earlier_s: float | None = None
        self.first_step_s: float | None = None
        self._started: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.earlier_s = read_measurements(self.path).get(
            step_key(self.step, self.model, self.batch_size))
        self.first_step_s, self._started = None, None
        self.print_fn("compiling the training step" + (
            "" if self.earlier_s is None
            else f" (took {_seconds(self.earlier_s)} s when this machine last ran it)"))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._started is None and self.first_step_s is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._started is None or self.first_step_s is not None:
            return
        self.first_step_s = time.perf_counter() - self._started
        self.print_fn(f"first step took {_seconds(self.first_step_s)} s")
        if self.record:
            try:
                record_measurement(step_key(self.step, self.model, self.batch_size),
                                   self.first_step_s, self.path)
            except OSError:
                pass  # a read-only cache only loses the quote of a later run


__all__ = ["CACHE_FILE", "CompileNotice", "current_device", "jit_compile", "read_measurements",
           "record_measurement", "step_key"]
