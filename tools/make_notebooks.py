"""Writes notebooks/*.ipynb from the cell sources below (outputs are added by running them).

    .venv/bin/python tools/make_notebooks.py && KERAS_INCEPTION_QUICK=1 .venv/bin/python \
        tools/make_notebooks.py --execute
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """\
import os, tempfile
QUICK = os.environ.get("KERAS_INCEPTION_QUICK", "").lower() in ("1", "true", "yes")
print("mode:", "quick (KERAS_INCEPTION_QUICK=1: tiny data, sizes and epochs)" if QUICK else "full")
WORK = tempfile.mkdtemp(prefix="ki_notebook_")  # outputs go here, not into the repository
"""

NB1 = [
    new_markdown_cell("""\
# 01 - Transfer learning on flowers

Fine-tune Inception-ResNet-v2 on the embedded `flowers_sample` (5 classes, 200 train /
50 val photos, CC BY 2.0): stage 1 trains a new head on the frozen base (called with
`training=False`, so BatchNorm statistics stay fixed), stage 2 unfreezes the top blocks
with a low, decaying learning rate. Without network access the ImageNet weights cannot be
downloaded; the notebook then trains from scratch (full mode) or, in quick mode, trains a
head on a frozen random base, which only checks the pipeline.

The first line of output says which mode produced the committed outputs."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import json
import numpy as np
import matplotlib.pyplot as plt
import keras
from keras_inception import train as training
from keras_inception.train import data as data_lib
from keras_inception.apps.demo import demo_config, imagenet_available, random_base_file

images = data_lib.load_data("flowers_sample")
print(images.class_names, images.train_count, "train /", images.val_count, "val")
fig, axes = plt.subplots(2, 5, figsize=(12, 5))
for ax, (img, label) in zip(axes.flat, images.train.shuffle(200, seed=1).take(10)):
    ax.imshow(img.numpy()); ax.set_title(images.class_names[int(label)]); ax.axis("off")
plt.show()"""),
    new_code_cell("""\
pretrained, reason = imagenet_available()
print("ImageNet weights:", "available" if pretrained else f"unavailable ({reason[:120]}...)")
out = os.path.join(WORK, "run")
weights_file = random_base_file(WORK) if QUICK and not pretrained else None
config = demo_config(out, QUICK, pretrained, weights_file)
print(config)
report = training.train(config)"""),
    new_code_cell("""\
history = training.read_history(os.path.join(out, "history.csv"))
training.plot_curves(history); plt.show()
training.plot_confusion(np.array(report["confusion_matrix"]), report["class_names"]); plt.show()
print(json.dumps({k: report[k] for k in ("accuracy", "per_class_accuracy", "weights")}, indent=1))"""),
    new_code_cell("""\
# A grid of validation predictions from the saved best model (green: right, red: wrong).
model = keras.saving.load_model(os.path.join(out, "best.keras"))
val = data_lib.make_pipeline(images.val, image_size=report["image_size"], num_classes=5,
                             batch_size=50, training=False, crop_pct=report["crop_pct"])
x, y = next(iter(val))
probs = np.asarray(model(x, training=False))
fig, axes = plt.subplots(3, 6, figsize=(13, 7))
for ax, i in zip(axes.flat, range(0, 50, 3)):
    pred, true = probs[i].argmax(), np.argmax(y[i])
    ax.imshow((np.asarray(x[i]) + 1) / 2); ax.axis("off")
    ax.set_title(f"{images.class_names[pred]} {probs[i].max():.0%}",
                 color="green" if pred == true else "red", fontsize=9)
plt.show()"""),
]

NB2 = [
    new_markdown_cell("""\
# 02 - Export to TFLite: variants, sizes, latency, agreement

Exports a flowers classifier with `keras_inception.export.export_tflite` as float32,
float16, dynamic-range int8 and full int8 (calibrated on training images), then compares
file sizes, single-image CPU latency with LiteRT, and agreement with the Keras model on the
validation images. It uses the model trained by notebook 01 / `make demo` when
`runs/demo/best.keras` exists, else a freshly built one (random weights: agreement is still
meaningful, accuracy is not). Quick mode exports only float32 and dynamic int8 at 75 px."""),
    new_code_cell(SETUP),
    new_code_cell("""\
import time
import numpy as np
import keras
import keras_inception as ki
from keras_inception.train import data as data_lib
from keras_inception.export import export_tflite
from keras_inception.export.runtime import Classifier

images = data_lib.load_data("flowers_sample")
trained = os.path.join("..", "runs", "demo", "best.keras")
if os.path.isfile(trained) and not QUICK:
    model = keras.saving.load_model(trained); source = trained
else:
    size = 75 if QUICK else 128
    model = ki.InceptionResNetV1(weights=None, input_shape=(size, size, 3), classes=5)
    source = f"inception_resnet_v1 at {size}px, random weights"
size = int(model.input_shape[1])
print("model:", source)
val = data_lib.make_pipeline(images.val, image_size=size, num_classes=5, batch_size=50,
                             training=False)
x_val, y_val = (np.asarray(t) for t in next(iter(val)))
keras_probs = np.asarray(model(x_val, training=False))"""),
    new_code_cell("""\
variants = [None, "dynamic_int8"] if QUICK else [None, "float16", "dynamic_int8", "int8"]
calib = data_lib.make_pipeline(images.train, image_size=size, num_classes=5, batch_size=1,
                               training=False).take(100)
rows = []
for q in variants:
    path = os.path.join(WORK, f"model_{q or 'float32'}.tflite")
    t0 = time.perf_counter()
    export_tflite(model, path, quantization=q,
                  representative_data=calib if q == "int8" else None, overwrite=True)
    seconds = time.perf_counter() - t0
    clf = Classifier(path, preprocess=False)
    probs = np.concatenate([clf.predict(x_val[i:i + 1]) for i in range(len(x_val))])
    clf.predict(x_val[:1])
    t0 = time.perf_counter()
    for i in range(10):
        clf.predict(x_val[i:i + 1])
    latency = (time.perf_counter() - t0) / 10 * 1000
    rows.append((q or "float32", os.path.getsize(path) / 1e6, latency,
                 float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
                 float(np.max(np.abs(probs - keras_probs))), seconds))
print(f"{'variant':<14}{'MB':>8}{'ms/img':>9}{'top-1 agree':>13}{'max |dp|':>10}{'export s':>10}")
for r in rows:
    print(f"{r[0]:<14}{r[1]:>8.1f}{r[2]:>9.1f}{r[3]:>13.1%}{r[4]:>10.4f}{r[5]:>10.0f}")"""),
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
Latency is single-threaded-by-default LiteRT on this machine's CPU, batch 1; it is a rough,
machine-dependent number. Agreement is the share of validation images whose top-1 class
matches the Keras model, and the largest absolute difference of a class probability."""),
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
    hist = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, callbacks=[log])
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
]


def write() -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    for name, cells in (("01_transfer_learning", NB1), ("02_export_tflite", NB2),
                        ("03_residual_scaling", NB3)):
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        })
        nbformat.write(nb, NOTEBOOKS / f"{name}.ipynb")


def execute() -> None:
    from nbclient import NotebookClient

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        nbformat.write(nb, path)
        print("executed", path, "quick" if os.environ.get("KERAS_INCEPTION_QUICK") else "full")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--execute", action="store_true")
    if parser.parse_args().execute:
        execute()
    else:
        write()
