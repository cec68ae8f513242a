"""Inception-v4 (TF-slim = timm, the paper's figures 3-9)."""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.blocks import (
    AVG_POOL,
    MAX_POOL,
    Split,
    inception_block,
    reduction_a,
    stem_convs,
)
from keras_inception.models.base import BUILDER_ARGS_DOC, build_model

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


def inception_v4_body(x, drop_path_rate: float = 0.0):
    """Stem to `mixed_7d` (8x8x1536 at 299)."""
    if drop_path_rate:
        raise ValueError(
            "Inception-v4 has no residual branches, so stochastic depth does not apply; "
            f"received drop_path_rate={drop_path_rate}. Use 0.0 (or an Inception-ResNet)."
        )
    x = stem_convs(x)
    x = inception_block(x, MIXED_3A, "mixed_3a")
    x = inception_block(x, MIXED_4A, "mixed_4a")
    x = inception_block(x, MIXED_5A, "mixed_5a")
    for suffix in "bcde":
        x = inception_block(x, INCEPTION_A, f"mixed_5{suffix}")
    x = reduction_a(x, 192, 224, 256, 384)
    for suffix in "bcdefgh":
        x = inception_block(x, INCEPTION_B, f"mixed_6{suffix}")
    x = inception_block(x, REDUCTION_B, "mixed_7a")
    for suffix in "bcd":
        x = inception_block(x, INCEPTION_C, f"mixed_7{suffix}")
    return x


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
        MODEL_NAME, inception_v4_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
    )


InceptionV4.__doc__ += BUILDER_ARGS_DOC
