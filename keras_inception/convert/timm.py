"""timm state dicts -> our models (timm `inception_v4`, `inception_resnet_v2`).

timm keys follow its module tree: Inception-v4 is one `features` sequence
(`features.N.branchB.K.conv.weight`), Inception-ResNet-v2 has named modules
(`repeat.N.branch1.0.conv.weight`, `block8`, `classif`). Each BasicConv2d holds a
conv and a BatchNorm with an affine gamma, folded into the kernel (see `engine`).

What differs between networks is declared in each one's `ModelSpec` (`timm_classifier`,
`timm_key_prefixes`, `timm_sequential`); the rest follows from the layer names: the
residual stages are timm's `repeat`, `repeat_1`, ... in network order, and a stage's
final linear block is a module named after the stage (`block8`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_inception.convert.engine import Dialect, Structure, assign, key_map, plan_assignments
from keras_inception.registry import get_spec, model_names


class TimmDialect(Dialect):
    label = "timm"
    lists_folded_gamma = True

    def stage_module(self, index: int) -> str:
        """The module (an `nn.Sequential` of blocks) of the `index`-th residual stage."""
        return f"repeat_{index}" if index else "repeat"

    def supports(self, spec):
        return spec.timm_classifier is not None

    def source_family(self, keys):
        for spec in map(get_spec, model_names()):
            if spec.timm_key_prefixes and any(k.startswith(spec.timm_key_prefixes) for k in keys):
                return spec.name
        return None

    def _block(self, s: Structure, block: str) -> str:
        if s.spec.timm_sequential:
            return f"features.{len(s.stem) + s.mixed.index(block)}"
        residual = s.residual(block)
        if residual is None:
            return block  # mixed_5b, mixed_6a, mixed_7a
        if residual.last:
            return residual.stage  # the final, linear block8 is a module of its own
        return f"{self.stage_module(residual.index)}.{residual.n - 1}"

    def name(self, s, where):
        kind = where[0]
        if kind == "head":
            return s.spec.timm_classifier
        if kind == "stem":
            if s.spec.timm_sequential:
                return f"features.{s.stem.index(where[1])}"
            return "conv2d_" + where[1][len("conv_"):]
        if kind == "up":
            return f"{self._block(s, where[1])}.conv2d"
        _, block, b, step = where
        steps, position = s.branch_step(block, b, step)
        convs_in_block = sum(st.is_conv for br in s.branches[block].values() for st in br)
        if convs_in_block == 1:
            sub = "conv"  # Mixed3a / Mixed5a hold a single conv named `conv`
        elif any(st.split for st in steps):
            sub = f"branch{b}_{step}"  # Inception-C: flat attributes branch1_1a, ...
        elif len(steps) == 1:
            sub = f"branch{b}"
        else:
            sub = f"branch{b}.{steps[position].k}"
        return f"{self._block(s, block)}.{sub}"

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

    def ignored(self, key, spec, has_top):
        if key.endswith(".num_batches_tracked"):
            return True
        return not has_top and key.startswith(spec.timm_classifier + ".")


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
