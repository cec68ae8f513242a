"""Wall time of one Grad-CAM map against one forward + backward pass of the same model.

For each backend (TensorFlow, JAX, PyTorch; one fresh subprocess each, since Keras fixes
its backend at import, `CUDA_VISIBLE_DEVICES=""`: CPU only) and each model

* `ir_v2`: `keras_inception.InceptionResNetV2(weights=None)` at 299 px (1000 classes);
* `demo`: the model the demo fine-tunes when its weights come from FaceNet (the
  ladder's `facenet` rung: `recipes.build_transfer_model("facenet", 5, 160, None)`,
  FaceNet's default 160 px, flowers_sample's 5 classes);

with random weights (speed does not depend on their values), one batch of 2 images, it
times, alternating round after round (the order flips every round, so that a change
of load hits both alike):

* `grad_cam`: `keras_inception.explain.grad_cam(model, images)` as a user calls it
  (rebuild of the model with its probe, one forward pass, the gradient of the sum of
  each image's top logit with respect to the tapped layer, the maps, the upsampling);
* `forward_backward` (the reference): the gradient of the same kind of score, the sum
  of each image's top output of `model` itself, with respect to all its trainable
  weights: a training step's forward and backward passes without the optimizer.
  TensorFlow: `tf.GradientTape` over `model.trainable_variables`; JAX: `jax.grad` of
  `model.stateless_call` with respect to the trainable values; PyTorch:
  `torch.autograd.grad` with respect to the trainable parameters. The gradients are
  brought to NumPy (TensorFlow, PyTorch) or waited for (JAX), as grad_cam's are.

Both run eagerly, the way `grad_cam` runs (no `tf.function`, no `jax.jit`, no
`torch.compile`). Diagnostics timed in the same rounds: `rebuild` (the model rebuilt with
its probe, `explain.graph.rebuild`, which every grad_cam call does) and `forward`
(`model(images, training=False)` alone). One untimed call of each first (warm-up).
Figures are medians of the rounds; the ratio grad_cam / forward_backward is taken
within one process, so the machine's speed cancels out. The target (acceptance) is a
ratio <= 1.5; it is recorded here, not asserted by a test.

    nice -n 5 .venv/bin/python benchmarks/explain_time.py          # ~6 min on 2 shared cores
    .venv/bin/python benchmarks/explain_time.py --backends jax --models demo --rounds 1 \
        --no-results                                                # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
MODELS = {  # name -> (description, image size)
    "ir_v2": ("IR-v2 (`InceptionResNetV2`, 1000 classes)", 299),
    "demo": ("demo (`build_transfer_model(\"facenet\", 5, 160)`)", 160),
}
BATCH = 2
TARGET = 1.5
CANDIDATES = ("grad_cam", "forward_backward", "rebuild", "forward")


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ---------------------------------------------------------------- worker (one backend)

def build_model(name: str):
    import keras_inception
    from keras_inception.train import recipes

    size = MODELS[name][1]
    if name == "ir_v2":
        return keras_inception.InceptionResNetV2(weights=None, input_shape=(size, size, 3))
    return recipes.build_transfer_model("facenet", 5, size, None)


def _top_sum(outputs):
    import keras

    return keras.ops.sum(keras.ops.max(keras.ops.cast(outputs, "float32"), axis=-1))


def forward_backward(model, backend: str):
    """fn(images) -> NumPy gradients of the summed top output w.r.t. the trainable weights."""
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        def run(images):
            x = tf.convert_to_tensor(images)
            with tf.GradientTape() as tape:
                score = _top_sum(model(x, training=False))
            return [g.numpy() for g in tape.gradient(score, model.trainable_variables)]
        return run
    if backend == "jax":
        import jax

        def run(images):
            trainable = [v.value for v in model.trainable_variables]
            frozen = [v.value for v in model.non_trainable_variables]

            def score(values):
                outputs, _ = model.stateless_call(values, frozen, images, training=False)
                return _top_sum(outputs)
            return jax.block_until_ready(jax.grad(score)(trainable))
        return run
    if backend == "torch":
        import torch

        def run(images):
            params = [v.value for v in model.trainable_variables]
            score = _top_sum(model(keras.ops.convert_to_tensor(images), training=False))
            return [g.detach().cpu().numpy() for g in torch.autograd.grad(score, params)]
        return run
    raise ValueError(f"no gradients on the {backend!r} backend")


def measure(name: str, rounds: int) -> dict:
    """One model on the current backend: warm-up, then `rounds` alternating rounds."""
    import keras
    import numpy as np

    from keras_inception import explain
    from keras_inception.explain.graph import rebuild

    backend = keras.backend.backend()
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = build_model(name)
    build_s = time.perf_counter() - start
    size = MODELS[name][1]
    images = np.random.default_rng(0).uniform(-1, 1, (BATCH, size, size, 3)).astype("float32")
    reference = forward_backward(model, backend)
    runs = {
        "grad_cam": lambda: explain.grad_cam(model, images),
        "forward_backward": lambda: reference(images),
        "rebuild": lambda: rebuild(model, None),
        "forward": lambda: keras.ops.convert_to_numpy(model(images, training=False)),
    }
    warmup = {}
    for candidate, run in runs.items():
        start = time.perf_counter()
        run()
        warmup[candidate] = round(time.perf_counter() - start, 3)
    times: dict[str, list[float]] = {c: [] for c in runs}
    for round_index in range(rounds):
        # grad_cam and its reference flip order every round; the diagnostics follow.
        pair = ["grad_cam", "forward_backward"][:: 1 if round_index % 2 == 0 else -1]
        for candidate in [*pair, "rebuild", "forward"]:
            start = time.perf_counter()
            runs[candidate]()
            times[candidate].append(round(time.perf_counter() - start, 3))
        print(f"{backend} {name} round {round_index + 1}: "
              + ", ".join(f"{c} {times[c][-1]:.2f} s" for c in CANDIDATES),
              file=sys.stderr, flush=True)
    medians = {c: statistics.median(v) for c, v in times.items()}
    ratio = medians["grad_cam"] / medians["forward_backward"]
    return {
        "backend": backend, "model": name, "description": MODELS[name][0],
        "image_size": size, "batch_size": BATCH, "rounds": rounds,
        "build_s": round(build_s, 2), "warmup_s": warmup, "times_s": times,
        "median_s": {c: round(m, 3) for c, m in medians.items()},
        "ratio": round(ratio, 3), "meets_target": ratio <= TARGET,
        # the ratio within each round (the two calls are adjacent), for comparison
        "paired_ratio_median": round(statistics.median(
            g / f for g, f in zip(times["grad_cam"], times["forward_backward"], strict=True)), 3),
        "trainable_weights": len(model.trainable_weights),
        "load_average_end": round(load_average(), 2),
    }


def worker(model_names: list[str], rounds: int) -> dict:
    import keras

    from keras_inception.apps.benchmark import machine_description

    results = [measure(name, rounds) for name in model_names]
    return {"backend": keras.backend.backend(), "machine": machine_description(),
            "results": results,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


# ---------------------------------------------------------------- driver

def run_backend(backend: str, models: list[str], rounds: int, timeout: float) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", "--models", *models, "--rounds", str(rounds)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stderr.splitlines():  # the rounds, as they went
        if line.startswith(f"{backend} "):
            print(line, flush=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        return {"backend": backend, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    payload = json.loads(lines[-1][len("RESULT "):])
    payload["process_wall_s"] = round(time.perf_counter() - start, 1)
    return payload


def machine_line(workers: list[dict]) -> str:
    """The workers' machine descriptions: the common part once, then each backend's."""
    descriptions = [w["machine"].split(", ") for w in workers if "machine" in w]
    if not descriptions:
        return "n/a"
    common = []
    for parts in zip(*descriptions, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    own = ["; ".join(", ".join(d[len(common):]) for d in descriptions)]
    return ", ".join(common) + (": " + own[0] if own[0] else "")


def markdown(payload: dict) -> str:
    lines = [
        f"## Grad-CAM time against one forward + backward pass ({payload['finished']})", "",
        f"Machine: {payload['machine']}. 2 CPUs shared with other jobs, niceness "
        f"{payload.get('niceness', 5)}; 1-minute load average "
        f"{payload['load_average_start']:.1f} at the start and "
        f"{payload['load_average_end']:.1f} at the end; wall time of the whole run "
        f"{payload['wall_s'] / 60:.0f} min.", "",
        f"Command: `{payload['command']}`", "",
        f"Random weights, one batch of {BATCH} images, one fresh CPU-only subprocess per "
        "backend, everything eager (no `tf.function`, `jax.jit` or `torch.compile`). "
        "*grad_cam*: `explain.grad_cam(model, images)` as a user calls it (the rebuild "
        "with the probe included); *forward + backward*: the gradient of the summed top "
        "output of the same model with respect to all its trainable weights (a training "
        "step without the optimizer). Median of "
        f"{payload['rounds']} rounds alternating the two (order flipped every round), after "
        "one untimed call of each. *rebuild* (the model rebuilt with its probe, part of "
        "every grad_cam call) and *forward* (`model(images)` alone) are timed in the same "
        f"rounds. *ratio*: median grad_cam / median forward + backward; *ratio per round*: the "
        "median of the two calls' ratio in each round (adjacent calls: less hit by a change "
        f"of load). Target: ratio <= {TARGET}x.", "",
        "| backend | model | px | grad_cam s | forward + backward s | ratio | target | "
        "ratio per round (median) | rebuild s | forward s |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for worker_payload in payload["workers"]:
        if "error" in worker_payload:
            lines.append(f"| {worker_payload['backend']} | | | {worker_payload['error']} "
                         "| | | | | | |")
            continue
        for r in worker_payload["results"]:
            m = r["median_s"]
            lines.append(
                f"| {r['backend']} | {r['description']} | {r['image_size']} | "
                f"{m['grad_cam']:.2f} | {m['forward_backward']:.2f} | **{r['ratio']:.2f}x** | "
                f"{'met' if r['meets_target'] else 'missed'} | {r['paired_ratio_median']:.2f}x | "
                f"{m['rebuild']:.2f} | "
                f"{m['forward']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900, help="per backend, s")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "explain_time.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="write no JSON / Markdown")
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(args.models, args.rounds)), flush=True)
        return 0

    started = time.perf_counter()
    load_start = load_average()
    workers = []
    for backend in args.backends:
        workers.append(run_backend(backend, args.models, args.rounds, args.timeout))
        if "error" in workers[-1]:
            print(f"{backend}: {workers[-1]['error']}", flush=True)
    payload = {
        "machine": machine_line(workers),
        "command": " ".join(["python benchmarks/explain_time.py", *sys.argv[1:]]),
        "load_average_start": load_start, "load_average_end": load_average(),
        "niceness": os.nice(0),
        "wall_s": round(time.perf_counter() - started, 1),
        "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "batch_size": BATCH, "rounds": args.rounds, "target_ratio": TARGET,
        "workers": workers,
    }
    section = markdown(payload)
    print(section)
    if not args.no_results:
        from keras_inception.apps.benchmark import record_results

        record_results(args.json, payload, args.results, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
