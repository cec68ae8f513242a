"""TF-slim checkpoints -> our models (`InceptionV4/...`, `InceptionResnetV2/...`).

Variables are named `Scope/Block/Branch_B/Conv2d_{0|1}{letter}_{kh}x{kw}/weights`
(each network's names are its naming table in `slim_names`); the released checkpoints
have 1001 classes (class 0 is "background") and no BatchNorm gamma (scale=False, as
our layers).
"""

from __future__ import annotations

import os

import keras

from keras_inception.convert.engine import Dialect, assign, key_map, plan_assignments
from keras_inception.convert.naming import SLIM


class SlimDialect(Dialect):
    label = "TF-slim"
    source = SLIM

    def __init__(self, background_class: bool) -> None:
        self.background_class = background_class

    def keys(self, kind, prefix):
        if kind == "conv_bn":
            return [
                ("kernel", f"{prefix}/weights", True),
                ("gamma", f"{prefix}/BatchNorm/gamma", False),  # slim Inception: scale=False
                ("beta", f"{prefix}/BatchNorm/beta", True),
                ("mean", f"{prefix}/BatchNorm/moving_mean", True),
                ("var", f"{prefix}/BatchNorm/moving_variance", True),
            ]
        return [("kernel", f"{prefix}/weights", True), ("bias", f"{prefix}/biases", True)]

    def source_shape(self, kind, slot, keras_shape):
        if kind == "dense" and self.background_class:
            return (*keras_shape[:-1], keras_shape[-1] + 1)
        return keras_shape

    def to_keras(self, kind, slot, value):
        if kind == "dense" and self.background_class:
            return value[..., 1:]  # class 0 is slim's "background"
        return value

    def skipped(self, key):
        return key == "global_step"


def slim_key_map(model: keras.Model, background_class: bool = True) -> dict[str, str]:
    """TF-slim variable name -> Keras weight path for `model` (optional gammas left out)."""
    return key_map(model, SlimDialect(background_class))


def load_slim_checkpoint(
    model: keras.Model, path: str | os.PathLike, background_class: bool = True
) -> None:
    """Loads a TF-slim `inception_v4` / `inception_resnet_v2` checkpoint into `model`.

    Args:
        model: an `InceptionV4` or `InceptionResNetV2` built by this package.
        path: checkpoint prefix (`.../inception_v4.ckpt`) or its folder.
        background_class: the checkpoint's classifier has an extra class 0
            ("background", as in the released 1001-class checkpoints) to drop.

    `AuxLogits/*` and `global_step` are ignored; everything else must match as in
    `load_timm_weights`.
    """
    import tensorflow as tf

    path = os.fspath(path)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise FileNotFoundError(f"TF-slim checkpoint not found: path={path!r}.")
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    state = {name: reader.get_tensor(name) for name in names}
    assign(plan_assignments(model, state, SlimDialect(background_class)))
