"""timm state dicts -> our models (timm `inception_v4`, `inception_resnet_v2`).

timm keys follow its module tree (`features.6.branch1.0.conv.weight`,
`repeat.3.branch1.0.conv.weight`, `classif.weight`); how each network's modules are
named is its naming table in `timm_names`. Each BasicConv2d holds a conv and a
BatchNorm with an affine gamma, folded into the kernel (see `engine`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.convert.engine import Dialect, assign, key_map, plan_assignments
from keras_inception.convert.naming import TIMM


class TimmDialect(Dialect):
    label = "timm"
    source = TIMM
    lists_folded_gamma = True

    def keys(self, kind, prefix):
        if kind == "conv_bn":
            return [
                ("kernel", f"{prefix}.conv.weight", True),
                ("gamma", f"{prefix}.bn.weight", True),
                ("beta", f"{prefix}.bn.bias", True),
                ("mean", f"{prefix}.bn.running_mean", True),
                ("var", f"{prefix}.bn.running_var", True),
            ]
        return [("kernel", f"{prefix}.weight", True), ("bias", f"{prefix}.bias", True)]

    def source_shape(self, kind, slot, keras_shape):
        if slot != "kernel":
            return keras_shape
        if kind == "dense":
            return keras_shape[::-1]  # (out, in)
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)

    def to_keras(self, kind, slot, value):
        if slot != "kernel":
            return value
        return value.T if kind == "dense" else value.transpose(2, 3, 1, 0)

    def skipped(self, key):
        return key.endswith(".num_batches_tracked")


def timm_key_map(model: keras.Model) -> dict[str, str]:
    """timm key -> Keras weight path for `model` (num_batches_tracked left out)."""
    return key_map(model, TimmDialect())


def load_timm_weights(model: keras.Model, state_dict: Mapping[str, Any]) -> None:
    """Loads a timm `inception_v4` / `inception_resnet_v2` state dict into `model`.

    Args:
        model: an `InceptionV4` or `InceptionResNetV2` built by this package, with
            or without the head (without it the classifier keys are ignored).
        state_dict: timm key -> array (NumPy, or anything `np.asarray` accepts).

    Raises:
        ValueError: wrong family, missing / unexpected keys, wrong shapes, or a
            classifier with another number of classes; the model is then unchanged.
    """
    assign(plan_assignments(model, state_dict, TimmDialect()))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A timm state dict from `.safetensors` or `.npz`, as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"State dict file not found: {path!r}.")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    raise ValueError(
        f"Unsupported state dict file {path!r}: use .safetensors or .npz (convert a torch "
        "`.pth`/`.bin` with `safetensors.torch.save_file(state_dict, 'model.safetensors')`)."
    )
