"""Inference and training throughput of our networks against keras.applications.

Everything runs in one process on the backend Keras was imported with
(`KERAS_BACKEND`). Every candidate gets the same device-resident inputs; candidates
are timed in turn, round after round, so that a change in machine load hits all of
them alike, and each figure is the median over rounds. Warm-up (tracing and XLA
compilation) is timed apart and reported as `compile_s`.

Candidates: our `MODEL` for each requested model, `keras_apps_ir_v2`
(keras.applications.InceptionResNetV2, the reference), and optionally
`MODEL+fold_bn` (inference with BatchNorm folded into the convolutions, see
`keras_inception.export.fold_bn.fuse_batchnorm`) and `MODEL+remat` (training with
`keras.RematScope("activations")`).
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from keras_inception import files
from keras_inception.models import get_builder
from keras_inception.models.builder import MIN_SIZE
from keras_inception.registry import MAX_IMAGE_SIZE

REFERENCE = "keras_apps_ir_v2"
MODES = ("inference", "training")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class Measurement:
    """One candidate in one setting."""

    candidate: str
    mode: str
    backend: str
    policy: str
    batch_size: int
    image_size: int
    jit_compile: bool
    img_per_s: float
    img_per_s_rounds: list
    compile_s: float
    peak_memory_mb: float | None
    memory_source: str


def machine_description() -> str:
    """CPU / GPU, backend and library versions, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass
    backend = keras.backend.backend()
    parts = [f"CPU {cpu}", f"Python {platform.python_version()}", f"Keras {keras.__version__}"]
    if backend == "jax":
        import jax

        parts.append(f"JAX {jax.__version__} on {', '.join(d.device_kind for d in jax.devices())}")
    elif backend == "torch":
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        parts.append(f"PyTorch {torch.__version__} on {gpu}")
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        parts.append(f"TensorFlow {tf.__version__} on {'GPU' if gpus else 'CPU'}")
    return ", ".join(parts)


# SIMD features that decide int8 vs float32 speed: without a VNNI dot product, x86 int8
# GEMMs (vpmaddwd) do as many multiply-adds per cycle as float32 FMAs.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_simd_flags() -> list[str]:
    """Which of `SIMD_FLAGS` this CPU has (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in SIMD_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): shared machines are noisy."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _to_device(array: np.ndarray):
    return keras.ops.convert_to_tensor(array)


def _sync(value) -> None:
    """Waits for asynchronous backends so that the clock measures the work."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.block_until_ready(value)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        keras.ops.convert_to_numpy(keras.tree.flatten(value)[0])


class Step:
    """A compiled inference or training step on fixed inputs; `__call__` runs it once."""

    def __init__(self, model: keras.Model, mode: str, x, y, jit_compile: bool) -> None:
        self.model, self.mode, self.x, self.y = model, mode, x, y
        self.jit_compile = jit_compile
        self.peak_memory_mb: float | None = None
        self.memory_source = "n/a"
        backend = keras.backend.backend()
        maker = {"jax": self._jax, "tensorflow": self._tensorflow, "torch": self._torch}[backend]
        self._run: Callable[[], Any] = maker()

    def __call__(self):
        out = self._run()
        _sync(out)
        return out

    def _loss_and_optimizer(self):
        return (keras.losses.SparseCategoricalCrossentropy(),
                keras.optimizers.SGD(0.01, momentum=0.9))

    def _jax(self):
        import jax

        model = self.model
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        if self.mode == "inference":
            def infer(tv, ntv, x):
                return model.stateless_call(tv, ntv, x, training=False)[0]

            compiled = jax.jit(infer).lower(tv, ntv, self.x).compile()
            self._memory_from(compiled)
            return lambda: compiled(tv, ntv, self.x)

        loss_fn, optimizer = self._loss_and_optimizer()
        optimizer.build(model.trainable_variables)
        state = {"tv": tv, "ntv": ntv, "ov": [v.value for v in optimizer.variables]}

        def loss(tv, ntv, x, y):
            out, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_fn(y, out), ntv

        def train(tv, ntv, ov, x, y):
            (value, ntv), grads = jax.value_and_grad(loss, has_aux=True)(tv, ntv, x, y)
            tv, ov = optimizer.stateless_apply(ov, grads, tv)
            return value, tv, ntv, ov

        compiled = jax.jit(train, donate_argnums=(0, 1, 2)).lower(
            state["tv"], state["ntv"], state["ov"], self.x, self.y).compile()
        self._memory_from(compiled)

        def run():
            value, state["tv"], state["ntv"], state["ov"] = compiled(
                state["tv"], state["ntv"], state["ov"], self.x, self.y)
            return value

        return run

    def _memory_from(self, compiled) -> None:
        analysis = compiled.memory_analysis()
        if analysis is not None:
            total = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                     + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)
            self.peak_memory_mb = total / 2**20
            self.memory_source = "XLA memory analysis of the compiled step"

    def _tensorflow(self):
        import tensorflow as tf

        model = self.model
        if self.mode == "inference":
            fn = tf.function(lambda x: model(x, training=False), jit_compile=self.jit_compile)
            return lambda: fn(self.x)
        loss_fn, optimizer = self._loss_and_optimizer()
        model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=self.jit_compile)
        if model.jit_compile != self.jit_compile:
            raise RuntimeError(f"Keras changed jit_compile for {model.name}")
        return lambda: model.train_on_batch(self.x, self.y)

    def _torch(self):
        import torch

        model = self.model
        if self.mode == "inference":
            def infer():
                with torch.no_grad():
                    return model(self.x, training=False)

            return infer
        loss_fn, optimizer = self._loss_and_optimizer()
        model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False)
        return lambda: model.train_on_batch(self.x, self.y)


def build_candidates(
    models: Sequence[str], image_size: int, fold_bn: bool, remat: bool
) -> dict[str, tuple[Callable[[], keras.Model], tuple[str, ...]]]:
    """Candidate name -> (builder, modes it is measured in)."""
    shape = (image_size, image_size, 3)
    candidates: dict[str, tuple[Callable[[], keras.Model], tuple[str, ...]]] = {}

    def ours(name: str) -> Callable[[], keras.Model]:
        return lambda: get_builder(name)(weights=None, input_shape=shape)

    for name in models:
        candidates[name] = (ours(name), MODES)
        if fold_bn:
            from keras_inception.export.fold_bn import fuse_batchnorm

            candidates[f"{name}+fold_bn"] = (
                lambda n=name: fuse_batchnorm(ours(n)()), ("inference",))
        if remat:
            def remat_model(n: str = name) -> keras.Model:
                with keras.RematScope(mode="activations"):
                    return ours(n)()

            candidates[f"{name}+remat"] = (remat_model, ("training",))
    candidates[REFERENCE] = (
        lambda: keras.applications.InceptionResNetV2(weights=None, input_shape=shape), MODES)
    return candidates


def run_benchmark(
    models: Sequence[str] = ("inception_resnet_v2",),
    batch_sizes: Sequence[int] = (8,),
    image_size: int = 299,
    policies: Sequence[str] = ("float32",),
    modes: Sequence[str] = MODES,
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 2,
    jit_compile: bool = True,
    fold_bn: bool = False,
    remat: bool = False,
    log: Callable[[str], None] = print,
) -> list[Measurement]:
    """Measures every candidate in every (policy, batch size, mode); see the module doc."""
    for name in models:
        get_builder(name)
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise ValueError(f"`policies` must be among {POLICIES}; received {bad}.")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"`modes` must be among {MODES}; received {bad}.")
    if not MIN_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"`image_size` must be in {MIN_SIZE}-{MAX_IMAGE_SIZE}; received "
                         f"image_size={image_size}.")
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    results = []
    previous_policy = keras.mixed_precision.global_policy().name
    try:
        for policy in policies:
            keras.mixed_precision.set_global_policy(policy)
            built = {}
            for label, (builder, cand_modes) in build_candidates(
                    models, image_size, fold_bn, remat).items():
                if any(m in modes for m in cand_modes):
                    built[label] = (builder(), cand_modes)
            for batch in batch_sizes:
                x = _to_device(rng.uniform(-1, 1, (batch, image_size, image_size, 3))
                               .astype("float32"))
                y = _to_device(rng.integers(0, 1000, batch).astype("int32"))
                for mode in modes:
                    results += _measure(built, mode, x, y, policy, batch, image_size,
                                        rounds, steps, warmup, jit_compile, backend, log)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return results


def _measure(built, mode, x, y, policy, batch, image_size, rounds, steps, warmup,
             jit_compile, backend, log) -> list[Measurement]:
    steps_by_label, compile_s = {}, {}
    for label, (model, cand_modes) in built.items():
        if mode not in cand_modes:
            continue
        start = time.perf_counter()
        step = Step(model, mode, x, y, jit_compile)
        for _ in range(warmup):
            step()
        compile_s[label] = time.perf_counter() - start
        steps_by_label[label] = step
        log(f"[{mode} {policy} b{batch}] {label}: warm-up + compile {compile_s[label]:.1f} s")
    rates: dict[str, list[float]] = {label: [] for label in steps_by_label}
    for r in range(rounds):
        for label, step in steps_by_label.items():  # alternate candidates every round
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates[label].append(batch * steps / (time.perf_counter() - start))
        log(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{label} {rates[label][-1]:.1f}" for label in rates) + " img/s")
    return [
        Measurement(label, mode, backend, policy, batch, image_size,
                    bool(jit_compile and backend != "torch"), statistics.median(rates[label]),
                    rates[label], compile_s[label], step.peak_memory_mb, step.memory_source)
        for label, step in steps_by_label.items()
    ]


def ratio_rows(results: Sequence[Measurement]) -> list[dict]:
    """img/s of each candidate over keras.applications' in the same setting."""
    reference = {(m.mode, m.policy, m.batch_size): m.img_per_s
                 for m in results if m.candidate == REFERENCE}
    rows = []
    for m in results:
        ref = reference.get((m.mode, m.policy, m.batch_size))
        if m.candidate != REFERENCE and ref:
            rows.append({"candidate": m.candidate, "mode": m.mode, "policy": m.policy,
                         "batch_size": m.batch_size, "ratio": m.img_per_s / ref})
    return rows


def markdown_section(results: Sequence[Measurement], title: str, command: str,
                     show_absolute: bool = True, bound: float | None = None) -> str:
    """A RESULTS.md section: machine, command, one row per measurement, ratios."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [f"### {title} ({when})", "", f"Machine: {machine_description()}.",
             f"Process peak RSS {peak_rss:,.0f} MiB.", "", f"Command: `{command}`", ""]
    ref = {(m.mode, m.policy, m.batch_size): m.img_per_s
           for m in results if m.candidate == REFERENCE}
    header = ["candidate", "mode", "backend", "policy", "batch", "size", "XLA"]
    header += ["img/s (median)"] if show_absolute else []
    header += ["ratio vs keras.applications", "warm-up + compile s", "peak memory MiB"]
    if bound:
        header.append("fraction of bound")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in results:
        reference = ref.get((m.mode, m.policy, m.batch_size))
        row = [m.candidate, m.mode, m.backend, m.policy, str(m.batch_size), str(m.image_size),
               "yes" if m.jit_compile else "no"]
        row += [f"{m.img_per_s:,.1f}"] if show_absolute else []
        row += [f"{m.img_per_s / reference:.3f}" if reference else "",
                f"{m.compile_s:.1f}",
                f"{m.peak_memory_mb:,.0f}" if m.peak_memory_mb is not None else "n/a"]
        if bound:
            row.append(f"{m.img_per_s / bound:.3f}" if m.mode == "inference" else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def append_results(path: str, section: str) -> None:
    """Appends `section` to the Markdown file `path` (written whole, then moved into place)."""
    existing = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            existing = f.read()
    files.write_text_atomic(
        path, existing.rstrip("\n") + "\n\n" + section if existing else section)


def record_results(json_path: str, payload: Any, results_path: str, section: str) -> None:
    """A benchmark's record: `payload` as JSON at `json_path`, and its Markdown `section`
    appended to `results_path` (each written whole, then moved into place)."""
    files.write_json_atomic(json_path, payload)
    append_results(results_path, section)


def write_json(path: str, results: Sequence[Measurement]) -> None:
    """Writes machine, measurements and ratios as JSON (written whole, then moved into place)."""
    payload = {"machine": machine_description(), "argv": sys.argv,
               "results": [asdict(m) for m in results], "ratios": ratio_rows(results)}
    files.write_json_atomic(path, payload)


def main_from_args(args) -> int:
    """Runs the benchmark for parsed `add_arguments` options; prints the Markdown table."""
    results = run_benchmark(
        models=args.models, batch_sizes=args.batch_sizes, image_size=args.image_size,
        policies=args.policies, modes=args.modes, rounds=args.rounds, steps=args.steps,
        warmup=args.warmup, jit_compile=not args.no_xla, fold_bn=args.fold_bn,
        remat=args.remat,
    )
    command = f"KERAS_BACKEND={keras.backend.backend()} " + shlex.join(
        [os.path.basename(sys.argv[0])] + sys.argv[1:])
    section = markdown_section(results, args.title, command,
                               show_absolute=not args.ratios_only, bound=args.bound)
    print(section)
    for row in ratio_rows(results):
        print(f"ratio {row['candidate']} / {REFERENCE} [{row['mode']} {row['policy']} "
              f"b{row['batch_size']}]: {row['ratio']:.3f}")
    if args.json:
        write_json(args.json, results)
    if args.results:
        append_results(args.results, section)
    return 0
