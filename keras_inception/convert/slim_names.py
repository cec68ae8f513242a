"""How TF-slim names the weights of Inception-v4 and Inception-ResNet-v2.

A conv's variables are `Scope/Block/Branch_B/Conv2d_{0|1}{letter}_{kh}x{kw}/...`: 1 for
a VALID conv (0 otherwise), letters counting the branch's earlier steps of the same
kind (pools included), the kernel size last. The exceptions are spelt out as slim has
them: Inception-v4's `Mixed_3a` names its VALID conv `Conv2d_0a_3x3`, and the
Inception-ResNets name single 1x1 branches and the up-projection `Conv2d_1x1`. The
Inception-ResNets' residual stages are `slim.repeat` scopes (`Repeat`, `Repeat_1`,
`Repeat_2`); Inception-ResNet-v2's final, linear block is `Block8`.

The templates below name a block's layers by their Keras suffix (see `naming`).
"""

from __future__ import annotations

from keras_inception.convert.naming import SLIM, Block, NamingTable, numbered, register_naming

# Inception-v4 (slim `inception_v4`).
MIXED_3A = {"branch1_0": "Branch_1/Conv2d_0a_3x3"}  # VALID, yet 0a
MIXED_4A = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1", "branch0_1": "Branch_0/Conv2d_1a_3x3",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_1x7",
    "branch1_2": "Branch_1/Conv2d_0c_7x1", "branch1_3": "Branch_1/Conv2d_1a_3x3",
}
MIXED_5A = {"branch0_0": "Branch_0/Conv2d_1a_3x3"}
INCEPTION_A = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_3x3",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x3",
    "branch2_2": "Branch_2/Conv2d_0c_3x3",
    "branch3_1": "Branch_3/Conv2d_0b_1x1",  # after the average pool
}
REDUCTION_A = {
    "branch0_0": "Branch_0/Conv2d_1a_3x3",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_3x3",
    "branch1_2": "Branch_1/Conv2d_1a_3x3",
}
INCEPTION_B = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_1x7",
    "branch1_2": "Branch_1/Conv2d_0c_7x1",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_7x1",
    "branch2_2": "Branch_2/Conv2d_0c_1x7", "branch2_3": "Branch_2/Conv2d_0d_7x1",
    "branch2_4": "Branch_2/Conv2d_0e_1x7",
    "branch3_1": "Branch_3/Conv2d_0b_1x1",
}
REDUCTION_B = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1", "branch0_1": "Branch_0/Conv2d_1a_3x3",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_1x7",
    "branch1_2": "Branch_1/Conv2d_0c_7x1", "branch1_3": "Branch_1/Conv2d_1a_3x3",
}
INCEPTION_C = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1a": "Branch_1/Conv2d_0b_1x3",
    "branch1_1b": "Branch_1/Conv2d_0c_3x1",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x1",
    "branch2_2": "Branch_2/Conv2d_0c_1x3", "branch2_3a": "Branch_2/Conv2d_0d_1x3",
    "branch2_3b": "Branch_2/Conv2d_0e_3x1",
    "branch3_1": "Branch_3/Conv2d_0b_1x1",
}

INCEPTION_V4 = register_naming(SLIM, NamingTable(
    network="inception_v4",
    markers=("InceptionV4/",),
    scope="InceptionV4",
    sep="/",
    layers={
        "conv_1a": "Conv2d_1a_3x3", "conv_2a": "Conv2d_2a_3x3", "conv_2b": "Conv2d_2b_3x3",
        "predictions": "Logits/Logits",
    },
    blocks=(
        Block("mixed_3a", "Mixed_3a", MIXED_3A),
        Block("mixed_4a", "Mixed_4a", MIXED_4A),
        Block("mixed_5a", "Mixed_5a", MIXED_5A),
        Block("mixed_5b", "Mixed_5b", INCEPTION_A),
        Block("mixed_5c", "Mixed_5c", INCEPTION_A),
        Block("mixed_5d", "Mixed_5d", INCEPTION_A),
        Block("mixed_5e", "Mixed_5e", INCEPTION_A),
        Block("mixed_6a", "Mixed_6a", REDUCTION_A),
        Block("mixed_6b", "Mixed_6b", INCEPTION_B),
        Block("mixed_6c", "Mixed_6c", INCEPTION_B),
        Block("mixed_6d", "Mixed_6d", INCEPTION_B),
        Block("mixed_6e", "Mixed_6e", INCEPTION_B),
        Block("mixed_6f", "Mixed_6f", INCEPTION_B),
        Block("mixed_6g", "Mixed_6g", INCEPTION_B),
        Block("mixed_6h", "Mixed_6h", INCEPTION_B),
        Block("mixed_7a", "Mixed_7a", REDUCTION_B),
        Block("mixed_7b", "Mixed_7b", INCEPTION_C),
        Block("mixed_7c", "Mixed_7c", INCEPTION_C),
        Block("mixed_7d", "Mixed_7d", INCEPTION_C),
    ),
    top=("InceptionV4/Logits/",),
    ignored=("InceptionV4/AuxLogits/",),
))

# Inception-ResNet-v2 (slim `inception_resnet_v2`); Inception-ResNet-v1 has the same
# blocks (facenet_keras.h5 names its layers after slim's: `facenet_names`).
MIXED_5B = {
    "branch0_0": "Branch_0/Conv2d_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_5x5",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x3",
    "branch2_2": "Branch_2/Conv2d_0c_3x3",
    "branch3_1": "Branch_3/Conv2d_0b_1x1",
}
BLOCK35 = {
    "branch0_0": "Branch_0/Conv2d_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_3x3",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x3",
    "branch2_2": "Branch_2/Conv2d_0c_3x3",
    "conv": "Conv2d_1x1",  # the up-projection
}
BLOCK17 = {
    "branch0_0": "Branch_0/Conv2d_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_1x7",
    "branch1_2": "Branch_1/Conv2d_0c_7x1",
    "conv": "Conv2d_1x1",
}
IR_REDUCTION_B = {
    "branch0_0": "Branch_0/Conv2d_0a_1x1", "branch0_1": "Branch_0/Conv2d_1a_3x3",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_1a_3x3",
    "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x3",
    "branch2_2": "Branch_2/Conv2d_1a_3x3",
}
BLOCK8 = {
    "branch0_0": "Branch_0/Conv2d_1x1",
    "branch1_0": "Branch_1/Conv2d_0a_1x1", "branch1_1": "Branch_1/Conv2d_0b_1x3",
    "branch1_2": "Branch_1/Conv2d_0c_3x1",
    "conv": "Conv2d_1x1",
}
IR_STEM = {
    "conv_1a": "Conv2d_1a_3x3", "conv_2a": "Conv2d_2a_3x3", "conv_2b": "Conv2d_2b_3x3",
    "conv_3b": "Conv2d_3b_1x1", "conv_4a": "Conv2d_4a_3x3",
}

INCEPTION_RESNET_V2 = register_naming(SLIM, NamingTable(
    network="inception_resnet_v2",
    markers=("InceptionResnetV2/",),
    scope="InceptionResnetV2",
    sep="/",
    layers={**IR_STEM, "conv_7b": "Conv2d_7b_1x1", "predictions": "Logits/Logits"},
    blocks=(
        Block("mixed_5b", "Mixed_5b", MIXED_5B),
        *numbered("block35_{n}", "Repeat/block35_{n}", range(1, 11), BLOCK35),
        Block("mixed_6a", "Mixed_6a", REDUCTION_A),
        *numbered("block17_{n}", "Repeat_1/block17_{n}", range(1, 21), BLOCK17),
        Block("mixed_7a", "Mixed_7a", IR_REDUCTION_B),
        *numbered("block8_{n}", "Repeat_2/block8_{n}", range(1, 10), BLOCK8),
        Block("block8_10", "Block8", BLOCK8),  # the final, linear block
    ),
    top=("InceptionResnetV2/Logits/",),
    ignored=("InceptionResnetV2/AuxLogits/",),
))
