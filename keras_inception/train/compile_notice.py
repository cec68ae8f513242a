"""What the first training step costs, said before it runs, and the default of `--jit`.

The first step of every `fit` traces the training step into a graph and, with XLA,
compiles it; on a CPU that takes seconds to minutes during which nothing is printed.
`CompileNotice` prints, before it,

    compiling the training step (about N s on this machine)

and after it `first step took N s`, and records that measurement in the run's cache
(`out/cache/compile_times.json`), where the next estimate for the same step (a resumed
or repeated run) finds it.

The estimates and the default of `TrainConfig.jit` rest on `benchmarks/compile_time.py`
(benchmarks/compile_time.json and the "Compile time of the fine-tuning step" section
of benchmarks/RESULTS.md, 2026-11-28): stage 2 of the transfer recipe (top blocks
unfrozen, Adam), batch 8, float32, one fresh process per configuration, on 2 cores
of an Intel Xeon (AVX-512) shared with other jobs (load average 2.9-4.4; Python 3.11,
Keras 3.15.1, TensorFlow 2.21, JAX 0.10.2). `MEASURED` holds the figures.

`default_jit(backend, device)`, the choice `jit=None` resolves to:

* TensorFlow on the CPU: `False`. With XLA the first step (trace + compile + one
  step) took longer for every network and size: 20.8 / 10.8 / 28.1 s against 11.4 /
  6.9 / 13.1 s without (Inception-v4 / Inception-ResNet-v1 / Inception-ResNet-v2 at
  160 px), 15.8 / 21.7 / 37.9 s against 9.8 / 6.3 / 26.8 s at 299 px. Its steady
  steps were slower at 299 px (1.95 / 2.03 / 4.36 s against 1.47 / 0.55 / 2.81 s)
  and, at 160 px, slower for v4 (0.89 against 0.63 s), 10 % faster for IR-v2 (0.70
  against 0.78 s: the compile pays back after 193 steps of 8) and equal for IR-v1 (a
  rerun with 10 steps each: 0.28 s with XLA, 0.29 s without, compile +10 s). Over the flowers
  example's fine-tuning stage (14 steps of 32, about 56 steps of 8), compile + steps
  come to 181 s without XLA and 278 s with it for Inception-ResNet-v2 at 299 px.
  (This is also what Keras' "auto" picks on a CPU-only TensorFlow.)
* JAX: `True` (Keras' JAX trainer compiles with XLA; "auto" means the same). On this
  CPU its compile was the shortest for v4 and IR-v2 at 299 px (5 and 9 s), its steps
  the slowest of the three there (IR-v2: 8.7 s against TensorFlow's 2.8 s).
* Everything else (TensorFlow on a GPU or TPU, PyTorch): `"auto"`, Keras' choice
  (XLA where the model supports it on a TensorFlow GPU without tf.distribute, eager on
  PyTorch). Nothing measured here would justify overriding it.

The estimate of a first step is the measured compile part (first step - step; trace
and compile do not depend much on the image size: where the two measured sizes
disagree the wrong way, their mean; outside the measured sizes, the nearest one's)
plus one step scaled by image area (affine between the two measured sizes,
proportional outside them) and batch.
The measurements vary by +-30 % and more between runs on this shared machine (a fresh
IR-v2 first step at 160 px took 13 s in the benchmark, 23 s in a rerun); the notice
says "about".
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras

# benchmarks/compile_time.py (compile_time.json): (model, backend, XLA) -> {image
# size: (first step s, median steady step s)}, MEASURED_BATCH images per step.
MEASURED: dict[tuple[str, str, bool], dict[int, tuple[float, float]]] = {
    ("inception_v4", "tensorflow", False): {160: (11.42, 0.626), 299: (9.81, 1.474)},
    ("inception_v4", "tensorflow", True): {160: (20.83, 0.888), 299: (15.79, 1.949)},
    ("inception_v4", "jax", True): {160: (11.5, 0.665), 299: (7.44, 2.226)},
    ("inception_resnet_v1", "tensorflow", False): {160: (6.94, 0.315), 299: (6.32, 0.549)},
    ("inception_resnet_v1", "tensorflow", True): {160: (10.85, 0.163), 299: (21.73, 2.034)},
    ("inception_resnet_v1", "jax", True): {160: (5.86, 0.396), 299: (11.77, 2.793)},
    ("inception_resnet_v2", "tensorflow", False): {160: (13.07, 0.776), 299: (26.76, 2.808)},
    ("inception_resnet_v2", "tensorflow", True): {160: (28.07, 0.698), 299: (37.9, 4.36)},
    ("inception_resnet_v2", "jax", True): {160: (7.98, 0.55), 299: (17.25, 8.715)},
}
MEASURED_BATCH = 8
# The first step of stage 1 on cached features (dropout + Dense on pooled vectors):
# (backend, XLA) -> seconds, the median over the six networks and sizes measured.
HEAD_FIRST_STEP: dict[tuple[str, bool], float] = {
    ("tensorflow", False): 0.34, ("tensorflow", True): 1.51, ("jax", True): 0.86,
}
# Stage 2 on the cached activations below the unfrozen blocks (`feature_cache.top_of`:
# top blocks + head), measured by the same benchmark (the `top_*` columns), in the
# layout of `MEASURED` (benchmarks/compile_time_cached.json, 2026-12-02).
TOP_MEASURED: dict[tuple[str, str, bool], dict[int, tuple[float, float]]] = {
    ("inception_v4", "tensorflow", False): {160: (3.21, 0.235), 299: (3.9, 0.872)},
    ("inception_v4", "jax", True): {160: (4.21, 0.193), 299: (4.85, 0.901)},
    ("inception_resnet_v1", "tensorflow", False): {160: (2.71, 0.136), 299: (3.08, 0.51)},
    ("inception_resnet_v1", "jax", True): {160: (3.23, 0.127), 299: (3.79, 0.629)},
    ("inception_resnet_v2", "tensorflow", False): {160: (5.31, 0.418), 299: (6.26, 1.43)},
    ("inception_resnet_v2", "jax", True): {160: (5.58, 0.344), 299: (7.74, 2.037)},
}
# Networks with no row of their own: FaceNet's body is Inception-ResNet-v1's.
ALIASES = {"facenet": "inception_resnet_v1"}
FALLBACK_MODEL = "inception_resnet_v2"  # the largest: an unknown network is not smaller
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


def default_jit(backend: str, device: str) -> bool | str:
    """The measured-best `jit_compile` for a backend ("tensorflow", "jax", "torch") and a
    device ("cpu", "gpu", "tpu"); see the module docstring for the figures."""
    if backend == "jax":
        return True
    if backend == "tensorflow" and device == "cpu":
        return False
    return "auto"


def resolve_jit(jit: bool | str | None) -> bool | str:
    """`TrainConfig.jit`: None becomes `default_jit` of this backend and device."""
    if jit is not None:
        return jit
    return default_jit(keras.backend.backend(), current_device())


def _table_key(model_name: str, backend: str, jit: bool) -> tuple[str, str, bool]:
    model_name = ALIASES.get(model_name, model_name)
    backend = backend if backend in ("tensorflow", "jax") else "tensorflow"
    jit = True if backend == "jax" else bool(jit)
    if (model_name, backend, jit) not in MEASURED:
        model_name = FALLBACK_MODEL
    return model_name, backend, jit


def _affine_in_area(points: dict[int, float], image_size: int, clamp: bool = False) -> float:
    """From the measured (size, value) points: linear in the image area between them;
    outside them the nearest point's value, proportional to the area unless `clamp`.
    Where a larger size measured less (noise), the mean of the points (unless `clamp`,
    proportional to the area, through the mean of their areas)."""
    sizes = sorted(points)
    area = float(image_size) ** 2
    if any(points[b] < points[a] for a, b in zip(sizes, sizes[1:], strict=False)):
        mean = sum(points.values()) / len(points)
        return mean if clamp else mean * area * len(sizes) / sum(s**2 for s in sizes)
    nearest = sizes[0] if area <= sizes[0] ** 2 else sizes[-1] if area >= sizes[-1] ** 2 else None
    if nearest is not None:
        return points[nearest] * (1.0 if clamp else area / nearest**2)
    high = next(s for s in sizes if s**2 >= area)
    low = sizes[sizes.index(high) - 1]
    return points[low] + (points[high] - points[low]) * (area - low**2) / (high**2 - low**2)


def estimate_compile_seconds(
    model_name: str, image_size: int, backend: str, jit: bool | str, *,
    batch_size: int | None = None, device: str = "cpu", cache_dir: str | None = None,
    stage: str = "fine_tune",
) -> float:
    """Seconds the first training step of `model_name` at `image_size` takes on this
    machine: the step's trace + compile, plus (with `batch_size`) one step at that batch.

    From `MEASURED` (this package's CPU measurements of the fine-tuning step, batch 8):
    the compile part affine in the image area between the measured sizes (the nearest
    one's outside them), plus the step time, affine in area between the measured sizes,
    proportional to the area outside them, and proportional to the batch.
    `stage="head_cached"` is stage 1 on cached features (a tiny model: `HEAD_FIRST_STEP`);
    `stage="fine_tune_cached"` stage 2 on cached activations (the top blocks and the
    head: `TOP_MEASURED`).
    On a GPU/TPU only the trace + compile part is counted (it runs on the host, and
    the table's step times are the CPU's). A first step recorded in `cache_dir` for the same step (network,
    size, backend, XLA, device, batch, stage) replaces the table.
    """
    jit_on = True if backend == "jax" else bool(jit) and jit != "auto"
    recorded = _read_cache(cache_dir).get(
        _cache_key(model_name, image_size, backend, jit_on, device, batch_size, stage))
    if recorded:
        return float(recorded)
    if stage == "head_cached":
        key = ("jax" if backend == "jax" else "tensorflow", jit_on)
        return HEAD_FIRST_STEP.get(key, 1.0)
    key = _table_key(model_name, backend, jit_on)
    # Stage 2 on cached activations traces only the top blocks and the head; a
    # configuration without that measurement gets the whole network's (an over-estimate).
    table = (TOP_MEASURED.get(key) if stage == "fine_tune_cached" else None) or MEASURED.get(key)
    if not table:
        return 30.0  # nothing measured: a round figure of the right order
    # Tracing does not shrink with the image: no extrapolation of the compile part.
    compile_s = _affine_in_area({s: first - step for s, (first, step) in table.items()},
                                image_size, clamp=True)
    if batch_size is None or device != "cpu":
        return max(compile_s, 0.1)
    step_s = _affine_in_area({s: step for s, (_, step) in table.items()}, image_size)
    return max(compile_s + step_s * batch_size / MEASURED_BATCH, 0.1)


def _cache_key(model_name: str, image_size: int, backend: str, jit: bool, device: str,
               batch_size: int | None, stage: str) -> str:
    return f"{stage}|{model_name}|{image_size}|{backend}|xla={jit}|{device}|b{batch_size}"


def _read_cache(cache_dir: str | None) -> dict[str, float]:
    if not cache_dir:
        return {}
    try:
        with open(os.path.join(cache_dir, CACHE_FILE), encoding="utf-8") as f:
            values = json.load(f)
        return {k: v for k, v in values.items() if isinstance(v, (int, float)) and v > 0}
    except (OSError, ValueError, AttributeError):
        return {}


def record_first_step(cache_dir: str, key: str, seconds: float) -> None:
    """Adds a measured first step to `cache_dir/compile_times.json`."""
    from keras_inception import files

    values = _read_cache(cache_dir)
    values[key] = round(seconds, 2)
    files.write_json_atomic(os.path.join(cache_dir, CACHE_FILE), values, create_parents=True)


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{max(value, 0.1):.1f}"


class CompileNotice(keras.callbacks.Callback):
    """Prints the estimate before the first step of a `fit`, then the measured time.

    Args:
        model_name, image_size, batch_size: the step that is compiled.
        stage: the stage's name ("head", "fine_tune", "scratch", "paper": the full
            network's step, estimated from the fine-tuning figures), "head_cached"
            (stage 1 on cached features) or "fine_tune_cached" (stage 2 on cached
            activations).
        cache_dir: where measurements are read and (with `record=True`) written.
        print_fn: where the two lines go.
    """

    def __init__(self, model_name: str, image_size: int, batch_size: int, *,
                 stage: str = "fine_tune", cache_dir: str | None = None, record: bool = True,
                 print_fn: Any = print) -> None:
        super().__init__()
        self.model_name, self.image_size, self.batch_size = model_name, image_size, batch_size
        self.stage, self.cache_dir, self.record = stage, cache_dir, record
        self.print_fn = print_fn
        self.estimate_s: float | None = None
        self.first_step_s: float | None = None
        self._started: float | None = None

    def _key(self) -> tuple[str, bool, str]:
        backend = keras.backend.backend()
        jit = bool(self.model.jit_compile) if backend != "jax" else True
        return backend, jit, current_device()

    def on_train_begin(self, logs: dict | None = None) -> None:
        backend, jit, device = self._key()
        self.estimate_s = estimate_compile_seconds(
            self.model_name, self.image_size, backend, jit, batch_size=self.batch_size,
            device=device, cache_dir=self.cache_dir, stage=self.stage)
        self.first_step_s, self._started = None, None
        self.print_fn(f"compiling the training step (about {_seconds(self.estimate_s)} s "
                      "on this machine)")

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._started is None and self.first_step_s is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._started is None or self.first_step_s is not None:
            return
        self.first_step_s = time.perf_counter() - self._started
        self.print_fn(f"first step took {_seconds(self.first_step_s)} s")
        if self.record and self.cache_dir:
            backend, jit, device = self._key()
            try:
                record_first_step(self.cache_dir, _cache_key(
                    self.model_name, self.image_size, backend, jit, device, self.batch_size,
                    self.stage), self.first_step_s)
            except OSError:
                pass  # a read-only cache only loses the refinement


def for_stage(config: Any, stage: str, out: str, batch_size: int,
              chief: bool = True) -> list[keras.callbacks.Callback]:
    """The notice for one stage of `train` (only the chief prints and records); `stage`
    as `CompileNotice` takes it."""
    if not chief:
        return []
    from keras_inception.train.feature_cache import CACHE_DIR

    return [CompileNotice(config.model, config.input_size(), batch_size, stage=stage,
                          cache_dir=os.path.join(out, CACHE_DIR))]


__all__ = ["CompileNotice", "MEASURED", "current_device", "default_jit",
           "estimate_compile_seconds", "for_stage", "record_first_step", "resolve_jit"]
