"""The frozen part of the transfer recipe's base, run once per image instead of every epoch.

Both stages of the transfer recipe call the pretrained base in inference mode, with
BatchNorm frozen: in stage 1 the whole base is frozen, in stage 2 everything below
the network's `ModelSpec.fine_tune_from` blocks (the *cut*: the input of block8_1 for
the Inception-ResNets, of mixed_7b for Inception-v4). What the frozen part computes
for an image never changes, so it is computed once per image and view:

* the activations at the cut (`BaseSplit.bottom`), from which
* the pooled features (`BaseSplit.top`) follow at the price of the top blocks.

Stage 1 trains the head (dropout + Dense) on the pooled features, stage 2 the top
blocks and the head on the activations (`top_of`). With the same seed both give the
same weights and validation predictions as running the whole backbone on every image
in every epoch with `augment=False` (tested to 1e-3), for the price of one pass.

* `views=1` (the default): one view per image, the evaluation crop (no augmentation).
* `views=N>1`: N augmented views per image (random resized crop + flip), computed in
  N passes; epoch e trains on view e mod N, in both stages.
* `views=0`: no cache; the backbone runs on freshly augmented images every epoch.

Stage 2 runs on the backbone again (augmented images every epoch) when
`fine_tune_cache=False`, when the activations would take more than
`activation_budget()` bytes of memory, or when the network has no single cut.

The arrays are stored in `out/cache/` under a key of everything they depend on
(network, weights, image size, crop, views, seed, cut and the images themselves), so
a resumed run reuses them and a changed setting computes new ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_inception import files
from keras_inception.presets.fetch import file_hash
from keras_inception.train.config import TrainConfig, TrainingNotice
from keras_inception.train.recipes import Head, base_of, fine_tune_network

CACHE_DIR = "cache"
# Measured on flowers (benchmarks/finetune.py): one un-augmented view keeps stage 1 at
# one backbone pass per image; more views cost one pass each.
DEFAULT_VIEWS = 1
# Share of the physical memory the cached activations may take (train views + val,
# float32); above it stage 2 runs the backbone every epoch.
ACTIVATION_MEMORY_SHARE = 0.25


class CacheWarning(TrainingNotice):
    """A feature cache file could not be read; it is computed again (one line, see
    `TrainingNotice`)."""


def activation_budget() -> int:
    """Bytes the cached activations of stage 2 may take: a share of physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 8 << 30  # unknown: as if 8 GiB
    return int(total * ACTIVATION_MEMORY_SHARE)


@dataclasses.dataclass
class BaseSplit:
    """The transfer model's base cut where fine-tuning starts: `bottom` (images ->
    activations, frozen in both stages) and `top` (activations -> pooled features, the
    blocks stage 2 trains). Both share the base's layers."""

    bottom: keras.Model
    top: keras.Model
    at: str  # the first layer of `top`

    @property
    def cut_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.top.input_shape[1:])

    def bytes_for(self, images: int) -> int:
        """float32 bytes of the activations of `images` images."""
        return 4 * images * int(np.prod(self.cut_shape))


def split_base(model: keras.Model, model_name: str) -> BaseSplit | None:
    """The base of a transfer model split at its fine-tuning cut, or None where the
    layers from `ModelSpec.fine_tune_from` on do not hang off one tensor."""
    base = base_of(model)
    network, first = fine_tune_network(base, model_name)
    cut = network.layers[first].input
    if not isinstance(cut, keras.KerasTensor):
        return None
    top = keras.Model(cut, network.output, name=f"{network.name}_top")
    # A single cut: the top holds exactly the layers from the first block on (another
    # path from below the cut would pull more layers in).
    if len(top.layers) != len(network.layers) - first + 1:
        return None
    bottom = keras.Model(network.input, cut, name=f"{network.name}_bottom")
    if network is not base:
        # A nested network (FaceNet: an input rescaling, then the body): the base's
        # layers before it must be a chain ending in it.
        outer = base.layers
        position = outer.index(network)
        if position != len(outer) - 1 or len(base.inputs) != 1:
            return None
        inputs = keras.Input(tuple(base.input_shape[1:]), name="image")
        x = inputs
        for layer in outer[1:position]:
            x = layer(x)
        bottom = keras.Model(inputs, bottom(x), name=f"{base.name}_bottom")
    return BaseSplit(bottom, top, network.layers[first].name)


def _weights_identity(weights: str | None) -> str:
    if weights and os.path.isfile(weights):
        return f"file:{file_hash(weights, 'sha256')}"
    return str(weights)


def cache_key(config: TrainConfig, data: Any, crop_pct: float, views: int,
              cut: str | None = None) -> str:
    """A hash of everything the cached arrays depend on (`cut`: the first layer of the
    split's top when activations are cached too)."""
    identity = {
        "model": config.model, "weights": _weights_identity(config.resolved_weights()),
        "image_size": config.input_size(), "crop_pct": crop_pct, "views": views,
        # One view is the evaluation crop, whatever the seed; augmented views depend on it.
        "seed": config.seed if views > 1 else None, "data": data.source,
        "images": data.fingerprint,
        "max_per_class": config.max_per_class, "keras": keras.__version__,
    }
    if cut is not None:
        identity["cut"] = cut
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


class FeatureCache:
    """Computes (once) and loads the pooled features of the train and val images and,
    with a `BaseSplit`, their activations at the cut."""

    def __init__(self, out: str, key: str) -> None:
        self.path = os.path.join(out, CACHE_DIR, f"features-{key}.npz")
        self.backbone_passes = 0  # counted: a resumed run must not add any

    def load_or_compute(self, base: keras.Model, views: list[tf.data.Dataset],
                        val: tf.data.Dataset,
                        split: BaseSplit | None = None) -> dict[str, np.ndarray]:
        """`{"train": (views, N, D), "val": (M, D)}` (and, with `split`, `"train_cut"`:
        (views, N, *cut), `"val_cut"`: (M, *cut)) from the cache, else from `base`."""
        names = ["train", "train_labels", "val", "val_labels"]
        if split is not None:
            names += ["train_cut", "val_cut"]
        cached = self._read(names)
        if cached is not None:
            return cached
        # One traced forward pass for every batch of every split: a function per dataset
        # (or per batch size) would trace the whole backbone again each time.
        spec = [tf.TensorSpec((None, *base.input_shape[1:]), tf.float32)]
        if split is None:
            forward = tf.function(lambda x: (base(x, training=False),), input_signature=spec)
        else:
            def both(x):
                cut = split.bottom(x, training=False)
                return split.top(cut, training=False), cut

            forward = tf.function(both, input_signature=spec)
        train = [self._arrays(forward, ds) for ds in views]
        val = self._arrays(forward, val)
        arrays = {"train": np.stack([t[0] for t in train]), "train_labels": train[0][-1],
                  "val": val[0], "val_labels": val[-1]}
        if split is not None:
            arrays.update(train_cut=np.stack([t[1] for t in train]), val_cut=val[1])

        def write(staged: str) -> None:
            with open(staged, "wb") as f:
                np.savez(f, **arrays)

        files.write_atomic(self.path, write, create_parents=True)
        return arrays

    def _read(self, names: list[str]) -> dict[str, np.ndarray] | None:
        """The cached arrays; None when there is no file, or (with one warning) when it
        cannot be read whole: truncated, damaged, or without the arrays wanted."""
        if not os.path.isfile(self.path):
            return None
        try:
            with np.load(self.path) as cached:
                return {name: np.asarray(cached[name]) for name in names}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            warnings.warn(f"The feature cache {self.path} is unreadable ({reason}); computing "
                          "it again.", CacheWarning, stacklevel=3)
            return None

    def _arrays(self, forward: Any, ds: tf.data.Dataset) -> list[np.ndarray]:
        """[outputs of `forward`..., one-hot labels] of a batched, unshuffled dataset:
        one pass."""
        self.backbone_passes += 1
        batches: list[list[np.ndarray]] = []
        for x, y in ds:
            batches.append([np.asarray(t, dtype=np.float32) for t in forward(x)]
                           + [np.asarray(y)])
        return [np.concatenate(parts) for parts in zip(*batches, strict=True)]


def head_model(head: Head, feature_dim: int) -> keras.Model:
    """The transfer model's head (dropout + classifier) on feature vectors; it shares
    the layers, so training it trains the transfer model's head."""
    inputs = keras.Input((feature_dim,), name="features")
    return keras.Model(inputs, head(inputs), name="head")


def top_model(head: Head, split: BaseSplit) -> keras.Model:
    """The top blocks (in inference mode, as in the transfer model) and the head on the
    cached activations; they share the layers, so training it fine-tunes the model."""
    inputs = keras.Input(split.cut_shape, name="activations")
    return keras.Model(inputs, head(split.top(inputs, training=False)), name="top_and_head")


class ViewOfEpoch(keras.callbacks.Callback):
    """Selects the cached view epoch e trains on (e mod N)."""

    def __init__(self, view: tf.Variable, views: int) -> None:
        super().__init__()
        self.view, self.views = view, views

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.view.assign(epoch % self.views)


class CachedInputs:
    """`fit` datasets of cached arrays. Every stage draws its train order from one
    shuffled index dataset, so the order is the uncached pipeline's: the same shuffle
    (buffer, seed, reshuffled every epoch, continuing from stage to stage) of the same
    elements."""

    def __init__(self, arrays: dict[str, np.ndarray], *, batch_size: int, seed: int | None,
                 shuffle_buffer: int = 1024) -> None:
        self.arrays, self.batch_size = arrays, batch_size
        self.views = int(arrays["train"].shape[0])
        self.view = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.order = tf.data.Dataset.range(arrays["train"].shape[1]).shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        self.labels = tf.constant(arrays["train_labels"])

    def datasets(self, kind: str = "") -> tuple[tf.data.Dataset, tf.data.Dataset,
                                                 list[keras.callbacks.Callback]]:
        """(train, val, callbacks) of the pooled features (`kind=""`) or the activations
        at the cut (`kind="cut"`)."""
        suffix = f"_{kind}" if kind else ""
        views, labels, view = tf.constant(self.arrays[f"train{suffix}"]), self.labels, self.view
        train = self.order.map(
            lambda i: (views[tf.cast(view, tf.int64), i], labels[i])).batch(self.batch_size)
        val = tf.data.Dataset.from_tensor_slices(
            (self.arrays[f"val{suffix}"], self.arrays["val_labels"])).batch(self.batch_size)
        callbacks = [ViewOfEpoch(self.view, self.views)] if self.views > 1 else []
        return train.prefetch(tf.data.AUTOTUNE), val, callbacks


__all__ = ["ACTIVATION_MEMORY_SHARE", "CACHE_DIR", "DEFAULT_VIEWS", "BaseSplit", "CacheWarning",
           "CachedInputs", "FeatureCache", "activation_budget", "cache_key", "head_model",
           "split_base", "top_model"]
