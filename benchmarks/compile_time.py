"""Trace + compile time and steady speed of the fine-tuning step, with and without XLA.

For each network and image size it builds stage 2 of the `transfer` recipe as
`keras_inception.train.recipes` does (the transfer model, `unfreeze_top`, Adam with
the fine-tuning stage's cosine-decaying learning rate; random weights: speed does not
depend on their values), batch 8, 5 classes, and measures on this machine:

* `first_step_s`: wall time of the first `train_on_batch` after `compile()` (tracing,
  graph optimisation or XLA compilation, and one step);
* `step_s`: median wall time of the later steps (steady state), and img/s;
* `compile_s` = first_step_s - step_s: what the first step costs on top of a step.

Configurations, each in its own subprocess (a fresh backend, nothing cached):
`tf_xla` (TensorFlow, `jit_compile=True`), `tf` (TensorFlow, `jit_compile=False`) and
`jax` (the JAX backend always jit-compiles with XLA). Each also times the stage-1
head on cached features (dropout + Dense on 1536-d vectors), whose compile is what
stage 1 costs with the feature cache, and stage 2 on cached activations (the unfrozen
top blocks and the head, `feature_cache.top_model`), what stage 2 costs with the cache.

Writes benchmarks/compile_time.json and appends a section to benchmarks/RESULTS.md.
The figures are this machine's and stay here: the package prints no compile estimate
(`keras_inception.train.compile_notice` says that a step compiles and what the first
step took, or quotes the same machine's own earlier measurement).

    .venv/bin/python benchmarks/compile_time.py            # ~40 min on 2 shared cores
    .venv/bin/python benchmarks/compile_time.py --models inception_resnet_v1 --sizes 160 \
        --no-results                                        # a quick check
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
MODELS = ("inception_v4", "inception_resnet_v1", "inception_resnet_v2")
SIZES = (160, 299)
CONFIGS = {  # name -> (KERAS_BACKEND, jit_compile)
    "tf_xla": ("tensorflow", True),
    "tf": ("tensorflow", False),
    "jax": ("jax", True),
}
BATCH = 8
CLASSES = 5


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ---------------------------------------------------------------- worker (one config)

def _timed(fn) -> float:
    start = time.perf_counter()
    out = fn()
    # train_on_batch returns Python/NumPy values: the step has finished.
    del out
    return time.perf_counter() - start


def worker(model_name: str, size: int, jit: bool, steady: int, head: bool) -> dict:
    import keras
    import numpy as np

    from keras_inception.apps.benchmark import machine_description
    from keras_inception.train import recipes

    keras.utils.set_random_seed(0)
    load_start = load_average()
    start = time.perf_counter()
    model, base, head_layers = recipes.transfer_parts(model_name, CLASSES, size, None)
    recipes.unfreeze_top(model, model_name)
    build_s = time.perf_counter() - start
    # The fine-tuning stage's compile arguments (plan_stages(): learning rate / 10, cosine
    # decay).
    args = recipes._adam(recipes.BASE_LEARNING_RATE["transfer"] / 10, CLASSES, 2)(25)
    model.compile(jit_compile=jit, **args)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, size, size, 3)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, BATCH)]
    first = _timed(lambda: model.train_on_batch(x, y))
    steps = [_timed(lambda: model.train_on_batch(x, y)) for _ in range(steady)]
    step = statistics.median(steps)
    result = {
        "model": model_name, "image_size": size, "backend": keras.backend.backend(),
        "jit_compile_requested": jit, "jit_compile": bool(model.jit_compile),
        "batch_size": BATCH, "build_s": round(build_s, 2),
        "first_step_s": round(first, 2), "step_s": round(step, 3),
        "steps_s": [round(s, 3) for s in steps],
        "compile_s": round(first - step, 2), "img_per_s": round(BATCH / step, 2),
        "trainable_weights": len(model.trainable_weights),
        "machine": machine_description(),
        "load_average": [round(load_start, 2), round(load_average(), 2)],
    }
    if head:
        features = rng.normal(size=(BATCH * 4, base.output.shape[-1])).astype("float32")
        labels = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, BATCH * 4)]
        from keras_inception.train import feature_cache

        head_model = feature_cache.head_model(head_layers, features.shape[-1])
        head_model.compile(jit_compile=jit, **recipes._adam(
            recipes.BASE_LEARNING_RATE["transfer"], CLASSES)(25))
        result["head_first_step_s"] = round(
            _timed(lambda: head_model.train_on_batch(features, labels)), 3)
        result["head_step_s"] = round(statistics.median(
            _timed(lambda: head_model.train_on_batch(features, labels)) for _ in range(5)), 4)
        # Stage 2 on the cached activations below the unfrozen blocks: the top blocks
        # and the head, trained on activations at the cut.
        split = feature_cache.split_base(model, model_name)
        top_model = feature_cache.top_model(head_layers, split)
        top_model.compile(jit_compile=jit, **args)
        cut = rng.normal(size=(BATCH, *split.cut_shape)).astype("float32")
        result["top_first_step_s"] = round(_timed(lambda: top_model.train_on_batch(cut, y)), 3)
        result["top_step_s"] = round(statistics.median(
            _timed(lambda: top_model.train_on_batch(cut, y)) for _ in range(5)), 4)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


# ---------------------------------------------------------------- driver

def run_config(model_name: str, size: int, config: str, steady: int, timeout: float) -> dict:
    backend, jit = CONFIGS[config]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, __file__, "--worker", model_name, str(size), config,
           "--steady", str(steady)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model_name, "image_size": size, "config": config,
                "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"model": model_name, "image_size": size, "config": config,
                "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(config=config, process_wall_s=round(wall, 1))
    return result


def markdown(payload: dict) -> str:
    rows = payload["results"]
    when = payload["finished"]
    lines = [
        f"## Compile time of the fine-tuning step, with and without XLA ({when})", "",
        f"Machine: {payload['machine']}; JAX worker: {payload.get('jax_machine', 'n/a')}.",
        f"1-minute load average {payload['load_average_start']:.1f} at the start and "
        f"{payload['load_average_end']:.1f} at the end (2 CPUs shared with other jobs); "
        f"wall time of the whole run {payload['wall_s'] / 60:.0f} min.", "",
        f"Command: `{payload['command']}`", "",
        "Stage 2 of the `transfer` recipe (transfer model, top blocks unfrozen by "
        "`unfreeze_top`, BatchNorm frozen, Adam), batch 8, float32, random weights; one "
        "fresh subprocess per row. *first step*: wall time of the first `train_on_batch` "
        "after `compile()`; *step*: median of the later steps; *compile* = first step - "
        "step. *head*: the first step of stage 1 on cached features (dropout + Dense); "
        "*top*: stage 2 on cached activations (top blocks + head), first step and "
        "median step.", "",
        "| model | size | config | XLA | first step s | compile s | step s | img/s | "
        "head first step s | top first step s | top step s | peak RSS MiB | load avg |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['image_size']} | {r['config']} | | "
                         f"{r['error']} | | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['config']} | "
            f"{'yes' if r['jit_compile'] else 'no'} | {r['first_step_s']:.1f} | "
            f"{r['compile_s']:.1f} | {r['step_s']:.2f} | {r['img_per_s']:.2f} | "
            f"{r.get('head_first_step_s', float('nan')):.2f} | "
            f"{r.get('top_first_step_s', float('nan')):.2f} | "
            f"{r.get('top_step_s', float('nan')):.3f} | {r['peak_rss_mb']:,} | "
            f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |")
    lines += ["", "Cost of compile + N steps, relative to TensorFlow without XLA (`tf`), "
              "from the rows above: break-even steps = (compile_xla - compile_tf) / "
              "(step_tf - step_xla) (negative or n/a: one configuration wins at any length).",
              "", "| model | size | config | compile - tf compile s | step / tf step | "
              "break-even steps |", "|---|---:|---|---:|---:|---:|"]
    by_key = {(r["model"], r["image_size"], r["config"]): r for r in rows if "error" not in r}
    for (model, size, config), r in by_key.items():
        base = by_key.get((model, size, "tf"))
        if config == "tf" or base is None:
            continue
        gain = base["step_s"] - r["step_s"]
        extra = r["compile_s"] - base["compile_s"]
        even = f"{extra / gain:.0f}" if gain > 0 and extra > 0 else "n/a"
        lines.append(f"| {model} | {size} | {config} | {extra:+.1f} | "
                     f"{r['step_s'] / base['step_s']:.2f} | {even} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "SIZE", "CONFIG"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steady", type=int, default=None,
                        help="steady steps after the first (default 5 up to 160 px, 4 above)")
    parser.add_argument("--timeout", type=float, default=900, help="per configuration, s")
    parser.add_argument("--budget-min", type=float, default=40,
                        help="skip configurations that would not finish within this (min)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "compile_time.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="write no JSON / Markdown")
    args = parser.parse_args()

    if args.worker:
        model_name, size, config = args.worker
        result = worker(model_name, int(size), CONFIGS[config][1],
                        args.steady or (5 if int(size) <= 160 else 4), head=True)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from keras_inception.apps.benchmark import machine_description

    started = time.perf_counter()
    load_start = load_average()
    results = []
    # Small sizes first, every configuration of a model in turn (so that a change of
    # load hits all three alike); the configuration order rotates between models.
    order = [(size, model, args.configs[(i + j) % len(args.configs)])
             for size in sorted(args.sizes) for i, model in enumerate(args.models)
             for j in range(len(args.configs))]
    for size, model_name, config in order:
        elapsed = time.perf_counter() - started
        guess = _guess_wall(results, model_name, size, config)
        if elapsed + guess > args.budget_min * 60:
            print(f"skipped {model_name} {size} {config}: {elapsed / 60:.0f} min spent, "
                  f"about {guess / 60:.0f} min more needed", flush=True)
            results.append({"model": model_name, "image_size": size, "config": config,
                            "error": "skipped (time budget)"})
            continue
        steady = args.steady or (5 if size <= 160 else 4)
        result = run_config(model_name, size, config, steady, args.timeout)
        results.append(result)
        print(json.dumps(result), flush=True)
    payload = {
        "machine": machine_description(),
        "jax_machine": next((r["machine"] for r in results if r.get("backend") == "jax"), None),
        "command": "python benchmarks/compile_time.py " + " ".join(sys.argv[1:]),
        "load_average_start": load_start, "load_average_end": load_average(),
        "wall_s": round(time.perf_counter() - started, 1),
        "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "batch_size": BATCH, "results": results,
    }
    section = markdown(payload)
    print(section)
    if not args.no_results:
        from keras_inception.apps.benchmark import record_results

        record_results(args.json, payload, args.results, section)
    return 0


def _guess_wall(results: list[dict], model_name: str, size: int, config: str) -> float:
    """Wall time of a configuration, guessed from the same one at another size (scaled by
    image area), else from the slowest one measured so far."""
    done = [r for r in results if "process_wall_s" in r]
    same = [r for r in done if r["model"] == model_name and r["config"] == config]
    if same:
        r = same[-1]
        return r["process_wall_s"] * max(1.0, (size / r["image_size"]) ** 2)
    return max((r["process_wall_s"] for r in done), default=0.0)


if __name__ == "__main__":
    sys.exit(main())
