"""A classifier from a randomly initialized backbone, for checks without pretrained weights.

Test and benchmark support, not part of the package. Used by
`benchmarks/tflite_latency.py` (and the export tests) to measure what
quantization costs on real images when no pretrained weights are reachable:

* `load_flowers_split`: every image of an ImageFolder split (`ROOT/<split>/<class>/*`)
  as float32 0-255 arrays through the package's evaluation transform (`load_image`),
  as the int8 calibration (`keras_inception.export.calibration_dataset`) sees them;
* `estimate_batchnorm_statistics`: BatchNorm moving statistics from the data;
* `fit_head_on_random_backbone`: the cheapest meaningful training: BatchNorm
  statistics estimated on the data, then the Dense head trained on the backbone's
  pooled features.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_inception.preprocessing import DEFAULT_CROP_PCT, load_image, preprocess_input


def load_flowers_split(root: str | os.PathLike, split: str, size: int,
                       crop_pct: float = DEFAULT_CROP_PCT) -> tuple[np.ndarray, np.ndarray]:
    """All images of `root/split` (one folder per class, classes in sorted order) as float32
    0-255 `(N, size, size, 3)` arrays through the evaluation transform (`load_image`, as
    `keras_inception.export.calibration_dataset` and `predict` see them), with class indices."""
    folder = os.path.join(os.fspath(root), split)
    images, labels = [], []
    for label, name in enumerate(sorted(os.listdir(folder))):
        for file in sorted(os.listdir(os.path.join(folder, name))):
            images.append(load_image(os.path.join(folder, name, file), size, crop_pct))
            labels.append(label)
    return np.stack(images), np.array(labels)


def estimate_batchnorm_statistics(model: keras.Model, x: np.ndarray, *, seed: int = 0,
                                  max_images: int = 200) -> None:
    """Sets every BatchNormalization's moving statistics to those of up to `max_images` of
    the preprocessed images `x` (one training-mode pass with momentum 0)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    pick = np.random.default_rng(seed).choice(len(x), min(len(x), max_images), replace=False)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    try:
        model(x[pick], training=True)  # eager: every BN layer now holds this batch's statistics
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum


def fit_head_on_random_backbone(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                                *, epochs: int = 40, seed: int = 0) -> None:
    """BatchNorm statistics estimated on `images` (0-255), then the `predictions` head of
    `model` trained on the random backbone's pooled (`avg_pool`) features."""
    keras.utils.set_random_seed(seed)
    x = preprocess_input(images)
    estimate_batchnorm_statistics(model, x, seed=seed)
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    pooled = features.predict(x, batch_size=50, verbose=0)
    head = keras.Sequential([keras.Input(pooled.shape[1:]), model.get_layer("predictions")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(pooled, labels, epochs=epochs, batch_size=100, verbose=0)


__all__ = ["estimate_batchnorm_statistics", "fit_head_on_random_backbone", "load_flowers_split"]
