"""The package's registered layers (safe-mode `.keras` loading, no `Lambda`).

Every class that a `.keras` file written by this package names lives here, so that
importing this one module registers them all: `keras_inception` imports it as soon as
Keras is imported (`keras_inception._registration`), and `keras.saving.load_model`
then loads the package's files in a fresh process, in safe mode.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_inception import _compat


@keras.saving.register_keras_serializable(package="keras_inception")
class ScaledResidual(keras.layers.Layer):
    """`activation(shortcut + scale * residual)`, the paper's scaled residual sum.

    Takes `[shortcut, residual]`. With `drop_path_rate > 0` the residual branch of
    each sample is dropped with that probability during training (stochastic depth,
    Huang et al. 2016) and the kept branches are rescaled by `1 / (1 - rate)`, so
    inference is deterministic and equal to the layer with `drop_path_rate=0`.

    Everything runs in the layer's compute dtype: under `mixed_float16` the scale
    is cast to float16 instead of promoting the block output to float32.

    Args:
        scale: multiplier of the residual branch (0.1-0.3 in the paper).
        activation: activation applied after the sum, or `None` for a linear block.
        drop_path_rate: per-sample drop probability of the residual branch, in [0, 1).
        seed: optional seed of the drop-path noise.
    """

    def __init__(
        self,
        scale: float,
        activation: str | None = "relu",
        drop_path_rate: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(
                f"`drop_path_rate` must be in [0, 1); received drop_path_rate={drop_path_rate!r}."
            )
        self.scale = float(scale)
        self.activation = keras.activations.get(activation)
        self.drop_path_rate = float(drop_path_rate)
        self.seed = seed
        # A seed generator carries a state variable: create it only when needed so
        # that a plain block stays weightless (legacy h5 loading counts weights).
        self.seed_generator = (
            keras.random.SeedGenerator(seed) if self.drop_path_rate > 0 else None
        )
        self.supports_masking = True

    def call(self, inputs: list, training: bool | None = None):
        shortcut, residual = inputs
        residual = residual * ops.cast(self.scale, residual.dtype)
        if training and self.drop_path_rate > 0:
            keep_prob = 1.0 - self.drop_path_rate
            batch = ops.shape(residual)[0]
            noise_shape = (batch,) + (1,) * (len(residual.shape) - 1)
            noise = keras.random.uniform(
                noise_shape, dtype=residual.dtype, seed=self.seed_generator
            )
            keep = ops.cast(noise < ops.cast(keep_prob, noise.dtype), residual.dtype)
            residual = residual * keep / ops.cast(keep_prob, residual.dtype)
        return self.activation(shortcut + residual)

    def compute_output_shape(self, input_shape: list) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "scale": self.scale,
                "activation": keras.activations.serialize(self.activation),
                "drop_path_rate": self.drop_path_rate,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_inception")
class L2Normalize(keras.layers.Layer):
    """Scales each vector to unit L2 norm along the last axis (FaceNet's embedding).

    Computes in float32 whatever the dtype policy, so that embeddings and their
    distances keep float32 precision under mixed precision.
    """

    def __init__(self, epsilon: float = 1e-10, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), self.epsilon))
        return x / norm

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


STANDARDIZATIONS = ("prewhiten", "fixed")


@keras.saving.register_keras_serializable(package="keras_inception")
class FaceStandardization(keras.layers.Layer):
    """FaceNet's input standardisation of raw 0-255 RGB face crops, inside the model.

    * `"prewhiten"` (davidsandberg/facenet, keras-facenet): per image,
      `(x - mean) / max(std, 1 / sqrt(N))` over all N pixels and channels;
    * `"fixed"` (facenet-pytorch): `(x - 127.5) / 128`.
    """

    def __init__(self, mode: str = "prewhiten", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in STANDARDIZATIONS:
            raise ValueError(f"`mode` must be one of {STANDARDIZATIONS}; received mode={mode!r}.")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "fixed":
            return (x - ops.cast(127.5, x.dtype)) / ops.cast(128.0, x.dtype)
        axes = tuple(range(1, len(x.shape)))
        mean = ops.mean(x, axis=axes, keepdims=True)
        std = ops.std(x, axis=axes, keepdims=True)
        size = ops.cast(ops.prod(ops.shape(x)[1:]), x.dtype)
        return (x - mean) / ops.maximum(std, ops.rsqrt(size))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_inception")
class FoldedBatchNorm(keras.layers.Identity):
    """Stands where a BatchNormalization was folded into the preceding conv.

    An identity that accepts BatchNormalization's call arguments, so the cloned
    graph keeps its layer names and call structure.
    """

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(inputs)


@keras.saving.register_keras_serializable(package="keras_inception")
class DescribedModel(keras.Model):
    """A functional model that carries its meaning: `keras_inception.metadata.ModelMetadata`
    (input size, crop, scaling, class names or embedding facts) in its saved config.

    Build it as a functional model (`DescribedModel(inputs, outputs, metadata=...)`) or
    with `keras_inception.metadata.describe(model, metadata)`. Keras' own `load_model`
    rebuilds it in safe mode (the class is registered), and `model.save` keeps the
    metadata, so a copy of the file anywhere answers as the original.
    """

    def __init__(self, inputs, outputs, name=None, *, keras_inception_metadata=None,
                 metadata=None, **kwargs: Any) -> None:
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # A `ModelMetadata`, or its dict as read from a saved config: `metadata.of_model`
        # reads it (this module does not import `keras_inception.metadata`, which imports it).
        self.keras_inception_metadata = metadata if metadata is not None else keras_inception_metadata

    def get_config(self) -> dict:
        config = super().get_config()
        stored = self.keras_inception_metadata
        if stored is not None:
            config["keras_inception_metadata"] = (
                stored.to_dict() if hasattr(stored, "to_dict") else dict(stored))
        return config


# Keras imports this module for the package (`keras_inception._registration`): from then on
# its saving finds the attribute sets it computed (`_compat.cache_saving_attr_skipsets`).
_compat.cache_saving_attr_skipsets()

__all__ = ["STANDARDIZATIONS", "DescribedModel", "FaceStandardization", "FoldedBatchNorm",
           "L2Normalize", "ScaledResidual"]
