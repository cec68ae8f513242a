"""How timm names the weights of Inception-v4 and Inception-ResNet-v2.

timm's keys follow its module tree. Each conv is a `BasicConv2d` (`.conv`, `.bn`):
a branch of one conv is the module itself (`branch0`), a longer branch an
`nn.Sequential` numbered from 0 with its pools (`branch3.1` follows an average pool), a
block of a single conv names it `conv`, and Inception-v4's Inception-C keeps its split
convs as flat attributes (`branch1_1a`). Inception-v4 is one `features` sequence (stem
and blocks numbered together); Inception-ResNet-v2 has named modules, its residual
stages are `repeat`, `repeat_1`, `repeat_2` and its final, linear block is `block8`.

The templates below name a block's layers by their Keras suffix (see `naming`).
"""

from __future__ import annotations

from keras_inception.convert.naming import TIMM, Block, NamingTable, numbered, register_naming

# Inception-v4 (timm `inception_v4`).
MIXED_3A = {"branch1_0": "conv"}  # branch 0 is the max pool
MIXED_4A = {
    "branch0_0": "branch0.0", "branch0_1": "branch0.1",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
    "branch1_3": "branch1.3",
}
MIXED_5A = {"branch0_0": "conv"}  # branch 1 is the max pool
INCEPTION_A = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1",
    "branch2_0": "branch2.0", "branch2_1": "branch2.1", "branch2_2": "branch2.2",
    "branch3_1": "branch3.1",  # after the average pool
}
REDUCTION_A = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
}
INCEPTION_B = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
    "branch2_0": "branch2.0", "branch2_1": "branch2.1", "branch2_2": "branch2.2",
    "branch2_3": "branch2.3", "branch2_4": "branch2.4",
    "branch3_1": "branch3.1",
}
REDUCTION_B = {
    "branch0_0": "branch0.0", "branch0_1": "branch0.1",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
    "branch1_3": "branch1.3",
}
INCEPTION_C = {
    "branch0_0": "branch0",
    "branch1_0": "branch1_0", "branch1_1a": "branch1_1a", "branch1_1b": "branch1_1b",
    "branch2_0": "branch2_0", "branch2_1": "branch2_1", "branch2_2": "branch2_2",
    "branch2_3a": "branch2_3a", "branch2_3b": "branch2_3b",
    "branch3_1": "branch3.1",
}

INCEPTION_V4 = register_naming(TIMM, NamingTable(
    network="inception_v4",
    markers=("features.", "last_linear."),
    layers={
        "conv_1a": "features.0", "conv_2a": "features.1", "conv_2b": "features.2",  # stem
        "predictions": "last_linear",
    },
    blocks=(
        Block("mixed_3a", "features.3", MIXED_3A),
        Block("mixed_4a", "features.4", MIXED_4A),
        Block("mixed_5a", "features.5", MIXED_5A),
        Block("mixed_5b", "features.6", INCEPTION_A),
        Block("mixed_5c", "features.7", INCEPTION_A),
        Block("mixed_5d", "features.8", INCEPTION_A),
        Block("mixed_5e", "features.9", INCEPTION_A),
        Block("mixed_6a", "features.10", REDUCTION_A),
        Block("mixed_6b", "features.11", INCEPTION_B),
        Block("mixed_6c", "features.12", INCEPTION_B),
        Block("mixed_6d", "features.13", INCEPTION_B),
        Block("mixed_6e", "features.14", INCEPTION_B),
        Block("mixed_6f", "features.15", INCEPTION_B),
        Block("mixed_6g", "features.16", INCEPTION_B),
        Block("mixed_6h", "features.17", INCEPTION_B),
        Block("mixed_7a", "features.18", REDUCTION_B),
        Block("mixed_7b", "features.19", INCEPTION_C),
        Block("mixed_7c", "features.20", INCEPTION_C),
        Block("mixed_7d", "features.21", INCEPTION_C),
    ),
    top=("last_linear.",),
))

# Inception-ResNet-v2 (timm `inception_resnet_v2`); Inception-ResNet-v1 has the same
# blocks (facenet-pytorch names its weights like timm: `facenet_names`).
MIXED_5B = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1",
    "branch2_0": "branch2.0", "branch2_1": "branch2.1", "branch2_2": "branch2.2",
    "branch3_1": "branch3.1",
}
BLOCK35 = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1",
    "branch2_0": "branch2.0", "branch2_1": "branch2.1", "branch2_2": "branch2.2",
    "conv": "conv2d",  # the up-projection
}
BLOCK17 = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
    "conv": "conv2d",
}
IR_REDUCTION_B = {
    "branch0_0": "branch0.0", "branch0_1": "branch0.1",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1",
    "branch2_0": "branch2.0", "branch2_1": "branch2.1", "branch2_2": "branch2.2",
}
BLOCK8 = {
    "branch0_0": "branch0",
    "branch1_0": "branch1.0", "branch1_1": "branch1.1", "branch1_2": "branch1.2",
    "conv": "conv2d",
}
IR_STEM = {
    "conv_1a": "conv2d_1a", "conv_2a": "conv2d_2a", "conv_2b": "conv2d_2b",
    "conv_3b": "conv2d_3b", "conv_4a": "conv2d_4a",
}

INCEPTION_RESNET_V2 = register_naming(TIMM, NamingTable(
    network="inception_resnet_v2",
    markers=("conv2d_1a.", "repeat.", "classif."),
    layers={**IR_STEM, "conv_7b": "conv2d_7b", "predictions": "classif"},
    blocks=(
        Block("mixed_5b", "mixed_5b", MIXED_5B),
        *numbered("block35_{n}", "repeat.{i}", range(1, 11), BLOCK35),
        Block("mixed_6a", "mixed_6a", REDUCTION_A),
        *numbered("block17_{n}", "repeat_1.{i}", range(1, 21), BLOCK17),
        Block("mixed_7a", "mixed_7a", IR_REDUCTION_B),
        *numbered("block8_{n}", "repeat_2.{i}", range(1, 10), BLOCK8),
        Block("block8_10", "block8", BLOCK8),  # the final, linear block
    ),
    top=("classif.",),
))
