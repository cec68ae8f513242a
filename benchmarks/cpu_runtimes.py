"""Which runtime runs these networks fastest on this CPU: every CPU runtime, side by side.

For each model (default: Inception-ResNet-v2 and Inception-v4 at 299 px with 1000
classes, FaceNet at 160 px with its ms_celeb_1m weights and its standardisation inside)
and each batch size (default 1: latency, 16: throughput), these candidates are timed in
one process, alternating round after round (the order rotates every round, so a change
of load hits all of them alike), each figure the median of the rounds:

* `keras_tf` / `keras_tf_xla`: the Keras model on TensorFlow, `tf.function` of
  `model(x, training=False)` without / with XLA (`jit_compile`);
* `keras_jax`: the same model on JAX (`jax.jit` of `stateless_call`), in a worker
  subprocess with KERAS_BACKEND=jax that the main process asks to run each round's steps;
* `openvino_f32` / `openvino_bf16` / `openvino_int8`: `export_openvino` IRs on the CPU
  plugin (f32 and bf16 inference precision of the float32 IR; the NNCF int8 IR with f32
  precision for the ops left in float); bf16 only where the CPU has bf16 instructions;
* `litert_f32` / `litert_int8`: `export_tflite` files (dynamic batch; int8 full-integer
  with float I/O) on LiteRT with its default XNNPACK delegate, all CPU threads;
* `onnxruntime_f32`: the `export_onnx` file on onnxruntime's CPU provider;
* `keras_apps_ir_v2_tf` (the reference of every ratio): keras.applications'
  InceptionResNetV2 at 299 px on TensorFlow (`tf.function`, no XLA), the same batch;
* `gemm`: a float32 matrix product (TensorFlow's matmul, oneDNN, `--gemm-size`), whose
  flop/s is this CPU's float32 peak as measured in the same rounds: a candidate's
  fraction of peak is its img/s x 2 x multiply-accumulates per image / those flop/s.

Then, for the quantized (and bf16) variants, how far they are from float Keras on real
images: top-1 agreement on the flowers_sample val photos (50) of the model `make demo`
trains (`--demo-model FILE.keras`; without it, a stand-in fitted here and said so: the
demo's FaceNet rung, its 5-class head fitted on the FaceNet backbone's pooled features
of the 200 train photos), calibrated on the train photos; and for FaceNet, the cosine of
each embedding to Keras' on held-out face crops (the example photos of the weights'
package, cropped with faceie's MTCNN as benchmarks/facenet_tflite.py does; flower photos
when those cannot be had, said so).

Random weights for IR-v2 and v4 (speed does not depend on them). Writes
benchmarks/cpu_runtimes.json and appends a section to benchmarks/RESULTS.md.

    nice -n 5 .venv/bin/python benchmarks/cpu_runtimes.py             # ~20-40 min, 2 cores
    .venv/bin/python benchmarks/cpu_runtimes.py --models inception_resnet_v1 --image-size 75 \\
        --batch-sizes 1 2 --rounds 1 --runtimes keras_tf openvino_f32 --no-agreement \\
        --json /tmp/r.json --results /tmp/r.md                        # a toy run
    .venv/bin/python benchmarks/cpu_runtimes.py --fidelity-only --demo-model runs/demo/best.keras \\
        --runtimes openvino_bf16 openvino_int8 litert_int8 --json /tmp/f.json --results /tmp/f.md
                                       # the agreement and cosine only (no timing), ~5 min
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/support: shared with the tests, never installed
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUNTIMES = ("keras_tf", "keras_tf_xla", "keras_jax", "openvino_f32", "openvino_bf16",
            "openvino_int8", "litert_f32", "litert_int8", "onnxruntime_f32")
REFERENCE = "keras_apps_ir_v2_tf"
GEMM = "gemm"
DEFAULT_SIZES = {"facenet": 160}  # else 299
FLOWERS = REPO / "keras_inception" / "assets" / "flowers_sample"
QUANTIZED = ("openvino_bf16", "openvino_int8", "litert_int8")


# ---------------------------------------------------------------- the JAX worker


def jax_worker(name: str, size: int) -> None:
    """`--jax-worker`: builds `name` on JAX and answers "BATCH STEPS" lines on stdin with
    "RESULT seconds" on stdout (its own clock; the first call of a batch size compiles)."""
    import jax

    model = build_model(name, size, facenet_weights=None)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    infer = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    inputs = {}
    print("RESULT ready", flush=True)
    for line in sys.stdin:
        batch, steps = (int(v) for v in line.split())
        if batch not in inputs:
            inputs[batch] = jax.device_put(model_inputs(name, size, batch))
        start = time.perf_counter()
        for _ in range(steps):
            jax.block_until_ready(infer(tv, ntv, inputs[batch]))
        print(f"RESULT {time.perf_counter() - start}", flush=True)


class JaxWorker:
    """The main process' side of `jax_worker`: `step(batch)` is a candidate whose calls run
    there and return the worker's own seconds (the pipe's latency is not counted)."""

    def __init__(self, name: str, size: int) -> None:
        env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--jax-worker", name, str(size)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._read()

    def _read(self) -> str:
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                return line.split()[1]
        raise RuntimeError("The JAX worker ended early (see its stderr above).")

    def step(self, batch: int) -> Callable[[], float]:
        def run() -> float:
            self.process.stdin.write(f"{batch} 1\n")
            self.process.stdin.flush()
            return float(self._read())

        run.own_clock = True
        return run

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait(timeout=60)


# ---------------------------------------------------------------- models and inputs


def build_model(name: str, size: int, facenet_weights: str | None):
    """Our `name` at `size` px: random weights and 1000 classes for a classifier; FaceNet
    with `facenet_weights` and its standardisation inside (raw 0-255 crops in)."""
    import keras_inception as ki

    shape = (size, size, 3)
    if name == "facenet":
        return ki.FaceNet(weights=facenet_weights, include_preprocessing=True, input_shape=shape)
    return ki.get_builder(name)(weights=None, input_shape=shape)


def model_inputs(name: str, size: int, batch: int):
    """Deterministic inputs in the values the model takes: 0-255 crops for FaceNet,
    [-1, 1] images for the classifiers."""
    import numpy as np

    rng = np.random.default_rng(batch)
    low, high = (0.0, 255.0) if name == "facenet" else (-1.0, 1.0)
    return rng.uniform(low, high, (batch, size, size, 3)).astype(np.float32)


def flower_images(split: str, size: int, crop_pct: float, scaled: bool):
    """The flowers_sample photos of `split` through the evaluation transform: float32,
    [-1, 1] when `scaled`, else 0-255; with their class indices."""
    from support.random_backbone import load_flowers_split

    from keras_inception.preprocessing import preprocess_input

    images, labels = load_flowers_split(FLOWERS, split, size, crop_pct)
    return (preprocess_input(images) if scaled else images), labels


def face_crops(log: Callable[[str], None]):
    """(train crops, val crops) of FaceNet's example photos (0-255, 160 px), or None."""
    try:
        sys.path.insert(0, str(REPO / "benchmarks"))
        import facenet_tflite

        folder = Path(tempfile.mkdtemp(prefix="cpu_runtimes_faces."))
        crops, _, is_train, _ = facenet_tflite.crops_from_photos(
            facenet_tflite.fetch_photos(folder))
        return crops[is_train].astype("float32"), crops[~is_train].astype("float32")
    except (Exception, SystemExit) as e:  # noqa: BLE001  (any failure: flowers instead)
        log(f"face crops unavailable ({type(e).__name__}: {str(e)[:120]}); FaceNet's cosine "
            "and calibration use flower photos instead")
        return None


# ---------------------------------------------------------------- exports and runners


def cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def export_variants(model, runtimes, folder: Path, calibration) -> tuple[dict, dict]:
    """The files the runtimes run ({runtime: path}) and their export seconds."""
    from keras_inception import export

    made = {"create_parents": True}
    int8 = {"quantization": "int8", "representative_data": calibration, **made}
    jobs = {
        "openvino_f32": ("model.xml", lambda p: export.export_openvino(model, p, **made)),
        "openvino_int8": ("model_int8.xml", lambda p: export.export_openvino(model, p, **int8)),
        "litert_f32": ("model.tflite",
                       lambda p: export.export_tflite(model, p, batch_size=None, **made)),
        "litert_int8": ("model_int8.tflite",
                        lambda p: export.export_tflite(model, p, batch_size=None, **int8)),
        "onnxruntime_f32": ("model.onnx", lambda p: export.export_onnx(model, p, **made)),
    }
    paths, seconds = {}, {}
    for runtime, (file, write) in jobs.items():
        wanted = runtime in runtimes or (runtime == "openvino_f32" and "openvino_bf16" in runtimes)
        if not wanted:
            continue
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # QuantizationWarning: random weights, few images
            paths[runtime] = str(write(str(folder / file)))
        seconds[runtime] = time.perf_counter() - start
        print(f"  exported {runtime} in {seconds[runtime]:.0f} s", flush=True)
    if "openvino_bf16" in runtimes:
        paths["openvino_bf16"], seconds["openvino_bf16"] = paths["openvino_f32"], 0.0
    return paths, seconds


def precision(runtime: str) -> str:
    """The CPU plugin's inference precision of an OpenVINO candidate: bf16 for
    `openvino_bf16`, else f32 (the int8 IR's float ops included)."""
    return "bf16" if runtime == "openvino_bf16" else "f32"


def runner(runtime: str, model, path: str | None, x) -> Callable[[], object]:
    """One step of `runtime` on the batch `x` (NumPy float32)."""
    if runtime.startswith("keras_tf") or runtime == REFERENCE:
        import tensorflow as tf

        fn = tf.function(lambda t: model(t, training=False), jit_compile=runtime.endswith("xla"))
        tensor = tf.constant(x)
        return lambda: fn(tensor).numpy()
    if runtime.startswith("openvino"):
        from keras_inception.export.openvino_runtime import compile_ir

        compiled = compile_ir(path, inference_precision=precision(runtime))
        return lambda: compiled(x)
    if runtime.startswith("litert"):
        from keras_inception.export.runtime import load_interpreter

        interpreter = load_interpreter(path, num_threads=os.cpu_count())
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(x.shape))
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def run():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        return run
    if runtime == "onnxruntime_f32":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: x})
    if runtime == GEMM:  # TensorFlow's matmul (oneDNN, AVX-512 where the CPU has it)
        import tensorflow as tf

        matmul, operand = tf.function(tf.linalg.matmul), tf.constant(x)
        return lambda: matmul(operand, operand).numpy()
    raise ValueError(runtime)


def gemm_operand(size: int):
    import numpy as np

    return np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)


# ---------------------------------------------------------------- timing


def clocked(step: Callable[[], object]) -> float:
    """Seconds of one call of `step` (its own figure for a step with `own_clock`)."""
    start = time.perf_counter()
    result = step()
    return float(result) if getattr(step, "own_clock", False) else time.perf_counter() - start


def timed_rounds(candidates: dict, rounds: int, log) -> dict[str, dict]:
    """{"warm": seconds of one untimed first call each (tracing, compilation, allocation),
    "times": seconds per call, one figure per round}; the order rotates every round."""
    labels = list(candidates)
    warm = {label: clocked(candidates[label]) for label in labels}
    log("    warm-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in warm.items()))
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            times[label].append(clocked(candidates[label]))
        log(f"    round {r + 1}/{rounds}: " + ", ".join(
            f"{label} {1000 * times[label][-1]:.0f} ms" for label in labels))
    return {"warm": warm, "times": times}


def measure_model(name: str, size: int, args, folder: Path, faces, log) -> tuple[list, dict]:
    """Every candidate for model `name`, for each batch size (rows of the table), and for
    FaceNet the cosine of its quantized variants."""
    import keras

    from keras_inception.analysis import count_macs

    model = build_model(name, size, args.facenet_weights)
    reference = keras.applications.InceptionResNetV2(weights=None, input_shape=(299, 299, 3))
    macs = {"model": count_macs(model), "reference": count_macs(reference)}
    log(f"{name} at {size} px ({macs['model'] / 1e9:.2f} GMACs): exporting")
    count = args.calibration if name == "facenet" else args.speed_calibration
    paths, export_s = export_variants(model, args.runtimes, folder / name,
                                      calibration_images(name, size, count, faces))
    jax = JaxWorker(name, size) if "keras_jax" in args.runtimes else None
    rows = []
    try:
        for batch in [] if args.fidelity_only else args.batch_sizes:
            log(f"  {name} batch {batch}")
            steps = {runtime: jax.step(batch) if runtime == "keras_jax"
                     else runner(runtime, model, paths.get(runtime), model_inputs(name, size, batch))
                     for runtime in args.runtimes}
            steps[REFERENCE] = runner(REFERENCE, reference, None, model_inputs("ref", 299, batch))
            steps[GEMM] = runner(GEMM, None, None, gemm_operand(args.gemm_size))
            timing = timed_rounds(steps, args.rounds, log)
            rows += table_rows(name, size, batch, macs, timing, export_s, paths, args.gemm_size)
            del steps
    finally:
        if jax is not None:
            jax.close()
    fidelity = (facenet_cosines(model, paths, faces, size, log)
                if name == "facenet" and args.agreement else None)
    del model, reference
    keras.backend.clear_session()
    return rows, fidelity


def table_rows(name, size, batch, macs, timing, export_s, paths, gemm_size) -> list[dict]:
    """One row per candidate: img/s (median of the rounds), the ratio to the reference's,
    the fraction of the float32 GEMM peak of the same rounds."""
    times = timing["times"]
    gemm_flops = 2 * gemm_size ** 3 / statistics.median(times[GEMM])
    reference = batch / statistics.median(times[REFERENCE])
    rows = []
    for label, seconds in times.items():
        if label == GEMM:
            continue
        img_s = batch / statistics.median(seconds)
        per_image = macs["reference" if label == REFERENCE else "model"]
        path = paths.get(label)
        rows.append({
            "model": name, "image_size": 299 if label == REFERENCE else size, "batch": batch,
            "runtime": label, "img_per_s": img_s,
            "img_per_s_rounds": [batch / s for s in seconds],
            "ratio_to_reference": img_s / reference,
            "fraction_of_peak": 2 * per_image * img_s / gemm_flops,
            "gemm_gflops": gemm_flops / 1e9, "warmup_s": timing["warm"][label],
            "export_s": export_s.get(label),
            "size_mb": file_size(path) / 1e6 if path else None,
        })
    return rows


def file_size(path: str) -> int:
    """Bytes of an exported model (an OpenVINO IR: its .xml and its .bin)."""
    from keras_inception.export.openvino import weights_path

    extra = os.path.getsize(weights_path(path)) if path.endswith(".xml") else 0
    return os.path.getsize(path) + extra


def calibration_images(name: str, size: int, count: int, faces) -> list:
    """Calibration images as the model takes them: FaceNet's train face crops (0-255; whole
    flower photos without them); [-1, 1] flower photos for the classifiers."""
    import numpy as np

    faces = faces if faces is not None and faces[0].shape[1] == size else None
    if name == "facenet" and faces is not None:
        images = faces[0]
    elif name == "facenet":
        images, _ = flower_images("train", size, 1.0, scaled=False)
    else:
        images, _ = flower_images("train", size, 0.875, scaled=True)
    return list(np.asarray(images[:count], np.float32)[:, None])


# ---------------------------------------------------------------- fidelity on real images


def variant_outputs(paths: dict, images, log) -> dict:
    """The outputs of each quantized (or bf16) variant in `paths` for `images` (as the
    model takes them)."""
    from keras_inception.export.openvino import OpenVINOImageModel
    from keras_inception.export.runtime import TFLiteImageModel

    outputs = {}
    for label in QUANTIZED:
        if label not in paths:
            continue
        if label.startswith("openvino"):
            model = OpenVINOImageModel(paths[label], inference_precision=precision(label))
        else:
            model = TFLiteImageModel(paths[label])
        outputs[label] = model.run(images)
        log(f"    {label}: {len(images)} images run")
    return outputs


def facenet_cosines(model, paths: dict, faces, size: int, log) -> dict:
    """Cosine of each variant's embeddings to Keras' on held-out face crops (or flowers)."""
    import numpy as np

    from keras_inception.export.checks import keras_outputs

    if faces is not None and faces[1].shape[1] == size:
        images, source = faces[1], f"{len(faces[1])} held-out face crops (val photos)"
    else:
        images, _ = flower_images("val", size, 1.0, scaled=False)
        source = f"{len(images)} flowers_sample val photos (no face crops of this size)"
    expected = keras_outputs(model, images)
    result = {"images": source, "variants": {}}
    for label, got in variant_outputs(paths, images, log).items():
        norms = np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1)
        cosine = np.sum(got * expected, axis=-1) / norms
        result["variants"][label] = {"mean_cosine": float(cosine.mean()),
                                     "min_cosine": float(cosine.min())}
    return result


def demo_model(args, log):
    """(model, its metadata, what it is): `--demo-model`, else the stand-in: the demo's
    FaceNet rung (IR-v1 backbone, 160 px, 5 classes) with its head fitted on the pooled
    features of the 200 flowers_sample train photos (the demo's first stage, shortened)."""
    import keras

    from keras_inception.metadata import ModelMetadata, describe, infer_metadata
    from keras_inception.saving import load_model
    from keras_inception.train.recipes import transfer_parts

    if args.demo_model:
        model = load_model(args.demo_model)
        return model, infer_metadata(model)[0], f"`{args.demo_model}` (trained by `make demo`)"
    size = 160
    model, base, head = transfer_parts("facenet", 5, size, args.facenet_weights, seed=0)
    images, labels = flower_images("train", size, 0.875, scaled=True)
    features = base.predict(images, batch_size=25, verbose=0)
    classifier = keras.Sequential([keras.Input(features.shape[1:]), head.dropout, head.classifier])
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    classifier.fit(features, labels, epochs=args.head_epochs, batch_size=32, verbose=0)
    names = tuple(sorted(os.listdir(FLOWERS / "train")))
    metadata = ModelMetadata(image_size=(size, size), crop_pct=0.875, class_names=names)
    log("no --demo-model: a stand-in fitted here (FaceNet backbone, head only)")
    return describe(model, metadata), metadata, (
        "a stand-in for the `make demo` model (none was given): the demo's FaceNet rung "
        f"(IR-v1 ms_celeb_1m backbone, 160 px, 5 classes), its head fitted for "
        f"{args.head_epochs} epochs on the backbone's pooled features of the 200 train photos, "
        "no fine-tuning")


def flowers_agreement(args, folder: Path, log) -> dict:
    """Top-1 agreement with float Keras (and accuracy) of each quantized variant of the
    demo model on the flowers_sample val photos, calibrated on the train photos."""
    import numpy as np

    from keras_inception.export.checks import keras_outputs

    model, metadata, what = demo_model(args, log)
    size, crop = metadata.image_size[0], metadata.crop_pct
    scaled = metadata.input_scaling == "inception"
    train, _ = flower_images("train", size, crop, scaled)
    val, labels = flower_images("val", size, crop, scaled)
    runtimes = [r for r in args.runtimes if r in QUANTIZED]
    paths, _ = export_variants(model, runtimes, folder / "demo",
                               list(np.asarray(train[:args.calibration], np.float32)[:, None]))
    expected = keras_outputs(model, val).argmax(-1)
    result = {"model": what, "images": f"{len(val)} flowers_sample val photos",
              "calibration": min(args.calibration, len(train)),
              "keras_accuracy": float(np.mean(expected == labels)), "variants": {}}
    for label, got in variant_outputs(paths, val, log).items():
        top1 = got.argmax(-1)
        result["variants"][label] = {"top1_agreement": float(np.mean(top1 == expected)),
                                     "accuracy": float(np.mean(top1 == labels))}
    return result


# ---------------------------------------------------------------- Keras' own quantization


def keras_quantize(name: str, size: int, mode: str, log) -> dict:
    """What Keras' `model.quantize(mode)` does to our `name` (random weights, 1000 classes):
    layers quantized out of all, warnings, the outputs' difference on the flowers_sample val
    photos, top-1 agreement, and the `.keras` file's size before and after."""
    import keras
    import numpy as np

    model = build_model(name, size, facenet_weights=None)
    images, _ = flower_images("val", size, 0.875, scaled=True)
    before = model.predict(images, batch_size=10, verbose=0)
    layers = list(model._flatten_layers(include_self=False))
    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "float.keras"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.quantize(mode)
        after = model.predict(images, batch_size=10, verbose=0)
        model.save(os.path.join(folder, "quantized.keras"))
        sizes = [os.path.getsize(os.path.join(folder, f)) / 1e6
                 for f in ("float.keras", "quantized.keras")]
    quantized = [layer.name for layer in layers if getattr(layer, "quantization_mode", None)]
    result = {
        "model": name, "image_size": size, "mode": mode, "keras": keras.__version__,
        "layers": len(layers), "quantized_layers": quantized, "warnings": len(caught),
        "quantized_types": sorted({type(layer).__name__ for layer in layers
                                   if getattr(layer, "quantization_mode", None)}),
        "max_abs_diff": float(np.max(np.abs(after - before))),
        "rel_l2": float(np.linalg.norm(after - before) / np.linalg.norm(before)),
        "top1_agreement": float(np.mean(after.argmax(-1) == before.argmax(-1))),
        "images": len(images), "size_mb": sizes,
    }
    log(json.dumps(result))
    return result


def keras_quantize_markdown(result: dict) -> str:
    return "\n".join([
        f"## Keras' own `model.quantize(\"{result['mode']}\")` on {result['model']} "
        f"({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})", "",
        f"Keras {result['keras']}, {result['model']} at {result['image_size']} px, random "
        f"weights, 1000 classes. Layers quantized: {len(result['quantized_layers'])} of "
        f"{result['layers']} ({', '.join(result['quantized_types']) or 'none'}: "
        f"{', '.join(result['quantized_layers'])}); {result['warnings']} warnings during the "
        "call (\"Layer Conv2D does not have a `quantize` method implemented\" and the like, for "
        "the layers it skips). With random weights the softmax is nearly flat, so the top-1 "
        "figure shows near-ties, not the cost of quantization. On the "
        f"{result['images']} flowers_sample val photos: outputs (softmax) max abs difference "
        f"{result['max_abs_diff']:.2e}, relative L2 {result['rel_l2']:.2e}, top-1 agreement "
        f"{result['top1_agreement']:.3f}. `.keras` file {result['size_mb'][0]:.0f} MB before, "
        f"{result['size_mb'][1]:.0f} MB after.", ""])


# ---------------------------------------------------------------- the record


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
             "amx_int8")


def cpu_description() -> dict:
    """The CPU's model name, logical CPUs and the SIMD flags that decide these figures."""
    name, flags = "unknown", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return {"model": name, "cpus": os.cpu_count(),
            "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def fastest(rows: list[dict]) -> dict[str, str]:
    """"MODEL batch B" -> the runtime with the most img/s (the reference left out)."""
    best: dict[str, dict] = {}
    for row in rows:
        key = f"{row['model']} batch {row['batch']}"
        if row["runtime"] != REFERENCE and (key not in best
                                            or row["img_per_s"] > best[key]["img_per_s"]):
            best[key] = row
    return {key: row["runtime"] for key, row in best.items()}


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals at batch 1 against the faster of Keras on TF with and without XLA."""
    lines = []
    for model in dict.fromkeys(row["model"] for row in rows):
        at_1 = {row["runtime"]: row["img_per_s"] for row in rows
                if row["model"] == model and row["batch"] == 1}
        keras_tf = max((at_1[k] for k in ("keras_tf", "keras_tf_xla") if k in at_1), default=None)
        if keras_tf is None:
            continue
        for label, target in (("openvino_int8", 3.0), ("openvino_f32", 1.0)):
            if label in at_1:
                ratio = at_1[label] / keras_tf
                lines.append(f"{model}, batch 1: {label} runs {ratio:.2f}x the faster Keras/TF "
                             f"(goal >= {target:g}x: {'met' if ratio >= target else 'NOT met'}).")
    return lines


def _number(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    cpu, load = report["cpu"], report["load_average"]
    lines = [f"## CPU runtimes side by side ({report['date']})", "",
             f"CPU: {cpu['model']}, {cpu['cpus']} logical CPUs; flags: {', '.join(cpu['flags'])}. "
             f"1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end; "
             f"niceness {report['niceness']}. {report['versions']}.", "",
             f"Command: `{report['command']}`", ""]
    if not report["rows"]:  # --fidelity-only
        return "\n".join(lines + ["No timing (--fidelity-only).", ""] + _fidelity_lines(report)) + "\n"
    lines += [f"img/s: median of {report['config']['rounds']} rounds (one call per candidate per "
              "round, order rotating); ratio: to keras.applications InceptionResNetV2 at 299 px on "
              "TensorFlow (no XLA), same batch, same rounds; peak: img/s x 2 x MACs / the float32 "
              "GEMM flop/s of the same rounds (TensorFlow's matmul, oneDNN; int8, bf16 and Winograd "
              "convolutions can exceed 1).", "",
              "| model | batch | runtime | img/s | ratio to ref | fraction of f32 peak | "
              "warm-up s | export s | size MB |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(
            f"| {row['model']} ({row['image_size']} px) | {row['batch']} | {row['runtime']} | "
            f"{row['img_per_s']:.2f} | {row['ratio_to_reference']:.2f} | "
            f"{row['fraction_of_peak']:.2f} | {_number(row['warmup_s'], '.1f')} | "
            f"{_number(row['export_s'], '.0f')} | {_number(row['size_mb'], '.0f')} |")
    gemm = sorted({round(row["gemm_gflops"]) for row in report["rows"]})
    lines += ["", f"float32 GEMM ({report['config']['gemm_size']}^2): {gemm[0]}-{gemm[-1]} "
              "GFLOP/s across the groups.", ""]
    lines += [f"Fastest: {', '.join(f'{k}: {v}' for k, v in report['fastest'].items())}.", ""]
    lines += [f"- {line}" for line in report["goals"]] + [""]
    lines += _fidelity_lines(report)
    return "\n".join(lines) + "\n"


def _fidelity_lines(report: dict) -> list[str]:
    lines = []
    flowers = report.get("flowers")
    if flowers:
        lines += [f"Top-1 agreement with float Keras on {flowers['images']}, model: "
                  f"{flowers['model']}; int8 calibrated on {flowers['calibration']} train photos. "
                  f"Keras accuracy {flowers['keras_accuracy']:.3f}.", "",
                  "| variant | top-1 agreement | accuracy |", "|---|---|---|"]
        lines += [f"| {k} | {v['top1_agreement']:.3f} | {v['accuracy']:.3f} |"
                  for k, v in flowers["variants"].items()] + [""]
    faces = report.get("facenet")
    if faces:
        lines += [f"FaceNet: cosine of each embedding to float Keras' on {faces['images']}.", "",
                  "| variant | mean cosine | lowest |", "|---|---|---|"]
        lines += [f"| {k} | {v['mean_cosine']:.4f} | {v['min_cosine']:.4f} |"
                  for k, v in faces["variants"].items()] + [""]
    return lines


def versions() -> str:
    import importlib.metadata as md

    names = ("tensorflow", "keras", "jax", "openvino", "nncf", "ai-edge-litert", "onnxruntime")
    found = []
    for name in names:
        with contextlib.suppress(md.PackageNotFoundError):
            found.append(f"{name} {md.version(name)}")
    return ", ".join(found)


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-worker", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+",
                        default=["inception_resnet_v2", "inception_v4", "facenet"])
    parser.add_argument("--image-size", type=int, default=None,
                        help="one size for every model (default 299, FaceNet 160)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--calibration", type=int, default=100,
                        help="int8 calibration images of the demo model (flowers_sample train "
                             "photos) and FaceNet (face crops)")
    parser.add_argument("--speed-calibration", type=int, default=32,
                        help="int8 calibration images of the random-weight classifiers, timed "
                             "only (speed does not depend on the count)")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--facenet-weights", default="ms_celeb_1m")
    parser.add_argument("--agreement", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the quantized variants on real images")
    parser.add_argument("--demo-model", default=None, help="the .keras that `make demo` wrote")
    parser.add_argument("--fidelity-only", action="store_true",
                        help="no timing: only the quantized variants' agreement (demo model) "
                             "and FaceNet's cosine, e.g. after a change of the int8 export")
    parser.add_argument("--head-epochs", type=int, default=100)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "cpu_runtimes.json"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="write nothing")
    parser.add_argument("--keras-quantize", metavar="MODE", default=None,
                        help="instead: measure Keras' model.quantize(MODE) on the first of "
                             "--models (int8, float8, int4)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """The whole benchmark; returns the report (see `markdown`)."""
    if "openvino_bf16" in args.runtimes and not cpu_has_bf16():
        log("this CPU has no bf16 instructions: openvino_bf16 left out")
        args.runtimes = [r for r in args.runtimes if r != "openvino_bf16"]
    started = time.time()
    report = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_description(),
              "niceness": os.nice(0), "versions": versions(),
              "command": " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
              "config": {k: getattr(args, k) for k in ("models", "image_size", "batch_sizes",
                                                         "rounds", "runtimes", "calibration",
                                                         "speed_calibration",
                                                         "gemm_size", "demo_model",
                                                         "fidelity_only")},
              "rows": []}
    load_at_start = os.getloadavg()[0]
    faces = face_crops(log) if "facenet" in args.models else None
    with tempfile.TemporaryDirectory(prefix="cpu_runtimes.") as folder:
        for name in args.models:
            if args.fidelity_only and name != "facenet":
                continue  # only FaceNet has a fidelity figure of its own (the cosine)
            size = args.image_size or DEFAULT_SIZES.get(name, 299)
            rows, cosines = measure_model(name, size, args, Path(folder), faces, log)
            report["rows"] += rows
            if cosines:
                report["facenet"] = cosines
        if args.agreement and any(r in QUANTIZED for r in args.runtimes):
            report["flowers"] = flowers_agreement(args, Path(folder), log)
    report["fastest"], report["goals"] = fastest(report["rows"]), goals(report["rows"])
    report["load_average"] = [load_at_start, os.getloadavg()[0]]
    report["minutes"] = (time.time() - started) / 60
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.jax_worker:
        jax_worker(args.jax_worker[0], int(args.jax_worker[1]))
        return 0
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.keras_quantize:
        name = args.models[0]
        report = keras_quantize(name, args.image_size or DEFAULT_SIZES.get(name, 299),
                                args.keras_quantize, log)
        section = keras_quantize_markdown(report)
        args.json = args.json.replace("cpu_runtimes.json", "keras_quantize.json")
    else:
        report = run(args, log=log)
        section = markdown(report)
    print(section)
    if not args.no_results:
        from keras_inception.apps.benchmark import record_results

        record_results(args.json, report, args.results, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
