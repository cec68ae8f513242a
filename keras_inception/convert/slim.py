"""TF-slim checkpoints -> our models (`InceptionV4/...`, `InceptionResnetV2/...`).

Variables are named `Scope/Block/Branch_B/Conv2d_{0|1}{letter}_{kh}x{kw}/weights`;
the released checkpoints have 1001 classes (class 0 is "background") and no
BatchNorm gamma (scale=False, as our layers). A network's scope and its exceptions to
the naming rule are declared in its `ModelSpec` (`slim_scope`, `slim_conv_0a_blocks`,
`slim_conv2d_1x1`).
"""

from __future__ import annotations

import os

import keras

from keras_inception.convert.engine import Dialect, Structure, assign, key_map, plan_assignments
from keras_inception.registry import get_spec, model_names


class SlimDialect(Dialect):
    label = "TF-slim"

    def __init__(self, background_class: bool) -> None:
        self.background_class = background_class

    def supports(self, spec):
        return spec.slim_scope is not None

    def source_family(self, keys):
        for spec in map(get_spec, model_names()):
            if spec.slim_scope and any(k.startswith(spec.slim_scope + "/") for k in keys):
                return spec.name
        return None

    def _block(self, s: Structure, block: str) -> str:
        residual = s.residual(block)
        if residual is None:
            return block[0].upper() + block[1:]  # mixed_5b -> Mixed_5b
        if residual.last:
            return residual.stage.capitalize()  # the final, linear block: Block8
        # slim.repeat's scopes: Repeat, Repeat_1, ... in network order.
        index = residual.index
        return f"{f'Repeat_{index}' if index else 'Repeat'}/{block}"

    # The classifier's scope below the network's.
    head_parts: tuple[str, ...] = ("Logits", "Logits")

    def path(self, s: Structure, *parts: str) -> str:
        """A variable scope from its parts: `Scope/Part/Part` (dialects of slim names that
        join them otherwise override this)."""
        return "/".join((s.spec.slim_scope, *parts))

    def name(self, s, where):
        kind = where[0]
        if kind == "head":
            return self.path(s, *self.head_parts)
        if kind == "stem":
            kh, kw = s.layers[where[1]].kernel_size
            return self.path(s, f"Conv2d_{where[1][len('conv_'):]}_{kh}x{kw}")
        if kind == "up":
            return self.path(s, self._block(s, where[1]), "Conv2d_1x1")
        _, block, b, step = where
        return self.path(s, self._block(s, block), f"Branch_{b}", self.conv_name(s, block, b, step))

    @staticmethod
    def conv_name(s: Structure, block: str, b: int, step: str) -> str:
        """`Conv2d_{0|1}{letter}_{kh}x{kw}` (or `Conv2d_1x1`) of a branch step, the
        TF-slim convention that FaceNet's files follow too."""
        steps, position = s.branch_step(block, b, step)
        current = steps[position]
        kh, kw = current.layer.kernel_size
        if block in s.spec.slim_conv_0a_blocks:
            # Scopes that break the rule below (a VALID conv named 0a).
            conv = f"Conv2d_0a_{kh}x{kw}"
        elif s.spec.slim_conv2d_1x1 and len(steps) == 1 and (kh, kw) == (1, 1):
            conv = "Conv2d_1x1"  # Inception-ResNet single 1x1 branches
        else:
            # Conv2d_{0|1}{letter}_{kh}x{kw}: 1 for VALID steps, letters count the
            # branch's earlier steps (pools included) of the same kind.
            earlier = sum(1 for st in steps[:position] if st.valid == current.valid)
            conv = f"Conv2d_{int(current.valid)}{chr(ord('a') + earlier)}_{kh}x{kw}"
        return conv

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

    def ignored(self, key, spec, has_top):
        scope = spec.slim_scope
        if key == "global_step" or key.startswith(f"{scope}/AuxLogits/"):
            return True
        return not has_top and key.startswith(f"{scope}/Logits/")


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
