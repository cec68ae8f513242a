"""A toy network: the package's stem, two residual stages and four reductions.

`test_add_network` adds this file to a copy of the package as a fifth network;
`test_explain` imports it (which registers it) for a network small enough to train in
seconds, and removes it from the registry afterwards.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.models.blocks import (
    MAX_POOL,
    Geometry,
    drop_path_schedule,
    inception_block,
    residual_stage,
    stem_convs,
)
from keras_inception.models.builder import build_model, document_builder
from keras_inception.registry import FeatureTap, ModelSpec, get_spec, register_model

MODEL_NAME = "toy_net"
REDUCTION = [[(32, 3, 2, "valid")], [MAX_POOL]]  # adds 32 channels, stride 2
BLOCK = [[(16, 1)], [(16, 1), (16, 3)]]


def toy_net_body(x, drop_path_rate: float = 0.0, geometry: Geometry | None = None):
    geometry = geometry or Geometry()
    rates = drop_path_schedule(drop_path_rate, 4)
    x = stem_convs(x, geometry)  # 64 channels, stride 2
    x = inception_block(x, REDUCTION, "mixed_3a", geometry)  # 96, stride 4
    x = residual_stage(x, BLOCK, prefix="block_a", repeats=2, scale=0.2,
                       drop_path_rates=rates[:2], geometry=geometry)
    x = inception_block(x, REDUCTION, "mixed_4a", geometry)  # 128, stride 8
    x = residual_stage(x, BLOCK, prefix="block_b", repeats=2, scale=0.2,
                       drop_path_rates=rates[2:], last_linear=True, geometry=geometry)
    x = inception_block(x, REDUCTION, "mixed_5a", geometry)  # 160, stride 16
    return inception_block(x, REDUCTION, "mixed_6a", geometry)  # 192, stride 32


@document_builder
def ToyNet(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str = MODEL_NAME,
    *,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    include_preprocessing: bool = False,
) -> keras.Model:
    """Instantiates the toy network."""
    return build_model(
        get_spec(MODEL_NAME), toy_net_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
    )


SPEC = register_model(ModelSpec(
    name=MODEL_NAME,
    builder=ToyNet,
    title="Toy network",
    signature=("block_a_1", "block_b_2", "mixed_6a"),
    feature_taps=(
        FeatureTap("conv_2b_ac", 64, 2),
        FeatureTap("block_a_2_ac", 96, 4),
        FeatureTap("block_b_2", 128, 8),
        FeatureTap("mixed_5a", 160, 16),
        FeatureTap("mixed_6a", 192, 32),
    ),
    fine_tune_from="block_b_",
    no_imagenet_reason="The toy network has no pretrained weights.",
    timm_classifier="head",
    timm_key_prefixes=("head.",),
    slim_scope="ToyNet",
    slim_conv2d_1x1=True,
))
