"""Inception-ResNet-v1 as in the paper (figures 14, 10, 7, 11, 12, 13, 15)."""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.models.blocks import (
    Geometry,
    drop_path_schedule,
    inception_resnet_reduction_b,
    inception_resnet_stem,
    reduction_a,
    residual_stage,
)
from keras_inception.models.builder import build_model, document_builder
from keras_inception.registry import FeatureTap, ModelSpec, get_spec, register_model

MODEL_NAME = "inception_resnet_v1"

BLOCK35 = [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)]]
BLOCK17 = [[(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))]]
BLOCK8 = [[(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))]]
REPEATS = (5, 10, 5)


def inception_resnet_v1_body(x, drop_path_rate: float = 0.0, geometry: Geometry | None = None, *,
                             linear_block8: bool = False):
    """Stem to the last IR-C block (8x8x1792 at 299).

    `linear_block8=True` appends FaceNet's sixth IR-C block (`block8_6`, scale 1.0,
    no activation), as the released Inception-ResNet-v2 ends.
    """
    geometry = geometry or Geometry()
    a, b, c = REPEATS
    c += int(linear_block8)
    rates = drop_path_schedule(drop_path_rate, a + b + c)
    x = inception_resnet_stem(x, last="conv", geometry=geometry)
    x = residual_stage(x, BLOCK35, prefix="block35", repeats=a, scale=0.17,
                       drop_path_rates=rates[:a], geometry=geometry)
    x = reduction_a(x, 192, 192, 256, 384, geometry=geometry)
    x = residual_stage(x, BLOCK17, prefix="block17", repeats=b, scale=0.10,
                       drop_path_rates=rates[a:a + b], geometry=geometry)
    x = inception_resnet_reduction_b(x, (384, 256, 256, 256), geometry=geometry)
    return residual_stage(x, BLOCK8, prefix="block8", repeats=c, scale=0.20,
                          drop_path_rates=rates[a + b:], last_linear=linear_block8,
                          geometry=geometry)


@document_builder
def InceptionResNetV1(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str = "inception_resnet_v1",
    *,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    include_preprocessing: bool = False,
    align_feature_maps: bool = False,
    output_stride: int = 32,
) -> keras.Model:
    """Instantiates Inception-ResNet-v1.

    Reference: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and
    the Impact of Residual Connections on Learning", AAAI 2017
    (https://arxiv.org/abs/1602.07261).

    The paper's network: stem of figure 14 (35x35x256), 5 Inception-ResNet-A,
    10 -B and 5 -C blocks scaled by 0.17/0.10/0.20. No public ImageNet weights
    exist, so `weights` defaults to `None`.
    """
    return build_model(
        get_spec(MODEL_NAME), inception_resnet_v1_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
        align_feature_maps=align_feature_maps, output_stride=output_stride,
    )


SPEC = register_model(ModelSpec(
    name=MODEL_NAME,
    body=inception_resnet_v1_body,
    builder=InceptionResNetV1,
    title="Inception-ResNet-v1",
    signature=("conv_4b", "block35_5", "block17_10", "block8_5"),
    # The analogues of timm's Inception-ResNet-v2 taps.
    feature_taps=(
        FeatureTap("conv_2b_ac", 64, 2),
        FeatureTap("conv_4a_ac", 192, 4),
        FeatureTap("block35_5_ac", 256, 8),
        FeatureTap("block17_10_ac", 896, 16),
        FeatureTap("block8_5_ac", 1792, 32),
    ),
    fine_tune_from="block8_",
    no_imagenet_reason=(
        "No public ImageNet weights exist for Inception-ResNet-v1 (the paper released none; "
        "facenet's are face-recognition weights)."
    ),
))
