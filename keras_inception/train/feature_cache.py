"""Stage 1 of the transfer recipe on cached backbone features.

The head-only stage freezes the pretrained base and calls it in inference mode, so
its pooled output for an image never changes: computing it once and training the
head (dropout + Dense) on those vectors gives the same head as running the whole
backbone on every image in every epoch, for the price of one pass.

* `views=1` (the default): one view per image, the evaluation crop (no augmentation).
  With the same seed, the head and its validation predictions equal those of the
  uncached stage run with `augment=False` (tested to 1e-3).
* `views=N>1`: N augmented views per image (random resized crop + flip), computed in
  N passes; epoch e trains on view e mod N.
* `views=0`: no cache; the backbone runs on freshly augmented images every epoch.

The vectors are stored in `out/cache/` under a key of everything they depend on
(network, weights, image size, crop, views, seed and the images themselves), so a
resumed run reuses them and a changed setting computes new ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_inception import files
from keras_inception.presets.fetch import file_hash
from keras_inception.train.config import TrainConfig

CACHE_DIR = "cache"
# Measured on flowers (benchmarks/finetune.py): one un-augmented view keeps stage 1 at
# one backbone pass per image; more views cost one pass each.
DEFAULT_VIEWS = 1


def _weights_identity(weights: str | None) -> str:
    if weights and os.path.isfile(weights):
        return f"file:{file_hash(weights, 'sha256')}"
    return str(weights)


def cache_key(config: TrainConfig, data: Any, crop_pct: float, views: int) -> str:
    """A hash of everything the cached features depend on."""
    identity = {
        "model": config.model, "weights": _weights_identity(config.resolved_weights()),
        "image_size": config.input_size(), "crop_pct": crop_pct, "views": views,
        # One view is the evaluation crop, whatever the seed; augmented views depend on it.
        "seed": config.seed if views > 1 else None, "data": data.source,
        "images": data.fingerprint,
        "max_per_class": config.max_per_class, "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


class FeatureCache:
    """Computes (once) and loads the pooled features of the train and val images."""

    def __init__(self, out: str, key: str) -> None:
        self.path = os.path.join(out, CACHE_DIR, f"features-{key}.npz")
        self.backbone_passes = 0  # counted: a resumed run must not add any

    def load_or_compute(self, base: keras.Model, views: list[tf.data.Dataset],
                        val: tf.data.Dataset) -> dict[str, np.ndarray]:
        """`{"train": (views, N, D), "val": (M, D)}` from the cache, else from `base`."""
        if os.path.isfile(self.path):
            try:
                with np.load(self.path) as cached:
                    return {name: cached[name] for name in
                            ("train", "train_labels", "val", "val_labels")}
            except (OSError, ValueError, KeyError):
                pass  # damaged: computed again below
        # One traced forward pass for every batch of every split: a function per dataset
        # (or per batch size) would trace the whole backbone again each time.
        forward = tf.function(
            lambda x: base(x, training=False),
            input_signature=[tf.TensorSpec((None, *base.input_shape[1:]), tf.float32)])
        train = [self._features(forward, ds) for ds in views]
        val_features, val_labels = self._features(forward, val)
        arrays = {"train": np.stack([f for f, _ in train]), "train_labels": train[0][1],
                  "val": val_features, "val_labels": val_labels}

        def write(staged: str) -> None:
            with open(staged, "wb") as f:
                np.savez(f, **arrays)

        files.write_atomic(self.path, write, create_parents=True)
        return arrays

    def _features(self, forward: Any, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features, one-hot labels) of a batched, unshuffled dataset: one pass."""
        self.backbone_passes += 1
        features, labels = [], []
        for x, y in ds:
            features.append(np.asarray(forward(x), dtype=np.float32))
            labels.append(np.asarray(y))
        return np.concatenate(features), np.concatenate(labels)


def head_of(model: keras.Model, feature_dim: int) -> keras.Model:
    """The transfer model's head (dropout + classifier) on feature vectors; it shares
    the layers, so training it trains the transfer model's head."""
    inputs = keras.Input((feature_dim,), name="features")
    x = model.get_layer("head_dropout")(inputs)
    return keras.Model(inputs, model.get_layer("predictions")(x), name="head")


class ViewOfEpoch(keras.callbacks.Callback):
    """Selects the cached view epoch e trains on (e mod N)."""

    def __init__(self, view: tf.Variable, views: int) -> None:
        super().__init__()
        self.view, self.views = view, views

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.view.assign(epoch % self.views)


def feature_datasets(features: dict[str, np.ndarray], *, batch_size: int, seed: int,
                     shuffle_buffer: int = 1024) -> tuple[tf.data.Dataset, tf.data.Dataset,
                                                          list[keras.callbacks.Callback]]:
    """(train, val, callbacks) for `fit` on cached features. The train order is the
    uncached pipeline's: the same shuffle (buffer, seed, reshuffled every epoch) of
    the same elements."""
    train_views = tf.constant(features["train"])
    view = tf.Variable(0, dtype=tf.int32, trainable=False)
    indices = tf.data.Dataset.range(train_views.shape[1]).shuffle(
        shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    train_labels = tf.constant(features["train_labels"])
    train = indices.map(
        lambda i: (train_views[tf.cast(view, tf.int64), i], train_labels[i])).batch(batch_size)
    val = tf.data.Dataset.from_tensor_slices(
        (features["val"], features["val_labels"])).batch(batch_size)
    callbacks = [ViewOfEpoch(view, train_views.shape[0])] if train_views.shape[0] > 1 else []
    return train.prefetch(tf.data.AUTOTUNE), val, callbacks


__all__ = ["CACHE_DIR", "DEFAULT_VIEWS", "FeatureCache", "cache_key", "feature_datasets",
           "head_of"]
