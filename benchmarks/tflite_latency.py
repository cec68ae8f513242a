"""TFLite latency, size and flowers accuracy of float32 / float16 / dynamic_int8 / int8 exports.

For each model (default: Inception-ResNet-v2 and Inception-v4):
- latency per image at 299x299 (1000 classes) with 1 and 2 LiteRT threads for the four
  TFLite variants, against the Keras model on the TensorFlow backend; file sizes; and,
  at 1 thread, LiteRT's built-in kernels without the XNNPACK delegate, which shows how
  much of the int8 gain depends on the CPU's integer dot-product instructions;
- accuracy on the tf_flowers_small val split of the four variants of the same
  architecture trained at a small size (default 80x80). No pretrained weights are
  reachable here, so the network is trained from scratch for a few epochs (`--recipe
  train`, the default) or, faster, a head is fitted on the random backbone as the tests
  do (`--recipe head`; Inception-v4's random features stay at chance level that way).
  These accuracies measure what quantization costs, not what the architecture can reach.

Writes a JSON file and appends a Markdown section to benchmarks/RESULTS.md.
Usage: .venv/bin/python benchmarks/tflite_latency.py [--repeats 7] [--no-latency]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# tests/support/: what the tests, benchmarks and notebooks share (never installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from support.random_backbone import (  # noqa: E402
    estimate_batchnorm_statistics,
    fit_head_on_random_backbone,
    load_flowers_split,
)

import keras_inception as ki  # noqa: E402
from keras_inception import export  # noqa: E402
from keras_inception.apps.benchmark import (  # noqa: E402
    cpu_simd_flags,
    load_average,
    machine_description,
)
from keras_inception.export.runtime import Classifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


@functools.cache
def flowers_split(root: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A split of the flowers set, loaded once per run for all models."""
    return load_flowers_split(root, split, size)


def export_variants(model, out: Path, calibration) -> dict[str, str]:
    paths = {}
    for name in VARIANTS:
        t0 = time.perf_counter()
        paths[name] = export.export_tflite(
            model, out / f"{model.name}_{name}.tflite",
            quantization=None if name == "float32" else name,
            representative_data=calibration if name == "int8" else None,
        )
        print(f"  exported {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def interleaved_ms(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, min) milliseconds per call of each function. Calls are interleaved
    round-robin so that load from other jobs on a shared CPU hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up: allocation, delegate preparation, tf.function tracing
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(1000 * (time.perf_counter() - t0))
    return {key: (statistics.median(t), min(t)) for key, t in times.items()}




def train_from_scratch(model: keras.Model, images: np.ndarray, labels: np.ndarray, *,
                       epochs: int, learning_rate: float = 5e-4, seed: int = 0) -> None:
    """Train the whole network (no pretrained weights here), then set the BatchNorm
    moving statistics from one training-mode pass over 200 train images: a few hundred
    steps are too few for the moving averages to catch up with the weights."""
    keras.utils.set_random_seed(seed)
    x = ki.preprocess_input(images)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, labels, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    estimate_batchnorm_statistics(model, x, seed=seed)


def measure_latency(name: str, args: argparse.Namespace, out: Path) -> dict:
    flowers = Path(args.flowers)
    image = flowers_split(flowers, "val", args.size)[0][:1].astype(np.uint8)
    x = ki.preprocess_input(image)
    print(f"{name}: latency at {args.size}x{args.size}", flush=True)
    model = ki.get_builder(name)(weights=None, input_shape=(args.size, args.size, 3))
    calibration = export.calibration_dataset(flowers / "train", args.size, count=args.calibration)
    paths = export_variants(model, out, calibration)
    fns = {"keras": lambda m=model: m.predict_on_batch(x)}
    for variant, path in paths.items():
        for threads in args.threads:
            clf = Classifier(path, num_threads=threads)
            fns[f"{variant}/{threads}"] = lambda c=clf: c.predict(image)
        if args.builtin_kernels:
            clf = Classifier(path, num_threads=1, delegates=False)
            fns[f"{variant}/builtin"] = lambda c=clf: c.predict(image)
    timing = interleaved_ms(fns, args.repeats)
    row = {"keras_ms": timing["keras"][0], "min_keras_ms": timing["keras"][1], "variants": {}}
    for variant, path in paths.items():
        entry = {"size_mb": os.path.getsize(path) / 1e6}
        for threads in args.threads:
            entry[f"ms_{threads}t"], entry[f"min_ms_{threads}t"] = timing[f"{variant}/{threads}"]
        if args.builtin_kernels:
            entry["ms_builtin"], entry["min_ms_builtin"] = timing[f"{variant}/builtin"]
        row["variants"][variant] = entry
    del model
    keras.backend.clear_session()
    return row


def measure_accuracy(name: str, args: argparse.Namespace, out: Path) -> dict:
    flowers = Path(args.flowers)
    train_x, train_y = flowers_split(flowers, "train", args.flowers_size)
    val_x, val_y = flowers_split(flowers, "val", args.flowers_size)
    print(f"{name}: flowers accuracy at {args.flowers_size}x{args.flowers_size} "
          f"({args.recipe} recipe)", flush=True)
    keras.utils.set_random_seed(0)
    model = ki.get_builder(name)(weights=None, input_shape=(args.flowers_size,) * 2 + (3,),
                                 classes=5)
    t0 = time.perf_counter()
    if args.recipe == "train":
        train_from_scratch(model, train_x, train_y, epochs=args.train_epochs)
    else:
        fit_head_on_random_backbone(model, train_x, train_y, epochs=args.head_epochs)
    row = {"train_s": time.perf_counter() - t0, "variants": {}}
    probs = model.predict(ki.preprocess_input(val_x), batch_size=50, verbose=0)
    row["keras_accuracy"] = float(np.mean(probs.argmax(-1) == val_y))
    calibration = export.calibration_dataset(flowers / "train", args.flowers_size,
                                             count=args.calibration)
    for variant, path in export_variants(model, out, calibration).items():
        top1 = Classifier(path).predict(val_x).argmax(-1)
        row["variants"][variant] = {
            "size_mb": os.path.getsize(path) / 1e6,
            "accuracy": float(np.mean(top1 == val_y)),
            "agreement": float(np.mean(top1 == probs.argmax(-1))),
        }
    del model
    keras.backend.clear_session()
    return row


def run(args: argparse.Namespace, save) -> dict:
    results: dict = {"latency": {}, "accuracy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.keep or tmp)
        (tmp / "small").mkdir(parents=True, exist_ok=True)
        for name in args.models:
            if args.latency:
                results["latency"][name] = measure_latency(name, args, tmp)
                save(results)
            if args.accuracy:
                results["accuracy"][name] = measure_accuracy(name, args, tmp / "small")
                save(results)  # a slow run interrupted later still keeps the finished models
                print(json.dumps(results["accuracy"][name], indent=1), flush=True)
    return results


def markdown(report: dict) -> str:
    config = report["config"]
    threads = config["threads"]
    builtin = config.get("builtin_kernels", False)
    load = report.get("load_average")
    load_text = (f"1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end "
                 f"on {report['cpus']} CPUs" if load else "load not recorded")
    lines = [
        f"## TFLite latency, size and quantized accuracy ({report['date']})",
        "",
        f"Machine: {report['machine']}; SIMD: {', '.join(report.get('simd', [])) or 'unknown'}; "
        f"{load_text}.",
        "",
    ]

    def ms(v: dict, key: str) -> str:
        low = f" ({v['min_' + key]:.0f})" if "min_" + key in v else ""
        return f"{v[key]:.0f}{low}"

    if report["results"]["latency"]:
        head = ["model", "variant", "size MB"] + [f"ms/img {t} thr" for t in threads]
        head += ["ms/img 1 thr, no XNNPACK"] if builtin else []
        head += ["x vs TFLite f32 (1 thr)"]
        lines += [
            f"Latency: median of {config['repeats']} single-image runs, calls interleaved "
            f"across variants (min in parentheses), at {config['size']}x{config['size']} "
            "(1000 classes, random weights; speed does not depend on them). Keras: "
            "`predict_on_batch` on the TensorFlow backend, TF's default threads. LiteRT uses "
            "its default XNNPACK delegate except in the \"no XNNPACK\" column. int8 "
            f"calibrated on {config['calibration']} flowers train images.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for name, row in report["results"]["latency"].items():
            base = row["variants"]["float32"][f"ms_{threads[0]}t"]  # ratios of medians
            lines.append(f"| {name} | Keras (TF) | | {ms(row, 'keras_ms')}, TF threads |"
                         + " |" * (len(threads) - 1 + builtin) + " |")
            for variant, v in row["variants"].items():
                cells = [name, variant, f"{v['size_mb']:.1f}"]
                cells += [ms(v, f"ms_{t}t") for t in threads]
                cells += [ms(v, "ms_builtin")] if builtin else []
                cells += [f"{base / v[f'ms_{threads[0]}t']:.2f}"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if report["results"]["accuracy"]:
        recipe = (
            f"the whole network trained from scratch for {config['train_epochs']} epochs "
            "(Adam 5e-4, batch 32), then BatchNorm statistics re-estimated on 200 train images"
            if config.get("recipe") == "train" else
            "BatchNorm statistics from the data and a head trained for "
            f"{config['head_epochs']} epochs on the random backbone"
        )
        size = config["flowers_size"]
        lines += [
            f"Quantized accuracy: tf_flowers_small val (200 images, 5 classes, chance 0.20) of "
            f"each architecture at {size}x{size}, {recipe} (no pretrained weights are "
            "reachable here): it measures what quantization costs, not what the network can "
            f"reach. int8 calibrated on {config['calibration']} train images. Agreement: "
            "top-1 equal to the Keras model's.",
            "",
            "| model | variant | size MB | flowers val acc | drop vs Keras (points) "
            "| top-1 agreement with Keras |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in report["results"]["accuracy"].items():
            keras_acc = row["keras_accuracy"]
            lines.append(f"| {name} | Keras (TF) | | {keras_acc:.3f} | | |")
            for variant, v in row["variants"].items():
                lines.append(f"| {name} | {variant} | {v['size_mb']:.1f} | {v['accuracy']:.3f} "
                             f"| {100 * (keras_acc - v['accuracy']):+.1f} | {v['agreement']:.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["inception_resnet_v2", "inception_v4"])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--flowers-size", type=int, default=80)
    parser.add_argument("--keep", default=None,
                        help="directory to keep the exported files in (default: temporary)")
    parser.add_argument("--recipe", choices=("train", "head"), default="train",
                        help="flowers model: train the whole network from scratch, or fit a "
                        "head on the random backbone (fast, but chance level for Inception-v4)")
    parser.add_argument("--train-epochs", type=int, default=6)
    parser.add_argument("--head-epochs", type=int, default=100)
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="measure latency at --size (--no-latency: accuracy only)")
    parser.add_argument("--builtin-kernels", action=argparse.BooleanOptionalAction, default=True,
                        help="also time LiteRT's built-in kernels without XNNPACK (1 thread)")
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure flowers accuracy (--no-accuracy: latency only)")
    parser.add_argument("--flowers", default=str(REPO.parent / "shared/datasets/tf_flowers_small"))
    parser.add_argument("--json", default=str(REPO / "benchmarks/tflite_latency.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks/RESULTS.md"))
    args = parser.parse_args()

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "cpus": os.cpu_count(),
        "simd": cpu_simd_flags(),
        "config": {k: getattr(args, k) for k in
                   ("size", "threads", "repeats", "calibration", "flowers_size", "head_epochs",
                    "builtin_kernels", "recipe", "train_epochs")},
    }
    load_at_start = load_average()

    def save(results: dict) -> None:
        Path(args.json).write_text(json.dumps({**report, "results": results}, indent=1) + "\n")

    report["results"] = run(args, save)
    report["load_average"] = [load_at_start, load_average()]
    with open(args.results, "a") as f:
        f.write("\n" + markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
