"""How FaceNet's released files name its weights (Inception-ResNet-v1 + `block8_6` +
the `bottleneck` embedding).

* facenet-pytorch: timm's Inception-ResNet modules (`timm_names`' templates), with
  the residual stages `repeat_1`, `repeat_2`, `repeat_3`, the final, linear block
  `block8` and the embedding `last_linear` (its BatchNorm, `last_bn`, is the
  dialect's); a classifier head (`logits.*`) is not loaded.
* `facenet_keras.h5`: TF-slim's names (`slim_names`' templates) without the network's
  scope, joined by `_` (`Block35_1_Branch_2_Conv2d_0c_3x3`), every residual block
  numbered (`Block8_6`) and the embedding `Bottleneck`.
"""

from __future__ import annotations

from keras_inception.convert import slim_names, timm_names
from keras_inception.convert.naming import (
    FACENET_KERAS,
    FACENET_PYTORCH,
    Block,
    NamingTable,
    Template,
    numbered,
    register_naming,
)

NETWORK = "facenet"

PYTORCH = register_naming(FACENET_PYTORCH, NamingTable(
    network=NETWORK,
    markers=("repeat_1.0.",),
    layers={**timm_names.IR_STEM, "conv_4b": "conv2d_4b", "bottleneck": "last_linear"},
    blocks=(
        *numbered("block35_{n}", "repeat_1.{i}", range(1, 6), timm_names.BLOCK35),
        Block("mixed_6a", "mixed_6a", timm_names.REDUCTION_A),
        *numbered("block17_{n}", "repeat_2.{i}", range(1, 11), timm_names.BLOCK17),
        Block("mixed_7a", "mixed_7a", timm_names.IR_REDUCTION_B),
        *numbered("block8_{n}", "repeat_3.{i}", range(1, 6), timm_names.BLOCK8),
        Block("block8_6", "block8", timm_names.BLOCK8),  # the final, linear block
    ),
    ignored=("logits.",),
))


def _joined(template: Template) -> dict[str, str]:
    """A TF-slim template as facenet_keras.h5 spells it: its scopes joined by `_`."""
    return {suffix: name.replace("/", "_") for suffix, name in template.items()}


KERAS = register_naming(FACENET_KERAS, NamingTable(
    network=NETWORK,
    markers=("Block35_1_",),
    sep="_",
    layers={**slim_names.IR_STEM, "conv_4b": "Conv2d_4b_3x3", "bottleneck": "Bottleneck"},
    blocks=(
        *numbered("block35_{n}", "Block35_{n}", range(1, 6), _joined(slim_names.BLOCK35)),
        Block("mixed_6a", "Mixed_6a", _joined(slim_names.REDUCTION_A)),
        *numbered("block17_{n}", "Block17_{n}", range(1, 11), _joined(slim_names.BLOCK17)),
        Block("mixed_7a", "Mixed_7a", _joined(slim_names.IR_REDUCTION_B)),
        *numbered("block8_{n}", "Block8_{n}", range(1, 7), _joined(slim_names.BLOCK8)),
    ),
))
