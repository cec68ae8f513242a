"""Building blocks shared by the networks (Inception-v4, Inception-ResNet-v1 and -v2).

Blocks are described by *branch specs* so that the networks assemble the same few
functions instead of repeating block code.  A branch is a list of steps:

* `(filters, kernel)` or `(filters, kernel, strides, padding)`: a conv-BN-ReLU unit;
* `AVG_POOL` (3x3, stride 1, same) or `MAX_POOL` (3x3, stride 2, valid);
* a final `Split(spec_a, spec_b)`: two parallel convs on the branch output, both
  concatenated (Inception-v4's Inception-C block).

Branch outputs are concatenated in the order given, which is the order of TF-slim,
timm and keras.applications (the pretrained weights depend on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import keras
from keras import layers

from keras_inception.layers import ScaledResidual

AVG_POOL = "avg_pool"
MAX_POOL = "max_pool"


class Split(NamedTuple):
    """Two parallel convs ending a branch; both outputs join the block's concat."""

    a: tuple
    b: tuple


def channel_axis() -> int:
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def conv2d_bn(
    x,
    filters: int,
    kernel_size: int | Sequence[int],
    strides: int = 1,
    padding: str = "same",
    activation: str | None = "relu",
    use_bias: bool = False,
    name: str | None = None,
):
    """Conv2D -> BatchNormalization(scale=False, epsilon=1e-3) -> activation.

    With `use_bias=True` there is no BatchNormalization (the residual up-projection).
    Layers are named `name`, `name_bn`, `name_ac`, as in keras.applications.
    """
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, name=name
    )(x)
    if not use_bias:
        x = layers.BatchNormalization(
            axis=channel_axis(), scale=False, name=None if name is None else f"{name}_bn"
        )(x)
    if activation is not None:
        x = layers.Activation(activation, name=None if name is None else f"{name}_ac")(x)
    return x


def _conv_step(x, step: tuple, name: str):
    filters, kernel, *rest = step
    strides, padding = rest if rest else (1, "same")
    return conv2d_bn(x, filters, kernel, strides=strides, padding=padding, name=name)


def inception_branches(x, branches: Sequence[Sequence], name: str) -> list:
    """Runs each branch spec on `x` and returns the list of outputs to concatenate.

    Conv units are named `{name}_branch{b}_{k}` (k counts the steps of branch b,
    pools included, as timm numbers its modules); split convs get `a`/`b` suffixes.
    """
    outputs = []
    for b, branch in enumerate(branches):
        y = x
        for k, step in enumerate(branch):
            unit = f"{name}_branch{b}_{k}"
            if step == AVG_POOL:
                y = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{unit}_pool")(y)
            elif step == MAX_POOL:
                y = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{unit}_pool")(y)
            elif isinstance(step, Split):
                outputs.append(_conv_step(y, step.a, f"{unit}a"))
                y = _conv_step(y, step.b, f"{unit}b")
            else:
                y = _conv_step(y, step, unit)
        outputs.append(y)
    return outputs


def inception_block(x, branches: Sequence[Sequence], name: str):
    """A plain Inception (or reduction) block: concatenated parallel branches."""
    outputs = inception_branches(x, branches, name)
    return layers.Concatenate(axis=channel_axis(), name=name)(outputs)


def inception_resnet_block(
    x,
    branches: Sequence[Sequence],
    scale: float,
    name: str,
    activation: str | None = "relu",
    drop_path_rate: float = 0.0,
):
    """Inception-ResNet block: `activation(x + scale * up(concat(branches(x))))`.

    Layers: `{name}_mixed` (concat), `{name}_conv` (1x1 up-projection with bias, no
    BN), `{name}` (the ScaledResidual sum) and `{name}_ac` (the activation, absent
    from a linear block), with keras.applications' names.
    """
    mixed = layers.Concatenate(axis=channel_axis(), name=f"{name}_mixed")(
        inception_branches(x, branches, name)
    )
    up = conv2d_bn(
        mixed, x.shape[channel_axis()], 1, activation=None, use_bias=True, name=f"{name}_conv"
    )
    x = ScaledResidual(scale, activation=None, drop_path_rate=drop_path_rate, name=name)([x, up])
    if activation is None:
        return x
    return layers.Activation(activation, name=f"{name}_ac")(x)


def residual_stage(
    x,
    branches: Sequence[Sequence],
    *,
    prefix: str,
    repeats: int,
    scale: float,
    drop_path_rates: Sequence[float],
    last_linear: bool = False,
):
    """`repeats` Inception-ResNet blocks named `{prefix}_1..N`.

    With `last_linear` the final block has scale 1.0 and no activation, as in the
    released Inception-ResNet-v2 (`block8_10`).
    """
    for i in range(1, repeats + 1):
        linear = last_linear and i == repeats
        x = inception_resnet_block(
            x,
            branches,
            scale=1.0 if linear else scale,
            name=f"{prefix}_{i}",
            activation=None if linear else "relu",
            drop_path_rate=drop_path_rates[i - 1],
        )
    return x


def stem_convs(x):
    """The first three convs of every network: 149->147->147 at 299."""
    x = conv2d_bn(x, 32, 3, strides=2, padding="valid", name="conv_1a")
    x = conv2d_bn(x, 32, 3, padding="valid", name="conv_2a")
    return conv2d_bn(x, 64, 3, name="conv_2b")


def inception_resnet_stem(x, *, last: str):
    """Inception-v3-style stem of the Inception-ResNets (35x35 output at 299).

    `last="pool"`: 3x3/2 max pool (released IR-v2, 192 channels);
    `last="conv"`: 3x3/2 conv with 256 filters (IR-v1, paper figure 14).
    """
    x = stem_convs(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool_3a")(x)
    x = conv2d_bn(x, 80, 1, padding="valid", name="conv_3b")
    x = conv2d_bn(x, 192, 3, padding="valid", name="conv_4a")
    if last == "pool":
        return layers.MaxPooling2D(3, strides=2, name="pool_5a")(x)
    return conv2d_bn(x, 256, 3, strides=2, padding="valid", name="conv_4b")


def reduction_a(x, k: int, l: int, m: int, n: int, name: str = "mixed_6a"):
    """Reduction-A (paper figure 7): 35x35 -> 17x17, filter counts k, l, m, n."""
    return inception_block(
        x,
        [
            [(n, 3, 2, "valid")],
            [(k, 1), (l, 3), (m, 3, 2, "valid")],
            [MAX_POOL],
        ],
        name,
    )


def inception_resnet_reduction_b(x, filters: Sequence[int], name: str = "mixed_7a"):
    """Reduction-B of the Inception-ResNets (figure 12): 17x17 -> 8x8.

    `filters` = (b0, b1, b2a, b2b): 256->b0/2 || 256->b1/2 || 256->b2a->b2b/2 || pool.
    """
    b0, b1, b2a, b2b = filters
    return inception_block(
        x,
        [
            [(256, 1), (b0, 3, 2, "valid")],
            [(256, 1), (b1, 3, 2, "valid")],
            [(256, 1), (b2a, 3), (b2b, 3, 2, "valid")],
            [MAX_POOL],
        ],
        name,
    )


def drop_path_schedule(rate: float, num_blocks: int) -> list[float]:
    """Stochastic-depth rates rising linearly from rate/num_blocks to `rate`."""
    return [rate * (i + 1) / num_blocks for i in range(num_blocks)]
