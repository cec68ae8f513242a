"""Multi-scale feature maps of the three networks (strides 2, 4, 8, 16, 32).

The taps follow timm's `feature_info` for Inception-v4 and Inception-ResNet-v2, so a
converted timm checkpoint gives the same feature maps as `timm.create_model(...,
features_only=True)`; Inception-ResNet-v1 gets the analogous taps. Every tap is a
layer output after its activation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

# Layers that identify each architecture (names set by the builders).
_SIGNATURES = {
    "inception_v4": ("conv_2b", "mixed_3a", "mixed_5a", "mixed_7d"),
    "inception_resnet_v2": ("conv_4a", "mixed_5b", "block35_10", "block8_10", "conv_7b"),
    "inception_resnet_v1": ("conv_4b", "block35_5", "block17_10", "block8_5"),
}

# (layer, channels, reduction) per level; reductions are timm's nominal strides.
FEATURE_TAPS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "inception_v4": (
        ("conv_2b_ac", 64, 2),
        ("mixed_3a", 160, 4),
        ("mixed_5e", 384, 8),
        ("mixed_6h", 1024, 16),
        ("mixed_7d", 1536, 32),
    ),
    "inception_resnet_v2": (
        ("conv_2b_ac", 64, 2),
        ("conv_4a_ac", 192, 4),
        ("block35_10", 320, 8),
        ("block17_20", 1088, 16),
        ("conv_7b_ac", 1536, 32),
    ),
    "inception_resnet_v1": (
        ("conv_2b_ac", 64, 2),
        ("conv_4a_ac", 192, 4),
        ("block35_5", 256, 8),
        ("block17_10", 896, 16),
        ("block8_5", 1792, 32),
    ),
}

NUM_LEVELS = 5


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One output of a feature extractor."""

    index: int  # level, 0..4 (timm's out_indices)
    name: str  # output name of the extractor
    layer: str  # tapped layer of the classification model
    num_chs: int
    reduction: int


def model_family(model: keras.Model) -> str:
    """"inception_v4", "inception_resnet_v1" or "inception_resnet_v2", from layer names.

    Raises ValueError for a model that was not built by this package's builders.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model built by keras_inception; received {type(model).__name__}."
        )
    names = {layer.name for layer in model.layers}
    for family, signature in _SIGNATURES.items():
        if names.issuperset(signature):
            return family
    raise ValueError(
        f"Model {model.name!r} is not one of keras_inception's networks (InceptionV4, "
        "InceptionResNetV1, InceptionResNetV2): its layers do not carry their names."
    )


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


def feature_info(
    model: keras.Model, out_indices: Sequence[int] = (0, 1, 2, 3, 4)
) -> list[FeatureInfo]:
    """The levels `feature_extractor(model, out_indices)` returns: channels, stride, layer."""
    indices = _check_out_indices(out_indices)
    taps = FEATURE_TAPS[model_family(model)]
    return [
        FeatureInfo(index=i, name=f"feature_{i}", layer=taps[i][0], num_chs=taps[i][1],
                    reduction=taps[i][2])
        for i in indices
    ]


def feature_extractor(
    model: keras.Model, out_indices: Sequence[int] = (0, 1, 2, 3, 4)
) -> keras.Model:
    """A `keras.Model` returning the feature maps of `model` at the chosen levels.

    Levels 0..4 are at strides 2, 4, 8, 16, 32 (channels 64/160/384/1024/1536 for
    Inception-v4, 64/192/320/1088/1536 for Inception-ResNet-v2, 64/192/256/896/1792
    for Inception-ResNet-v1). The extractor shares its layers and weights with
    `model` (built with or without the head) and takes the same input, so build
    `model` with `include_top=False` and no `input_shape` to accept any size >= 75.

    Outputs are named `feature_{level}`; `extractor.feature_info` lists
    `FeatureInfo(index, name, layer, num_chs, reduction)` for each output.
    """
    infos = feature_info(model, out_indices)
    outputs = [
        # Identity gives each output a stable name independent of the tapped layer.
        keras.layers.Identity(name=info.name)(model.get_layer(info.layer).output)
        for info in infos
    ]
    extractor = keras.Model(model.input, outputs, name=f"{model.name}_features")
    extractor.feature_info = tuple(infos)
    return extractor
