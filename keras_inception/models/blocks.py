"""Building blocks shared by the networks (Inception-v4, Inception-ResNet-v1 and -v2).

Blocks are described by *branch specs* so that the networks assemble the same few
functions instead of repeating block code.  A branch is a list of steps:

* `(filters, kernel)` or `(filters, kernel, strides, padding)`: a conv-BN-ReLU unit;
* `AVG_POOL` (3x3, stride 1, same) or `MAX_POOL` (3x3, stride 2, valid);
* a final `Split(spec_a, spec_b)`: two parallel convs on the branch output, both
  concatenated (Inception-v4's Inception-C block).

A `Geometry` carries TF-slim's two dense-prediction options through the blocks:
`align` (SAME padding in every VALID conv and pool) and `output_stride` (reductions
beyond it keep stride 1 and the layers after them are dilated, as in DeepLab). Its
defaults build the released networks unchanged.

Branch outputs are concatenated in the order given, which is the order of TF-slim,
timm and keras.applications (the pretrained weights depend on it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
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


OUTPUT_STRIDES = (8, 16, 32)


class Geometry:
    """Padding, strides and dilation of the convs and pools as a network is built.

    `align=True` turns every VALID conv and pool into SAME, so that an input divisible
    by 32 gives maps of exactly H/2, H/4, H/8, H/16 and H/32. Once the input is reduced
    `output_stride` times, each later reduction keeps stride 1 (SAME, at the current
    dilation) and doubles the dilation of the 3x3, 1x7, ... convs after it (atrous
    convolution). Kernels keep their shapes, so pretrained weights load unchanged.

    The builders wrap each reduction (a strided conv, or a block of strided branches) in
    `with geometry.reduction():`; `stride` and `dilation` say where the build is.
    """

    def __init__(self, align: bool = False, output_stride: int = 32):
        self.align = align
        self.output_stride = output_stride
        self.stride = 1  # input pixels per output pixel so far
        self.dilation = 1  # of the convs at this depth
        self._reducing = False

    @property
    def atrous(self) -> bool:
        """Whether the current reduction keeps stride 1 (the output stride is reached)."""
        return self.stride >= self.output_stride

    def _padding(self, padding: str) -> str:
        return "same" if self.align else padding

    def conv_args(self, kernel_size: int | Sequence[int], strides: int, padding: str) -> dict:
        """`Conv2D` keyword arguments for a conv of the released network."""
        kernel = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
        dilation = self.dilation if max(kernel) > 1 else 1
        if strides == 1:
            return {"strides": 1, "padding": self._padding(padding), "dilation_rate": dilation}
        self._check_reducing()
        if self.atrous:
            return {"strides": 1, "padding": "same", "dilation_rate": dilation}
        return {"strides": strides, "padding": self._padding(padding)}

    def max_pool_args(self) -> dict:
        """`MaxPooling2D(3)` keyword arguments for a 3x3/2 reduction pool."""
        self._check_reducing()
        if self.atrous:
            return {"strides": 1, "padding": "same"}
        return {"strides": 2, "padding": self._padding("valid")}

    def _check_reducing(self) -> None:
        if not self._reducing:
            raise RuntimeError("A strided layer was built outside `Geometry.reduction()`.")

    @contextlib.contextmanager
    def reduction(self) -> Iterator[None]:
        """Builds one 2x reduction: strided, or stride 1 with the dilation doubled after."""
        atrous = self.atrous
        self._reducing = True
        try:
            yield
        finally:
            self._reducing = False
        if atrous:
            self.dilation *= 2
        else:
            self.stride *= 2


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
    dilation_rate: int = 1,
):
    """Conv2D -> BatchNormalization(scale=False, epsilon=1e-3) -> activation.

    With `use_bias=True` there is no BatchNormalization (the residual up-projection).
    Layers are named `name`, `name_bn`, `name_ac`, as in keras.applications.
    """
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
        use_bias=use_bias, name=name,
    )(x)
    if not use_bias:
        x = layers.BatchNormalization(
            axis=channel_axis(), scale=False, name=None if name is None else f"{name}_bn"
        )(x)
    if activation is not None:
        x = layers.Activation(activation, name=None if name is None else f"{name}_ac")(x)
    return x


def _conv_step(x, step: tuple, name: str, geometry: Geometry):
    filters, kernel, *rest = step
    strides, padding = rest if rest else (1, "same")
    return conv2d_bn(x, filters, kernel, name=name, **geometry.conv_args(kernel, strides, padding))


def _reduces(branches: Sequence[Sequence]) -> bool:
    steps = [step for branch in branches for step in branch]
    return MAX_POOL in steps or any(
        isinstance(step, tuple) and not isinstance(step, Split) and len(step) > 2 and step[2] > 1
        for step in steps
    )


def inception_branches(x, branches: Sequence[Sequence], name: str, geometry: Geometry) -> list:
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
                y = layers.MaxPooling2D(3, name=f"{unit}_pool", **geometry.max_pool_args())(y)
            elif isinstance(step, Split):
                outputs.append(_conv_step(y, step.a, f"{unit}a", geometry))
                y = _conv_step(y, step.b, f"{unit}b", geometry)
            else:
                y = _conv_step(y, step, unit, geometry)
        outputs.append(y)
    return outputs


def inception_block(x, branches: Sequence[Sequence], name: str, geometry: Geometry | None = None):
    """A plain Inception (or reduction) block: concatenated parallel branches.

    A block with strided branches is one reduction of `geometry`.
    """
    geometry = geometry or Geometry()
    reduction = geometry.reduction() if _reduces(branches) else contextlib.nullcontext()
    with reduction:
        outputs = inception_branches(x, branches, name, geometry)
    return layers.Concatenate(axis=channel_axis(), name=name)(outputs)


def inception_resnet_block(
    x,
    branches: Sequence[Sequence],
    scale: float,
    name: str,
    activation: str | None = "relu",
    drop_path_rate: float = 0.0,
    geometry: Geometry | None = None,
):
    """Inception-ResNet block: `activation(x + scale * up(concat(branches(x))))`.

    Layers: `{name}_mixed` (concat), `{name}_conv` (1x1 up-projection with bias, no
    BN), `{name}` (the ScaledResidual sum) and `{name}_ac` (the activation, absent
    from a linear block), with keras.applications' names.
    """
    mixed = layers.Concatenate(axis=channel_axis(), name=f"{name}_mixed")(
        inception_branches(x, branches, name, geometry or Geometry())
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
    geometry: Geometry | None = None,
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
            geometry=geometry,
        )
    return x


def stem_convs(x, geometry: Geometry | None = None):
    """The first three convs of every network: 149->147->147 at 299."""
    geometry = geometry or Geometry()
    with geometry.reduction():
        x = _conv_step(x, (32, 3, 2, "valid"), "conv_1a", geometry)
    x = _conv_step(x, (32, 3, 1, "valid"), "conv_2a", geometry)
    return _conv_step(x, (64, 3), "conv_2b", geometry)


def _max_pool(x, name: str, geometry: Geometry):
    with geometry.reduction():
        return layers.MaxPooling2D(3, name=name, **geometry.max_pool_args())(x)


def inception_resnet_stem(x, *, last: str, geometry: Geometry | None = None):
    """Inception-v3-style stem of the Inception-ResNets (35x35 output at 299).

    `last="pool"`: 3x3/2 max pool (released IR-v2, 192 channels);
    `last="conv"`: 3x3/2 conv with 256 filters (IR-v1, paper figure 14).
    """
    geometry = geometry or Geometry()
    x = stem_convs(x, geometry)
    x = _max_pool(x, "pool_3a", geometry)
    x = _conv_step(x, (80, 1, 1, "valid"), "conv_3b", geometry)
    x = _conv_step(x, (192, 3, 1, "valid"), "conv_4a", geometry)
    if last == "pool":
        return _max_pool(x, "pool_5a", geometry)
    with geometry.reduction():
        return _conv_step(x, (256, 3, 2, "valid"), "conv_4b", geometry)


def reduction_a(x, k: int, l: int, m: int, n: int, name: str = "mixed_6a",
                geometry: Geometry | None = None):
    """Reduction-A (paper figure 7): 35x35 -> 17x17, filter counts k, l, m, n."""
    return inception_block(
        x,
        [
            [(n, 3, 2, "valid")],
            [(k, 1), (l, 3), (m, 3, 2, "valid")],
            [MAX_POOL],
        ],
        name,
        geometry,
    )


def inception_resnet_reduction_b(x, filters: Sequence[int], name: str = "mixed_7a",
                                 geometry: Geometry | None = None):
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
        geometry,
    )


def drop_path_schedule(rate: float, num_blocks: int) -> list[float]:
    """Stochastic-depth rates rising linearly from rate/num_blocks to `rate`."""
    return [rate * (i + 1) / num_blocks for i in range(num_blocks)]
