"""Inception-ResNet-v1 as in the paper (figures 14, 10, 7, 11, 12, 13, 15)."""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.blocks import (
    drop_path_schedule,
    inception_resnet_reduction_b,
    inception_resnet_stem,
    reduction_a,
    residual_stage,
)
from keras_inception.models.base import BUILDER_ARGS_DOC, build_model

MODEL_NAME = "inception_resnet_v1"

BLOCK35 = [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)]]
BLOCK17 = [[(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))]]
BLOCK8 = [[(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))]]
REPEATS = (5, 10, 5)


def inception_resnet_v1_body(x, drop_path_rate: float = 0.0):
    """Stem to the last IR-C block (8x8x1792 at 299)."""
    rates = drop_path_schedule(drop_path_rate, sum(REPEATS))
    a, b, c = REPEATS
    x = inception_resnet_stem(x, last="conv")
    x = residual_stage(x, BLOCK35, prefix="block35", repeats=a, scale=0.17,
                       drop_path_rates=rates[:a])
    x = reduction_a(x, 192, 192, 256, 384)
    x = residual_stage(x, BLOCK17, prefix="block17", repeats=b, scale=0.10,
                       drop_path_rates=rates[a:a + b])
    x = inception_resnet_reduction_b(x, (384, 256, 256, 256))
    return residual_stage(x, BLOCK8, prefix="block8", repeats=c, scale=0.20,
                          drop_path_rates=rates[a + b:])


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
        MODEL_NAME, inception_resnet_v1_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
    )


InceptionResNetV1.__doc__ += BUILDER_ARGS_DOC
