"""End-to-end time of `train` (transfer recipe) on flowers_sample, before and after the
feature cache, split into its phases.

For each image size, in one run and in alternating order, each in a fresh subprocess:

* `before`: the training app of another source tree (default: commit 8e93d82 checked
  out in /tmp/main_before, `git worktree add /tmp/main_before 8e93d82`): stage 1 runs
  the frozen backbone on augmented images every epoch;
* `after`: this tree's `keras_inception.train.train`, every setting at its default
  (`feature_views` 1 and `fine_tune_cache`: one backbone pass, then stage 1 trains the
  head on cached features and stage 2 the top blocks and head on cached activations;
  `jit` left to Keras, `jit_compile="auto"`);
* `inference`: one `predict` of the pooled backbone over the 200 training images (the
  evaluation crop, batch 32), twice: `cold` includes tracing the predict function,
  `warm` is the second pass.

The network starts from random no-top weights saved to a local file (speed does not
depend on their values; each tree saves its own, with its own builder). 5 head epochs
+ 2 fine-tuning epochs, batch 32, seed 0. A driver in each subprocess wraps
`keras.Model.fit` with a callback that timestamps the start of training, the end of
its first step, every epoch and the end, so that the run splits into:

* `setup`: data, model, weights (from `train()` to the first stage);
* `stage1`: the head stage (after: computing the cached features, then `fit` on them);
  `stage1_first_step`: its first step (trace / compile + one step);
* `stage2`: the fine-tuning stage (from the end of stage 1: saving, unfreezing,
  compiling, `fit`); `stage2_first_step`: its first step;
* `evaluation`: after the last `fit` (the best weights, evaluation on the val split,
  the report and plots).

Writes benchmarks/finetune.json and appends a section to benchmarks/RESULTS.md (the
acceptance check: stage 1 of 5 epochs at most 1.5x a single inference pass).

    .venv/bin/python benchmarks/finetune.py                     # 160 and 299 px, ~40 min
    .venv/bin/python benchmarks/finetune.py --sizes 160 --no-results
    keras-inception benchmark --finetune --finetune-sizes 160    # the same code
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BEFORE = "/tmp/main_before"
PHASES = ("setup", "stage1", "stage2", "evaluation")


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ---------------------------------------------------------------- in the subprocess

def _weights_file(model_name: str, size: int, folder: str, tree: str) -> str:
    """Random no-top weights of `model_name` at `size`, saved with this tree's builder
    (`tree`: "before" or "after", a file each)."""
    import keras

    from keras_inception.models import get_builder

    path = os.path.join(folder, f"{model_name}_{size}_notop_{tree}.weights.h5")
    if not os.path.isfile(path):
        keras.utils.set_random_seed(0)
        base = get_builder(model_name)(include_top=False, weights=None,
                                       input_shape=(size, size, 3), pooling="avg")
        base.save_weights(path)
    return path


def worker_train(variant: str, model_name: str, size: int, folder: str, head_epochs: int,
                 tune_epochs: int) -> dict:
    """Runs `train` of the tree on sys.path with timestamps; returns them and the report."""
    import keras

    import keras_inception

    weights = _weights_file(model_name, size, folder, variant)
    events: list[dict] = []
    t0 = time.perf_counter()

    def mark(event: str, **extra) -> None:
        events.append({"event": event, "t": round(time.perf_counter() - t0, 3), **extra})

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.first = True
            mark("train_begin")

        def on_train_batch_end(self, batch, logs=None):
            if self.first:
                self.first = False
                mark("first_step_end")

        def on_epoch_begin(self, epoch, logs=None):
            mark("epoch_begin", epoch=epoch + 1)

        def on_test_begin(self, logs=None):
            mark("validation_begin")

        def on_epoch_end(self, epoch, logs=None):
            mark("epoch_end", epoch=epoch + 1)

        def on_train_end(self, logs=None):
            mark("train_end")

    original_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [Timer()]
        mark("fit_call", model=self.name)
        try:
            return original_fit(self, *args, **kwargs)
        finally:
            mark("fit_return")

    keras.Model.fit = fit
    try:  # this tree's code
        from keras_inception.train import TrainConfig, feature_cache, train

        original_cache = feature_cache.FeatureCache.load_or_compute

        def load_or_compute(self, *args, **kwargs):
            mark("cache_begin")
            try:
                return original_cache(self, *args, **kwargs)
            finally:
                mark("cache_end", backbone_passes=self.backbone_passes)

        feature_cache.FeatureCache.load_or_compute = load_or_compute
    except ImportError:  # commit 8e93d82: keras_inception.training
        from keras_inception.training import TrainConfig, train
    config = TrainConfig(out=os.path.join(folder, f"run_{variant}_{size}"), model=model_name,
                         image_size=size, epochs=head_epochs + tune_epochs,
                         stage1_epochs=head_epochs, weights=weights, seed=0, verbose=2)
    t0 = time.perf_counter()
    mark("train_call")
    report = train(config)
    mark("train_return")
    return {"variant": variant, "tree": os.path.dirname(os.path.dirname(keras_inception.__file__)),
            "events": events, "accuracy": report.get("accuracy"),
            "train_seconds": report.get("train_seconds"), "stage1": report.get("stage1"),
            "phases": phases_of(events)}


def worker_inference(model_name: str, size: int, folder: str, batch_size: int = 32) -> dict:
    """One predict of the pooled backbone over the training images: cold, then warm."""
    from keras_inception.models import pooled_backbone
    from keras_inception.train import data as data_lib

    base = pooled_backbone(model_name, _weights_file(model_name, size, folder, "after"),
                           (size, size, 3))
    data = data_lib.load_data("flowers_sample", seed=0)
    ds = data_lib.make_pipeline(data.train, training=False, image_size=size,
                                num_classes=data.num_classes, batch_size=batch_size,
                                shuffle=False, seed=0)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        features = base.predict(ds, verbose=0)
        times.append(time.perf_counter() - start)
    return {"variant": "inference", "images": int(features.shape[0]),
            "cold_s": round(times[0], 2), "warm_s": round(times[1], 2)}


def phases_of(events: list[dict]) -> dict:
    """Phase durations (s) from the timestamps of one run (see the module docstring)."""
    def times(name):
        return [e["t"] for e in events if e["event"] == name]

    calls, returns = times("fit_call"), times("fit_return")
    begins, firsts = times("train_begin"), times("first_step_end")
    end = times("train_return")[0]
    start1 = min(times("cache_begin") + calls[:1])
    phases = {"setup": start1 - times("train_call")[0], "stage1": returns[0] - start1,
              "stage2": returns[1] - returns[0], "evaluation": end - returns[1],
              "total": end - times("train_call")[0],
              "stage1_first_step": firsts[0] - begins[0],
              "stage2_first_step": firsts[1] - begins[1],
              "stage1_fit": returns[0] - calls[0], "stage2_fit": returns[1] - calls[1]}
    cache = times("cache_begin"), times("cache_end")
    if cache[0]:
        phases["stage1_cache"] = cache[1][0] - cache[0][0]
    # Each epoch with its validation (the first one with its first step).
    phases["epoch_s"] = [round(b - a, 2) for a, b in zip(
        times("epoch_begin"), times("epoch_end"), strict=True)]
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in phases.items()}


# ---------------------------------------------------------------- driver

def _run_worker(kind: str, tree: str, model_name: str, size: int, folder: str,
                head_epochs: int, tune_epochs: int, timeout: float, log) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=tree)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, model_name,
           str(size), folder, "--head-epochs", str(head_epochs), "--tune-epochs",
           str(tune_epochs)]
    load = load_average()
    start = time.perf_counter()
    # cwd outside both trees: the tree on PYTHONPATH is the one imported.
    proc = subprocess.run(cmd, env=env, cwd=folder, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    log_path = os.path.join(folder, f"{kind}_{size}.log")
    with open(log_path, "w") as f:
        f.write(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        log(f"{kind} {size}: failed (exit {proc.returncode}), log {log_path}: {tail}")
        return {"variant": kind, "image_size": size, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(image_size=size, process_wall_s=round(wall, 1),
                  load_average=[round(load, 2), round(load_average(), 2)],
                  notices=[line for line in proc.stdout.splitlines()
                           if line.startswith(("compiling the training step", "first step took"))])
    log(f"{kind} {size}: {json.dumps({k: v for k, v in result.items() if k != 'events'})}")
    return result


def run(model_name: str = "inception_resnet_v2", sizes=(160, 299), before: str = DEFAULT_BEFORE,
        head_epochs: int = 5, tune_epochs: int = 2, timeout: float = 3600,
        folder: str | None = None, log=print) -> dict:
    """Measures every size; returns the JSON payload (see `markdown`)."""
    if not os.path.isdir(os.path.join(before, "keras_inception")):
        raise FileNotFoundError(
            f"{before} holds no keras_inception tree; check the code to compare against out "
            f"there, e.g. `git worktree add {before} 8e93d82`.")
    folder = folder or tempfile.mkdtemp(prefix="finetune_bench_")
    log(f"runs, weights files and the log of every subprocess: {folder}")
    trees = {"before": os.path.abspath(before), "after": str(REPO), "inference": str(REPO)}
    started, load_start = time.perf_counter(), load_average()
    results = []
    for i, size in enumerate(sizes):
        # Alternate which tree goes first, so that a drift of load hits both alike.
        order = ("before", "after", "inference") if i % 2 == 0 else ("after", "before",
                                                                     "inference")
        for kind in order:
            results.append(_run_worker(kind, trees[kind], model_name, size, folder,
                                       head_epochs, tune_epochs, timeout, log))
    from keras_inception.apps.benchmark import machine_description

    return {"machine": machine_description(), "model": model_name, "data": "flowers_sample",
            "head_epochs": head_epochs, "tune_epochs": tune_epochs, "batch_size": 32,
            "before_tree": trees["before"], "folder": folder,
            "load_average_start": load_start, "load_average_end": load_average(),
            "wall_s": round(time.perf_counter() - started, 1),
            "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "results": results, "summary": summarize(results)}


def summarize(results: list[dict]) -> list[dict]:
    """Per size: phases before / after, end-to-end ratio, stage 1 / inference pass."""
    rows = []
    for size in sorted({r["image_size"] for r in results}):
        by = {r["variant"]: r for r in results if r["image_size"] == size and "error" not in r}
        row: dict = {"image_size": size}
        for variant in ("before", "after"):
            if variant in by:
                row[variant] = by[variant]["phases"]
                row[f"{variant}_accuracy"] = by[variant]["accuracy"]
        if "before" in by and "after" in by:
            row["speedup_end_to_end"] = round(
                by["before"]["phases"]["total"] / by["after"]["phases"]["total"], 2)
            row["speedup_stage1"] = round(
                by["before"]["phases"]["stage1"] / by["after"]["phases"]["stage1"], 2)
        if "inference" in by and "after" in by:
            inf = by["inference"]
            row["inference_cold_s"], row["inference_warm_s"] = inf["cold_s"], inf["warm_s"]
            row["stage1_over_inference_cold"] = round(
                by["after"]["phases"]["stage1"] / inf["cold_s"], 2)
            row["stage1_over_inference_warm"] = round(
                by["after"]["phases"]["stage1"] / inf["warm_s"], 2)
        rows.append(row)
    return rows


def markdown(payload: dict) -> str:
    lines = [
        f"## Fine-tuning end to end, before and after the feature cache ({payload['finished']})",
        "", f"Machine: {payload['machine']}. 1-minute load average "
        f"{payload['load_average_start']:.1f} at the start and "
        f"{payload['load_average_end']:.1f} at the end (2 CPUs shared with other jobs); "
        f"whole run {payload['wall_s'] / 60:.0f} min.", "",
        f"Command: `{payload['command']}`", "",
        f"`train` of {payload['model']} on flowers_sample (200 train / 50 val images), "
        f"transfer recipe, {payload['head_epochs']} head epochs + {payload['tune_epochs']} "
        "fine-tuning epochs, batch 32, random no-top weights from a local file; *before*: "
        f"commit 8e93d82 ({payload['before_tree']}), *after*: this tree with its defaults. "
        "Each run in a fresh process, the two alternating; seconds from timestamps of "
        "`fit`'s callbacks (`benchmarks/finetune.py`). *first step*: trace / compile + "
        "one step, part of its stage.", "",
        "| size | phase | before s | after s | before / after |", "|---:|---|---:|---:|---:|",
    ]
    names = [("setup", "setup (data, model, weights)"), ("stage1", "stage 1 (head)"),
             ("stage1_first_step", "  of which first step"),
             ("stage1_cache", "  of which feature cache"),
             ("stage2", "stage 2 (fine-tune)"), ("stage2_first_step", "  of which first step"),
             ("evaluation", "evaluation"), ("total", "**end to end**")]
    for row in payload["summary"]:
        before, after = row.get("before", {}), row.get("after", {})
        for key, label in names:
            b, a = before.get(key), after.get(key)
            ratio = f"{b / a:.2f}" if b and a else ""
            lines.append(f"| {row['image_size']} | {label} | "
                         f"{'' if b is None else f'{b:.1f}'} | {'' if a is None else f'{a:.1f}'}"
                         f" | {ratio} |")
    lines += ["", "Acceptance: stage 1 (5 epochs, after) / one inference pass of the backbone "
              "over the 200 training images (predict, batch 32; cold = first call, with "
              "tracing; warm = second call).", "",
              "| size | stage 1 after s | inference cold s | inference warm s | "
              "stage 1 / cold | stage 1 / warm | <= 1.5? | val accuracy before / after |",
              "|---:|---:|---:|---:|---:|---:|---|---|"]
    for row in payload["summary"]:
        if "inference_cold_s" not in row:
            continue
        ok = "yes" if row["stage1_over_inference_warm"] <= 1.5 else (
            "cold only" if row["stage1_over_inference_cold"] <= 1.5 else "no")
        lines.append(
            f"| {row['image_size']} | {row['after']['stage1']:.1f} | "
            f"{row['inference_cold_s']:.1f} | {row['inference_warm_s']:.1f} | "
            f"{row['stage1_over_inference_cold']:.2f} | {row['stage1_over_inference_warm']:.2f}"
            f" | {ok} | {row.get('before_accuracy', float('nan')):.2f} / "
            f"{row.get('after_accuracy', float('nan')):.2f} |")
    errors = [r for r in payload["results"] if "error" in r]
    for r in errors:
        lines.append(f"\nNot measured: {r['variant']} at {r['image_size']} px: {r['error']}")
    notices = [(r["image_size"], n) for r in payload["results"] if r.get("variant") == "after"
               for n in r.get("notices", [])]
    if notices:
        lines += ["", "What the after runs printed around their first steps:", ""]
        lines += [f"* {size} px: `{text}`" for size, text in notices]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Options of the benchmark (`prefix`: "finetune-" on the `benchmark` command)."""
    parser.add_argument(f"--{prefix}sizes", nargs="+", type=int, default=[160, 299],
                        help="image sizes (default 160 299)")
    parser.add_argument("--before", default=DEFAULT_BEFORE,
                        help="source tree of the code to compare with (default "
                             f"{DEFAULT_BEFORE}: `git worktree add {DEFAULT_BEFORE} 8e93d82`)")
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--tune-epochs", type=int, default=2)


def main_from_args(args: argparse.Namespace, model_name: str = "inception_resnet_v2") -> int:
    """Runs the benchmark for parsed options; prints and (optionally) records the tables."""
    sizes = getattr(args, "finetune_sizes", None) or args.sizes
    payload = run(model_name, sizes, args.before, args.head_epochs, args.tune_epochs,
                  log=lambda line: print(line, flush=True))
    section = markdown(payload)
    print(section)
    if getattr(args, "json", None):
        from keras_inception.files import write_json_atomic

        write_json_atomic(args.json, payload)
    if getattr(args, "results", None):
        from keras_inception.apps.benchmark import append_results

        append_results(args.results, section)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "MODEL", "SIZE", "FOLDER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--model", default="inception_resnet_v2")
    add_arguments(parser)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "finetune.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="write no JSON / Markdown")
    args = parser.parse_args()
    if args.worker:
        kind, model_name, size, folder = args.worker
        if kind == "inference":
            result = worker_inference(model_name, int(size), folder)
        else:
            result = worker_train(kind, model_name, int(size), folder, args.head_epochs,
                                  args.tune_epochs)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.no_results:
        args.json = args.results = None
    return main_from_args(args, args.model)


if __name__ == "__main__":
    sys.exit(main())
