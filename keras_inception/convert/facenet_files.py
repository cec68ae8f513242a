"""FaceNet's original weight files -> our `FaceNet` model.

* `facenet_keras.h5` (keras-facenet, a Keras 2.1.2 full model): its 21 `Lambda`
  layers hold Python 3.6 bytecode that Keras 3 cannot load, so the file is read
  with h5py, by layer name (`Conv2d_1a_3x3`, `Block35_1_Branch_2_Conv2d_0c_3x3`,
  `Block8_6_Conv2d_1x1`, `Bottleneck`, `Bottleneck_BatchNorm`: TF-slim names joined
  by `_`), never executing the stored code;
* facenet-pytorch state dicts (`20180402-114759-vggface2.pt`, ...), module names
  `conv2d_1a`, `repeat_1.0.branch1.0`, `block8`, `last_linear`, `last_bn` (timm's
  convention with other stage names). A classifier head (`logits.*`, saved with
  `classify=True`) is ignored: the embedding does not depend on it.

Both go through the strict engine: every tensor used, every weight assigned, same
shapes, else a ValueError naming the keys and the model unchanged. BatchNorm gammas
(facenet-pytorch's BN is affine) are folded into the kernels.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.convert.engine import assign, key_map, plan_assignments
from keras_inception.convert.naming import FACENET_KERAS, FACENET_PYTORCH
from keras_inception.convert.slim import SlimDialect
from keras_inception.convert.timm import TimmDialect

KERAS_SOURCE = FACENET_KERAS
PYTORCH_SOURCE = FACENET_PYTORCH
# A layer that only FaceNet's Keras file has (its residual sums are Lambda layers).
_KERAS_MARKER = "Block35_1_ScaleSum"
TORCH_HINT = "pip install 'keras_inception[torch]'"
# What `read_facenet_pytorch` reads: tensors only, loaded without running the file's code.
PYTORCH_ACCEPTED = (
    "a state dict of tensors, as torch.save(model.state_dict(), path) writes "
    "(facenet-pytorch's release .pt files)"
)


class FacenetKerasDialect(SlimDialect):
    label = "facenet_keras.h5"
    source = FACENET_KERAS

    def __init__(self) -> None:
        super().__init__(background_class=False)

    def keys(self, kind, prefix):
        if kind in ("conv_bn", "dense_bn"):
            bn = f"{prefix}_BatchNorm"
            return [
                ("kernel", f"{prefix}/kernel", True),
                ("gamma", f"{bn}/gamma", False),  # the released file has scale=False
                ("beta", f"{bn}/beta", True),
                ("mean", f"{bn}/moving_mean", True),
                ("var", f"{bn}/moving_variance", True),
            ]
        return [("kernel", f"{prefix}/kernel", True), ("bias", f"{prefix}/bias", True)]

    def source_shape(self, kind, slot, keras_shape):
        return keras_shape

    def to_keras(self, kind, slot, value):
        return value

    def skipped(self, key):
        return False


class FacenetPytorchDialect(TimmDialect):
    label = "facenet-pytorch"
    source = FACENET_PYTORCH

    def keys(self, kind, prefix):
        if kind == "dense_bn":
            return [
                ("kernel", f"{prefix}.weight", True),
                ("gamma", "last_bn.weight", True),
                ("beta", "last_bn.bias", True),
                ("mean", "last_bn.running_mean", True),
                ("var", "last_bn.running_var", True),
            ]
        return super().keys(kind, prefix)

    def source_shape(self, kind, slot, keras_shape):
        return super().source_shape("dense" if kind == "dense_bn" else kind, slot, keras_shape)

    def to_keras(self, kind, slot, value):
        return super().to_keras("dense" if kind == "dense_bn" else kind, slot, value)


def _model_config(f) -> str | None:
    """The model config (JSON text) of a Keras 2 full-model h5 that holds weights, else None."""
    config = f.attrs.get("model_config")
    if config is None or "model_weights" not in f:
        return None
    return config.decode("utf-8") if isinstance(config, bytes) else config


def is_facenet_keras_h5(path: str | os.PathLike) -> bool:
    """Whether `path` is keras-facenet's Keras 2 `facenet_keras.h5` (by its content)."""
    import h5py

    try:
        with h5py.File(os.fspath(path), "r") as f:
            config = _model_config(f)
            return config is not None and _KERAS_MARKER in config
    except OSError:
        return False


def read_facenet_keras_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`{"Layer/weight": array}` of a `facenet_keras.h5`, read with h5py (no code runs)."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FaceNet Keras file not found: {path!r}.")
    try:
        with h5py.File(path, "r") as f:
            config = _model_config(f)
            if config is None or _KERAS_MARKER not in config:
                raise ValueError(
                    f"{path!r} is not keras-facenet's facenet_keras.h5: it has no "
                    f"{_KERAS_MARKER} layer (a Keras 2 FaceNet Inception-ResNet-v1 full model)."
                )
            json.loads(config)  # a damaged config is a damaged file
            state = {}
            group = f["model_weights"]
            for layer in group:
                for name in group[layer].attrs.get("weight_names", []):
                    name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
                    short = name.split("/")[-1].split(":")[0]
                    state[f"{layer}/{short}"] = np.asarray(group[layer][name])
    except (OSError, KeyError) as e:
        raise ValueError(
            f"Cannot read {path!r} as facenet_keras.h5 ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): the file is truncated or damaged."
        ) from None
    return state


def _torch_load_reason(error: Exception) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in a few words. Never torch's
    own text for a file its tensors-only unpickler refuses: that advises loading the file
    with arbitrary code execution, unsafe for a file from elsewhere."""
    import pickle

    message = str(error).strip()
    if isinstance(error, pickle.UnpicklingError):
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
        if match:
            return f"it holds the Python object {match[1]}, not only tensors"
        return "truncated or not a .pt file of tensors"
    sentence = message.splitlines()[0].split(". ")[0].rstrip(".") if message else ""
    if not sentence or len(sentence) > 160:
        return f"truncated or not a .pt file ({type(error).__name__})"
    return f"truncated or not a .pt file ({type(error).__name__}: {sentence})"


def read_facenet_pytorch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a facenet-pytorch `.pt` file, as NumPy arrays (needs torch)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"facenet-pytorch file not found: {path!r}.")
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"Reading the facenet-pytorch file {path!r} needs PyTorch: {TORCH_HINT}."
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged files
        raise ValueError(
            f"Cannot read {path!r} as a facenet-pytorch file: {_torch_load_reason(e)}. "
            f"Accepted: {PYTORCH_ACCEPTED}."
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path!r} holds a {type(state).__name__}, not a state dict. "
            f"Accepted: {PYTORCH_ACCEPTED}."
        )
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def facenet_keras_key_map(model: keras.Model) -> dict[str, str]:
    """`facenet_keras.h5` weight -> Keras weight path for a `FaceNet` model."""
    return key_map(model, FacenetKerasDialect())


def facenet_pytorch_key_map(model: keras.Model) -> dict[str, str]:
    """facenet-pytorch key -> Keras weight path for a `FaceNet` model."""
    return key_map(model, FacenetPytorchDialect())


def load_facenet_keras_weights(model: keras.Model, source: str | os.PathLike | Mapping) -> None:
    """Loads `facenet_keras.h5` (a path, or the dict `read_facenet_keras_h5` returns)."""
    state = source if isinstance(source, Mapping) else read_facenet_keras_h5(source)
    assign(plan_assignments(model, state, FacenetKerasDialect()))


def load_facenet_pytorch_weights(model: keras.Model, source: str | os.PathLike | Mapping) -> None:
    """Loads a facenet-pytorch state dict (a `.pt` path, or key -> array)."""
    state: Any = source if isinstance(source, Mapping) else read_facenet_pytorch(source)
    assign(plan_assignments(model, state, FacenetPytorchDialect()))


__all__ = [
    "facenet_keras_key_map",
    "facenet_pytorch_key_map",
    "is_facenet_keras_h5",
    "load_facenet_keras_weights",
    "load_facenet_pytorch_weights",
    "read_facenet_keras_h5",
    "read_facenet_pytorch",
]
