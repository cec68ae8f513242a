"""Wall time of the SavedModel and TFLite exports, against Keras' own exports.

In one process, on one classifier with random weights, it alternates round after
round (so that a change in load hits every candidate):

* `keras_saved_model`: Keras' `ExportArchive` tracking the model (what
  `model.export(format="tf_saved_model")` writes), without reloading it;
* `saved_model`: `keras_inception.export.export_saved_model` (an archive tracking only
  the variables the endpoint uses, then the reload and the comparison with Keras);
* `keras_litert`: Keras' `model.export(format="litert")` (builtin ops only);
* `tflite`: `keras_inception.export.export_tflite` (float32, with its check against Keras).

Figures are the medians of the rounds; the ratio column divides Keras' time by the
package's for the same artifact (above 1: the package is faster), both measured in this
run, so the machine's speed cancels out.

    .venv/bin/python benchmarks/export_time.py                  # IR-v2 at 75 px, ~5 min
    .venv/bin/python benchmarks/export_time.py --rounds 1 --no-results
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = (("keras_saved_model", "saved_model"), ("keras_litert", "tflite"))


def candidates(model, spec) -> dict:
    """Name -> function(folder) that writes one artifact into `folder`."""
    import keras
    import tensorflow as tf

    from keras_inception import export

    def keras_saved_model(folder):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False),
                             input_signature=[spec])
        archive.write_out(os.path.join(folder, "keras_sm"), verbose=False)

    def keras_litert(folder):
        model.export(os.path.join(folder, "keras.tflite"), format="litert", verbose=False,
                     input_signature=[tf.TensorSpec([1, *spec.shape[1:]], tf.float32)],
                     target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})

    return {
        "keras_saved_model": keras_saved_model,
        "saved_model": lambda folder: export.export_saved_model(model,
                                                                os.path.join(folder, "sm")),
        "keras_litert": keras_litert,
        "tflite": lambda folder: export.export_tflite(model, os.path.join(folder, "m.tflite")),
    }


def measure(model_name: str, size: int, rounds: int) -> dict[str, list[float]]:
    import tensorflow as tf

    from keras_inception.models import get_builder

    model = get_builder(model_name)(weights=None, input_shape=(size, size, 3))
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
    runs = candidates(model, spec)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(rounds):
        for name, run in runs.items():
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                run(folder)
                times[name].append(time.perf_counter() - start)
            print(f"round {round_index + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    return times


def markdown(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    from keras_inception.apps.benchmark import machine_description

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"## Export time against Keras' exports ({stamp})", "",
        f"Machine: {machine_description()}; {os.cpu_count()} CPUs, 1-minute load average "
        f"{load:.1f} at the end. {args.model} with random weights at {args.image_size} px, "
        f"median of {args.rounds} alternating rounds in one process.", "",
        "| artifact | Keras s | keras_inception s (checks included) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for keras_name, ours in PAIRS:
        theirs_s, ours_s = statistics.median(times[keras_name]), statistics.median(times[ours])
        lines.append(f"| {ours} | {theirs_s:.1f} | {ours_s:.1f} | **{theirs_s / ours_s:.2f}x** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="inception_resnet_v2")
    parser.add_argument("--image-size", type=int, default=75)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="print, append nothing")
    args = parser.parse_args()
    section = markdown(measure(args.model, args.image_size, args.rounds), args)
    print(section)
    if not args.no_results:
        from keras_inception.apps.benchmark import append_results

        append_results(args.results, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
