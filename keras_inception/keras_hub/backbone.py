"""`InceptionBackbone`: the package's networks as a keras-hub `FeaturePyramidBackbone`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import keras
import keras_hub

from keras_inception.keras_hub import preset_weights
from keras_inception.keras_hub.preset_loading import PresetLoading
from keras_inception.keras_hub.preset_weights import copy_weights
from keras_inception.keras_hub.presets import check_keywords
from keras_inception.models.builder import check_rate, dense_geometry, resolve_input_shape
from keras_inception.registry import ModelSpec, get_spec, model_names, network_of

# The constructor arguments that a task's `from_preset` / `from_network` hand to the backbone.
BACKBONE_ARGS = ("image_shape", "align_feature_maps", "output_stride", "drop_path_rate", "dtype")
# The other keyword arguments of keras-hub backbones (in their configs).
LAYER_ARGS = ("name", "trainable")


@contextlib.contextmanager
def _building_policy(dtype: Any) -> Iterator[None]:
    """Builds the layers under `dtype` (the builders create them with the global policy)."""
    if dtype is None:
        yield
        return
    policy = keras.dtype_policies.get(dtype)
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        policy = policy.default_policy
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_body(spec: ModelSpec, image_shape: tuple, drop_path_rate: float, *,
               align_feature_maps: bool, output_stride: int) -> tuple[Any, Any, dict[str, Any]]:
    """The network's body (`ModelSpec.body`, what its builder puts a head on):
    (input, last feature map, pyramid).

    Args:
        spec: the network's registry spec.
        image_shape: `(height, width, channels)` of the input.
        drop_path_rate: stochastic depth of the residual branches.
        align_feature_maps: SAME padding everywhere (the builders' option).
        output_stride: 8, 16 or 32 (the builders' option).

    Returns:
        The input tensor, the output of the body (what the network pools) and
        `{"P1": ..., "P5": ...}`: the spec's feature taps, `Pk` at nominal reduction `2**k`.
    """
    geometry = dense_geometry(align_feature_maps, output_stride)
    shape = resolve_input_shape(input_shape=image_shape, input_tensor=None, include_top=False,
                                preset=None)
    inputs = keras.layers.Input(shape=shape, name="input_layer")
    output = spec.body(inputs, drop_path_rate=check_rate("drop_path_rate", drop_path_rate),
                       geometry=geometry)
    network = keras.Model(inputs, output)
    pyramid = {f"P{round(math.log2(tap.reduction))}": network.get_layer(tap.layer).output
               for tap in spec.feature_taps}
    return inputs, output, pyramid


@keras.saving.register_keras_serializable(package="keras_inception")
class InceptionBackbone(PresetLoading, keras_hub.models.FeaturePyramidBackbone):
    """Inception-v4, Inception-ResNet-v1/-v2 or FaceNet's body as a keras-hub backbone.

    The body is built by the package's builder (`keras_inception.registry`), so its
    layers have the builder's names and the package's weights transfer by name
    (`from_network`, `from_preset`). The output is the last feature map, what the
    network pools (Inception-v4: `mixed_7d`, IR-v1: `block8_5_ac`, IR-v2: `conv_7b_ac`,
    FaceNet: its linear `block8_6`); `pyramid_outputs` holds the network's five feature taps
    (`ModelSpec.feature_taps`, those of `keras_inception.feature_extractor`) as
    `"P1"`..`"P5"`, `Pk` at stride `2**k`.

    With `output_stride=16` the last reduction is replaced by dilation: `"P4"` and
    `"P5"` (and the output) are then both at stride 16. With `output_stride=8` the last
    two are: `"P3"`, `"P4"` and `"P5"` are all at stride 8. keras-hub tasks read the
    stride of `"Pk"` as `2**k`, which then holds only for the levels below.

    Args:
        architecture: `"inception_v4"`, `"inception_resnet_v1"`, `"inception_resnet_v2"`
            or `"facenet"` (the Inception-ResNet-v1 body with FaceNet's sixth, linear
            IR-C block `block8_6`).
        align_feature_maps: SAME padding everywhere, so that every feature map is the
            input size divided by its stride (rounded up).
        output_stride: 8, 16 or 32: the stride of the output (atrous below 32).
        image_shape: `(height, width, channels)`; height and width at least 75, or None
            for any size.
        drop_path_rate: stochastic depth of the residual branches, rising linearly to
            this value (0.0 for Inception-v4, which has none).
        dtype: None or the dtype policy (a name such as `"bfloat16"`, or a
            `keras.DTypePolicy`) of every layer.
        **kwargs: the other arguments of keras-hub backbones (`name`, `trainable`).

    Examples:
    ```python
    backbone = InceptionBackbone.from_preset("inception_resnet_v2_imagenet")
    features = keras.Model(backbone.input, backbone.pyramid_outputs)
    ```
    """

    preset_keywords = (*BACKBONE_ARGS, *LAYER_ARGS)

    def __init__(
        self,
        architecture: str,
        align_feature_maps: bool = False,
        output_stride: int = 32,
        image_shape: tuple = (None, None, 3),
        drop_path_rate: float = 0.0,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        check_keywords("InceptionBackbone", kwargs, ["architecture", *BACKBONE_ARGS, *LAYER_ARGS])
        if architecture not in model_names():
            raise ValueError(f"Unknown `architecture` {architecture!r}; available: "
                             f"{', '.join(model_names())}.")
        spec = get_spec(architecture)
        image_shape = tuple(image_shape)
        with _building_policy(dtype):
            inputs, outputs, pyramid = build_body(spec, image_shape, drop_path_rate,
                                                  align_feature_maps=align_feature_maps,
                                                  output_stride=output_stride)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
        self.architecture = architecture
        self.align_feature_maps = align_feature_maps
        self.output_stride = output_stride
        self.image_shape = image_shape
        self.drop_path_rate = float(drop_path_rate)
        self.pyramid_outputs = pyramid

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "architecture": self.architecture,
            "align_feature_maps": self.align_feature_maps,
            "output_stride": self.output_stride,
            "image_shape": self.image_shape,
            "drop_path_rate": self.drop_path_rate,
        })
        return config

    @classmethod
    def from_network(cls, network: keras.Model, **kwargs: Any) -> InceptionBackbone:
        """The backbone of a model built by the package's builders, with its weights.

        Args:
            network: a model of `keras_inception` (any head, or none; the network may
                be nested in it, as with `input_tensor`).
            **kwargs: the backbone's other arguments (`image_shape`, `output_stride`,
                ...); `architecture`, if given, must be the network's.

        Returns:
            An `InceptionBackbone` holding `network`'s weights.
        """
        spec, network = network_of(network)
        architecture = kwargs.pop("architecture", spec.name)
        if architecture != spec.name:
            raise ValueError(f"`architecture`={architecture!r}, but the network is {spec.name!r}.")
        backbone = cls(architecture=spec.name, **kwargs)
        copy_weights(network, backbone)
        return backbone

    def load_weights(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        """Keras' `load_weights`; a placeholder weights file of a preset directory in the
        weights cache (`preset_dirs`) is filled through the package's loader first."""
        placeholder = preset_weights.placeholder_of(filepath)
        if placeholder is None:
            super().load_weights(filepath, *args, **kwargs)
        elif getattr(self, "filled_from", None) != placeholder["preset"]:
            preset_weights.fill_backbone(self, filepath, placeholder)
