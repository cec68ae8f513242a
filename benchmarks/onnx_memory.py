"""Peak memory (RSS) and wall time of the ONNX export, with and without `lean_tf2onnx`.

For each network it builds the classifier with random weights (`weights=None`,
`--classes` outputs, `--image-size` px) in a fresh subprocess and runs
`keras_inception.export.export_onnx` on it (tf2onnx conversion, then the onnxruntime
check against Keras), recording:

* `rss_before_gib`: the process's RSS after TensorFlow is imported and the model built;
* `peak_rss_gib`: the process's peak RSS (`ru_maxrss`) at the end of the export: what
  the machine must have free to export;
* `export_s`: the wall time of `export_onnx`;
* `weights_gib`: the float32 size of the weights (4 bytes a parameter), and the
  estimate that `keras-inception export --format onnx` prints before converting
  (`keras_inception.export.onnx.onnx_memory_estimate`), to compare with the peak.

Modes: `lean` (the package as it is: `keras_inception._compat.lean_tf2onnx` around the
conversion) and, with `--plain`, `plain` (that context manager replaced by a no-op:
tf2onnx as released, about 50x the weights; needs ~11 GiB free for IR-v2).

Appends a section to benchmarks/RESULTS.md (`--no-results`: print only).

    .venv/bin/python benchmarks/onnx_memory.py                    # IR-v2 at 75 px, ~1 min
    .venv/bin/python benchmarks/onnx_memory.py --plain \\
        --models inception_resnet_v1 inception_resnet_v2          # before/after, ~5 min
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
MODES = ("lean", "plain")


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- worker (one export)

def worker(model_name: str, size: int, classes: int, mode: str) -> dict:
    import contextlib

    from keras_inception import _compat, export
    from keras_inception.apps.benchmark import machine_description
    from keras_inception.export.onnx import onnx_memory_estimate
    from keras_inception.models import get_builder

    if mode == "plain":
        _compat.lean_tf2onnx = contextlib.nullcontext
    model = get_builder(model_name)(weights=None, input_shape=(size, size, 3), classes=classes)
    rss_before = _rss_bytes()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export.export_onnx(model, os.path.join(folder, "model.onnx"))
        export_s = time.perf_counter() - start
        onnx_bytes = os.path.getsize(os.path.join(folder, "model.onnx"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "model": model_name, "image_size": size, "classes": classes, "mode": mode,
        "parameters": model.count_params(),
        "weights_gib": round(model.count_params() * 4 / GIB, 3),
        "estimate_gib": round(onnx_memory_estimate(model) / GIB, 2),
        "onnx_file_gib": round(onnx_bytes / GIB, 3),
        "rss_before_gib": round(rss_before / GIB, 2),
        "peak_rss_gib": round(peak / GIB, 2),
        "export_s": round(export_s, 1),
        "machine": machine_description(),
    }


# ---------------------------------------------------------------- driver

def run_one(model_name: str, size: int, classes: int, mode: str, timeout: float) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--worker", model_name, str(size), str(classes), mode]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model_name, "mode": mode, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"model": model_name, "mode": mode,
                "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def markdown(results: list[dict], args: argparse.Namespace, loads: tuple[float, float]) -> str:
    machine = next((r["machine"] for r in results if "machine" in r), "unknown")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"## ONNX export: peak memory ({stamp})", "",
        f"Machine: {machine}. {os.cpu_count()} CPUs shared with other jobs; 1-minute load "
        f"average {loads[0]:.1f} at the start and {loads[1]:.1f} at the end.", "",
        f"Command: `{' '.join(['onnx_memory.py', *sys.argv[1:]])}`", "",
        "`export_onnx` of a classifier with random weights in a fresh process (tf2onnx "
        "conversion, then the onnxruntime check); peak RSS of the whole process (TensorFlow "
        "and the model included). *lean*: `keras_inception._compat.lean_tf2onnx` around the "
        "conversion (the package); *plain*: tf2onnx as released. *estimate*: what "
        "`keras-inception export --format onnx` announces.", "",
        "| model | px | classes | mode | weights GiB | RSS before GiB | peak RSS GiB "
        "| estimate GiB | export s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | | | {r['mode']} | {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['classes']} | {r['mode']} | "
            f"{r['weights_gib']:.3f} | {r['rss_before_gib']:.2f} | **{r['peak_rss_gib']:.2f}** | "
            f"{r['estimate_gib']:.2f} | {r['export_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "SIZE", "CLASSES", "MODE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["inception_resnet_v2"])
    parser.add_argument("--image-size", type=int, default=75)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--plain", action="store_true",
                        help="also measure tf2onnx as released (about 11 GiB for IR-v2)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per export")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="print, append nothing")
    args = parser.parse_args()
    if args.worker:
        model_name, size, classes, mode = args.worker
        result = worker(model_name, int(size), int(classes), mode)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    loads = [load_average()]
    results = []
    for model_name in args.models:
        for mode in MODES if args.plain else MODES[:1]:
            result = run_one(model_name, args.image_size, args.classes, mode, args.timeout)
            print(json.dumps(result), flush=True)
            results.append(result)
    loads.append(load_average())
    section = markdown(results, args, (loads[0], loads[1]))
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_results:
        from keras_inception.apps.benchmark import append_results

        append_results(args.results, section)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
