"""Inception-v4 (TF-slim = timm, the paper's figures 3-9)."""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.models.blocks import (
    AVG_POOL,
    MAX_POOL,
    Geometry,
    Split,
    inception_block,
    reduction_a,
    stem_convs,
)
from keras_inception.models.builder import build_model, document_builder
from keras_inception.registry import FeatureTap, ModelSpec, WeightsPreset, get_spec, register_model

MODEL_NAME = "inception_v4"

MIXED_3A = [[MAX_POOL], [(96, 3, 2, "valid")]]
MIXED_4A = [
    [(64, 1), (96, 3, 1, "valid")],
    [(64, 1), (64, (1, 7)), (64, (7, 1)), (96, 3, 1, "valid")],
]
MIXED_5A = [[(192, 3, 2, "valid")], [MAX_POOL]]
INCEPTION_A = [[(96, 1)], [(64, 1), (96, 3)], [(64, 1), (96, 3), (96, 3)], [AVG_POOL, (96, 1)]]
# slim/timm order: 7x1 before 1x7 in the long branch (weights come from there).
INCEPTION_B = [
    [(384, 1)],
    [(192, 1), (224, (1, 7)), (256, (7, 1))],
    [(192, 1), (192, (7, 1)), (224, (1, 7)), (224, (7, 1)), (256, (1, 7))],
    [AVG_POOL, (128, 1)],
]
REDUCTION_B = [
    [(192, 1), (192, 3, 2, "valid")],
    [(256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, 2, "valid")],
    [MAX_POOL],
]
INCEPTION_C = [
    [(256, 1)],
    [(384, 1), Split((256, (1, 3)), (256, (3, 1)))],
    [(384, 1), (448, (3, 1)), (512, (1, 3)), Split((256, (1, 3)), (256, (3, 1)))],
    [AVG_POOL, (256, 1)],
]


def inception_v4_body(x, drop_path_rate: float = 0.0, geometry: Geometry | None = None):
    """Stem to `mixed_7d` (8x8x1536 at 299)."""
    if drop_path_rate:
        raise ValueError(
            "Inception-v4 has no residual branches, so stochastic depth does not apply; "
            f"received drop_path_rate={drop_path_rate}. Use 0.0 (or an Inception-ResNet)."
        )
    geometry = geometry or Geometry()
    x = stem_convs(x, geometry)
    x = inception_block(x, MIXED_3A, "mixed_3a", geometry)
    x = inception_block(x, MIXED_4A, "mixed_4a", geometry)
    x = inception_block(x, MIXED_5A, "mixed_5a", geometry)
    for suffix in "bcde":
        x = inception_block(x, INCEPTION_A, f"mixed_5{suffix}", geometry)
    x = reduction_a(x, 192, 224, 256, 384, geometry=geometry)
    for suffix in "bcdefgh":
        x = inception_block(x, INCEPTION_B, f"mixed_6{suffix}", geometry)
    x = inception_block(x, REDUCTION_B, "mixed_7a", geometry)
    for suffix in "bcd":
        x = inception_block(x, INCEPTION_C, f"mixed_7{suffix}", geometry)
    return x


@document_builder
def InceptionV4(
    include_top: bool = True,
    weights: Any = "imagenet",
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str = "inception_v4",
    *,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    include_preprocessing: bool = False,
    align_feature_maps: bool = False,
    output_stride: int = 32,
) -> keras.Model:
    """Instantiates Inception-v4.

    Reference: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and
    the Impact of Residual Connections on Learning", AAAI 2017
    (https://arxiv.org/abs/1602.07261).

    The network of TF-slim and timm: stem (figure 3), 4 Inception-A, Reduction-A,
    7 Inception-B, Reduction-B and 3 Inception-C blocks. It has no residual
    connections, so `drop_path_rate` must stay 0.0.
    """
    return build_model(
        get_spec(MODEL_NAME), inception_v4_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
        align_feature_maps=align_feature_maps, output_stride=output_stride,
    )


SPEC = register_model(ModelSpec(
    name=MODEL_NAME,
    body=inception_v4_body,
    builder=InceptionV4,
    title="Inception-v4",
    signature=("conv_2b", "mixed_3a", "mixed_5a", "mixed_7d"),
    # timm's feature_info: a converted timm checkpoint gives timm's feature maps.
    feature_taps=(
        FeatureTap("conv_2b_ac", 64, 2),
        FeatureTap("mixed_3a", 160, 4),
        FeatureTap("mixed_5e", 384, 8),
        FeatureTap("mixed_6h", 1024, 16),
        FeatureTap("mixed_7d", 1536, 32),
    ),
    fine_tune_from="mixed_7b",
    presets=(
        WeightsPreset(
            model=MODEL_NAME,
            name="imagenet",
            source="timm inception_v4.tf_in1k (TF-slim inception_v4_2016_09_09), converted",
            description="ImageNet-1k, 80.1% top-1 (timm), 80.2% (TF-slim)",
            license="Apache-2.0",
            source_format="timm",
            hf_repo="timm/inception_v4.tf_in1k",
            revision="main",
            crop_pct=0.875,
        ),
    ),
))
