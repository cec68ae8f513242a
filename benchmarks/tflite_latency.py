"""TFLite latency, size and flowers accuracy of float32 / float16 / dynamic_int8 / int8 exports.

For each model (default: Inception-ResNet-v2 and Inception-v4):
- latency per image at 299x299 (1000 classes) with 1 and 2 LiteRT threads for the four
  TFLite variants, against the Keras model on the TensorFlow backend; file sizes;
- accuracy on the tf_flowers_small val split of the four variants of the same
  architecture trained at a small size (default 80x80) with the recipe of the tests:
  BatchNorm statistics estimated on the data, Dense head trained on the random
  backbone (no pretrained weights exist here). These accuracies measure what
  quantization costs, not what the architecture can reach.

Writes a JSON file and appends a Markdown section to benchmarks/RESULTS.md.
Usage: .venv/bin/python benchmarks/tflite_latency.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_inception as ki  # noqa: E402
from keras_inception import export  # noqa: E402
from keras_inception.lite import Classifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# The training recipe lives with the tests that check quantized accuracy.
from test_export import fit_head_on_random_backbone, load_flowers_split  # noqa: E402

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace, save) -> dict:
    flowers = Path(args.flowers)
    image = load_flowers_split(flowers, "val", args.size)[0][:1].astype(np.uint8)
    train_x, train_y = load_flowers_split(flowers, "train", args.flowers_size)
    val_x, val_y = load_flowers_split(flowers, "val", args.flowers_size)
    x = ki.preprocess_input(image)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.keep or tmp)
        (tmp / "small").mkdir(parents=True, exist_ok=True)
        for name in args.models:
            builder = ki.get_builder(name)
            print(f"{name}: latency at {args.size}x{args.size}", flush=True)
            model = builder(weights=None, input_shape=(args.size, args.size, 3))
            calibration = export.calibration_dataset(flowers / "train", args.size,
                                                     count=args.calibration)
            paths = export_variants(model, tmp, calibration)
            fns = {"keras": lambda m=model: m.predict_on_batch(x)}
            for variant, path in paths.items():
                for threads in args.threads:
                    clf = Classifier(path, num_threads=threads)
                    fns[f"{variant}/{threads}"] = lambda c=clf: c.predict(image)
            timing = interleaved_ms(fns, args.repeats)
            row = {"keras_ms": timing["keras"][0], "keras_min_ms": timing["keras"][1],
                   "variants": {}}
            for variant, path in paths.items():
                entry = {"size_mb": os.path.getsize(path) / 1e6}
                for threads in args.threads:
                    entry[f"ms_{threads}t"], entry[f"min_ms_{threads}t"] = timing[
                        f"{variant}/{threads}"]
                row["variants"][variant] = entry
            del model
            keras.backend.clear_session()
            results[name] = row
            if not args.accuracy:
                save(results)
                continue

            print(f"{name}: flowers accuracy at {args.flowers_size}x{args.flowers_size}", flush=True)
            keras.utils.set_random_seed(0)
            small = builder(weights=None, input_shape=(args.flowers_size,) * 2 + (3,), classes=5)
            fit_head_on_random_backbone(small, train_x, train_y, epochs=args.head_epochs)
            probs = small.predict(ki.preprocess_input(val_x), batch_size=50, verbose=0)
            row["keras_accuracy"] = float(np.mean(probs.argmax(-1) == val_y))
            small_cal = export.calibration_dataset(flowers / "train", args.flowers_size,
                                                   count=args.calibration)
            for variant, path in export_variants(small, tmp / "small", small_cal).items():
                top1 = Classifier(path).predict(val_x).argmax(-1)
                row["variants"][variant]["accuracy"] = float(np.mean(top1 == val_y))
                row["variants"][variant]["agreement"] = float(np.mean(top1 == probs.argmax(-1)))
            del small
            keras.backend.clear_session()
            results[name] = row
            save(results)  # a slow run interrupted later still keeps the finished models
            print(json.dumps(row, indent=1), flush=True)
    return results


def markdown(report: dict) -> str:
    threads = report["config"]["threads"]
    head = ["model", "variant", "size MB"] + [f"ms/img {t} thr" for t in threads]
    head += ["x vs TFLite f32 (1 thr)", "flowers acc", "agree w/ Keras"]
    lines = [
        f"## TFLite latency, size and quantized accuracy ({report['date']})",
        "",
        f"Machine: {report['machine']}. Shared with other jobs while measuring, so absolute "
        "times are noisy; compare ratios within this table. Latency: median of "
        f"{report['config']['repeats']} single-image runs (min in parentheses where recorded) "
        f"at {report['config']['size']}x"
        f"{report['config']['size']} (1000 classes, random weights; speed does not depend on "
        "them). Keras: `predict_on_batch` on the TensorFlow backend, TF's default threads. "
        f"Accuracy: tf_flowers_small val (200 images) of the same architecture at "
        f"{report['config']['flowers_size']}x{report['config']['flowers_size']} with "
        "BatchNorm statistics from the data and a head trained for "
        f"{report['config']['head_epochs']} epochs on a random backbone "
        "(no pretrained weights here): it measures what quantization costs, not what the "
        f"network can reach. int8 calibrated on {report['config']['calibration']} train images.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, row in report["results"].items():
        # min over runs where measured (least disturbed by other jobs), else the median
        key = "min_ms_{}t" if "min_ms_1t" in row["variants"]["float32"] else "ms_{}t"
        base = row["variants"]["float32"][key.format(threads[0])]
        keras_min = f" ({row['keras_min_ms']:.0f})" if "keras_min_ms" in row else ""
        lines.append(f"| {name} | Keras (TF) | | {row['keras_ms']:.0f}{keras_min}, TF threads |"
                     + " |" * (len(threads) - 1)
                     + f" | {row.get('keras_accuracy', float('nan')):.3f} | |")
        for variant, v in row["variants"].items():
            cells = [name, variant, f"{v['size_mb']:.1f}"]
            cells += [f"{v[f'ms_{t}t']:.0f}" + (f" ({v[f'min_ms_{t}t']:.0f})"
                                                 if f"min_ms_{t}t" in v else "") for t in threads]
            cells += [f"{base / v[key.format(threads[0])]:.2f}"]
            cells += [f"{v[k]:.3f}" if k in v else "not run" for k in ("accuracy", "agreement")]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["inception_resnet_v2", "inception_v4"])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--flowers-size", type=int, default=80)
    parser.add_argument("--keep", default=None,
                        help="directory to keep the exported files in (default: temporary)")
    parser.add_argument("--head-epochs", type=int, default=40)
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure flowers accuracy (--no-accuracy: latency only)")
    parser.add_argument("--flowers", default=str(REPO.parent / "shared/datasets/tf_flowers_small"))
    parser.add_argument("--json", default=str(REPO / "benchmarks/tflite_latency.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks/RESULTS.md"))
    args = parser.parse_args()

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
                   f"Keras {keras.__version__}",
        "config": {k: getattr(args, k) for k in
                   ("size", "threads", "repeats", "calibration", "flowers_size", "head_epochs")},
    }

    def save(results: dict) -> None:
        Path(args.json).write_text(json.dumps({**report, "results": results}, indent=1) + "\n")

    report["results"] = run(args, save)
    with open(args.results, "a") as f:
        f.write("\n" + markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
