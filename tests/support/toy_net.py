"""A toy network: the package's stem, two residual stages and four reductions, with
its timm and TF-slim naming tables (registered as another network's module would).

`test_add_network` adds this file to a copy of the package as a fifth network;
`test_explain` imports it (which registers it) for a network small enough to train in
seconds, and removes it from the registry afterwards.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.convert.naming import SLIM, TIMM, Block, NamingTable, register_naming
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
    body=toy_net_body,
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
))

# How timm and TF-slim would name its weights, along the architecture: the stem, the
# reductions (one conv each), the residual stages (`repeat`, `repeat_1`; slim's
# `Repeat`, `Repeat_1`) whose final, linear block is a module of its own, the head.
TIMM_REDUCTION = {"branch0_0": "conv"}  # branch 1 is the max pool
TIMM_BLOCK = {"branch0_0": "branch0", "branch1_0": "branch1.0", "branch1_1": "branch1.1",
              "conv": "conv2d"}
TIMM_NAMES = register_naming(TIMM, NamingTable(
    network=MODEL_NAME,
    markers=("head.",),
    layers={"conv_1a": "conv2d_1a", "conv_2a": "conv2d_2a", "conv_2b": "conv2d_2b",
            "predictions": "head"},
    blocks=(
        Block("mixed_3a", "mixed_3a", TIMM_REDUCTION),
        Block("block_a_1", "repeat.0", TIMM_BLOCK),
        Block("block_a_2", "repeat.1", TIMM_BLOCK),
        Block("mixed_4a", "mixed_4a", TIMM_REDUCTION),
        Block("block_b_1", "repeat_1.0", TIMM_BLOCK),
        Block("block_b_2", "block_b", TIMM_BLOCK),
        Block("mixed_5a", "mixed_5a", TIMM_REDUCTION),
        Block("mixed_6a", "mixed_6a", TIMM_REDUCTION),
    ),
    top=("head.",),
))

SLIM_REDUCTION = {"branch0_0": "Branch_0/Conv2d_1a_3x3"}
SLIM_BLOCK = {"branch0_0": "Branch_0/Conv2d_1x1", "branch1_0": "Branch_1/Conv2d_0a_1x1",
              "branch1_1": "Branch_1/Conv2d_0b_3x3", "conv": "Conv2d_1x1"}
SLIM_NAMES = register_naming(SLIM, NamingTable(
    network=MODEL_NAME,
    markers=("ToyNet/",),
    scope="ToyNet",
    sep="/",
    layers={"conv_1a": "Conv2d_1a_3x3", "conv_2a": "Conv2d_2a_3x3", "conv_2b": "Conv2d_2b_3x3",
            "predictions": "Logits/Logits"},
    blocks=(
        Block("mixed_3a", "Mixed_3a", SLIM_REDUCTION),
        Block("block_a_1", "Repeat/block_a_1", SLIM_BLOCK),
        Block("block_a_2", "Repeat/block_a_2", SLIM_BLOCK),
        Block("mixed_4a", "Mixed_4a", SLIM_REDUCTION),
        Block("block_b_1", "Repeat_1/block_b_1", SLIM_BLOCK),
        Block("block_b_2", "Block_b", SLIM_BLOCK),
        Block("mixed_5a", "Mixed_5a", SLIM_REDUCTION),
        Block("mixed_6a", "Mixed_6a", SLIM_REDUCTION),
    ),
    top=("ToyNet/Logits/",),
    ignored=("ToyNet/AuxLogits/",),
))
