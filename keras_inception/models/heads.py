"""The heads a network's body ends with; a builder is a body plus one of them.

`classifier_head` is keras.applications' top (the classifiers' builders, through
`builder.build_model`); `embedding_head` makes unit-length embeddings (FaceNet). The
layer names are the ones the weight files and their converters address.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from keras_inception.layers import L2Normalize


def classifier_head(x: Any, include_top: bool, pooling: Any, classes: int,
                    classifier_activation: Any, dropout_rate: float) -> Any:
    """keras.applications' top: pooling, dropout and `predictions`, or the pooling alone."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate:
            x = layers.Dropout(float(dropout_rate), name="dropout")(x)
        # float32 head: logits/probabilities stay float32 under mixed precision.
        return layers.Dense(
            classes, activation=classifier_activation, dtype="float32", name="predictions"
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def embedding_head(x: Any, embedding_dim: int, dropout_rate: float) -> Any:
    """FaceNet's embedding head (davidsandberg/facenet's): global average pooling
    (`avg_pool`), dropout (`dropout`, left out at rate 0), a bias-free
    `Dense(embedding_dim)` bottleneck (`bottleneck`), BatchNormalization without scale
    (`bottleneck_bn`), then L2 normalisation computed in float32 (`embedding`), so that
    embeddings and their distances keep float32 precision under mixed precision."""
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate:
        x = layers.Dropout(float(dropout_rate), name="dropout")(x)
    x = layers.Dense(embedding_dim, use_bias=False, name="bottleneck")(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-3, name="bottleneck_bn")(x)
    return L2Normalize(name="embedding")(x)


__all__ = ["classifier_head", "embedding_head"]
