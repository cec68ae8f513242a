"""Multi-scale feature maps of every network of the registry (strides 2, 4, 8, 16, 32).

The taps are declared with each network (`ModelSpec.feature_taps`), so a new
network needs no change here. They follow timm's `feature_info` for Inception-v4 and
Inception-ResNet-v2, so a converted timm checkpoint gives the same feature maps as
`timm.create_model(..., features_only=True)`; Inception-ResNet-v1 and FaceNet get the
analogous taps. Every tap is a layer output after its activation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from keras_inception.registry import network_of, spec_of

NUM_LEVELS = 5
MAX_REDUCTION = 2 ** NUM_LEVELS


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One output of a feature extractor."""

    index: int  # level, 0..4 (timm's out_indices)
    name: str  # output name of the extractor
    layer: str  # tapped layer of the classification model
    num_chs: int
    reduction: int


def model_family(model: keras.Model) -> str:
    """The registry name of a model built by this package ("inception_v4", ...).

    Raises ValueError for a model that was not built by this package's builders.
    """
    return spec_of(model).name


def _check_out_indices(out_indices: Sequence[int]) -> tuple[int, ...]:
    try:
        indices = tuple(out_indices)
    except TypeError:
        indices = None
    valid = (
        indices
        and all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
        and all(0 <= i < NUM_LEVELS for i in indices)
        and len(set(indices)) == len(indices)
    )
    if not valid:
        raise ValueError(
            f"`out_indices` must be a non-empty sequence of distinct level indices in "
            f"0..{NUM_LEVELS - 1} (strides 2, 4, 8, 16, 32); received out_indices={out_indices!r}."
        )
    return indices


def output_stride_of(model: keras.Model) -> int:
    """The reduction of the last feature map of a network of this package: 32, or the
    `output_stride` (16 or 8) it was built with.

    Read from the layers themselves, so that it holds for a model loaded from a file:
    each reduction kept at stride 1 doubles the dilation of the convolutions after it.
    """
    _, network = network_of(model)
    dilations = [
        max(layer.dilation_rate) for layer in network.layers
        if isinstance(layer, keras.layers.Conv2D)
    ]
    return MAX_REDUCTION // max(dilations, default=1)


def feature_info(
    model: keras.Model, out_indices: Sequence[int] = (0, 1, 2, 3, 4)
) -> list[FeatureInfo]:
    """The levels `feature_extractor(model, out_indices)` returns: channels, stride, layer.

    `reduction` is the level's true stride: with `output_stride=16` (or 8) the levels
    beyond it stay at 16 (or 8).
    """
    indices = _check_out_indices(out_indices)
    taps = spec_of(model).feature_taps
    output_stride = output_stride_of(model)
    return [
        FeatureInfo(index=i, name=f"feature_{i}", layer=taps[i].layer, num_chs=taps[i].channels,
                    reduction=min(taps[i].reduction, output_stride))
        for i in indices
    ]


def feature_extractor(
    model: keras.Model, out_indices: Sequence[int] = (0, 1, 2, 3, 4)
) -> keras.Model:
    """A `keras.Model` returning the feature maps of `model` at the chosen levels.

    Levels 0..4 are at strides 2, 4, 8, 16, 32, with the channels of the network's
    `ModelSpec.feature_taps` (64/160/384/1024/1536 for Inception-v4,
    64/192/320/1088/1536 for Inception-ResNet-v2, 64/192/256/896/1792 for
    Inception-ResNet-v1 and FaceNet). The extractor shares its layers and weights with
    `model` (built with or without the head) and takes the same input, so build
    `model` with `include_top=False` and no `input_shape` to accept any size >= 75.

    Outputs are named `feature_{level}`; `extractor.feature_info` lists
    `FeatureInfo(index, name, layer, num_chs, reduction)` for each output.
    """
    infos = feature_info(model, out_indices)
    _, model = network_of(model)  # the network itself, when nested in `model`
    outputs = [
        # Identity gives each output a stable name independent of the tapped layer.
        keras.layers.Identity(name=info.name)(model.get_layer(info.layer).output)
        for info in infos
    ]
    extractor = keras.Model(model.input, outputs, name=f"{model.name}_features")
    extractor.feature_info = tuple(infos)
    return extractor
