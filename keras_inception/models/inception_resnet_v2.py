"""Inception-ResNet-v2 as released (TF-slim = keras.applications = timm)."""

from __future__ import annotations

from typing import Any

import keras

from keras_inception.models.blocks import (
    AVG_POOL,
    Geometry,
    conv2d_bn,
    drop_path_schedule,
    inception_block,
    inception_resnet_reduction_b,
    inception_resnet_stem,
    reduction_a,
    residual_stage,
)
from keras_inception.models.builder import build_model, document_builder
from keras_inception.registry import (
    FeatureTap,
    ModelSpec,
    RemoteFile,
    WeightsPreset,
    get_spec,
    register_model,
)

MODEL_NAME = "inception_resnet_v2"

MIXED_5B = [[(96, 1)], [(48, 1), (64, 5)], [(64, 1), (96, 3), (96, 3)], [AVG_POOL, (64, 1)]]
BLOCK35 = [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)]]
BLOCK17 = [[(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))]]
BLOCK8 = [[(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))]]
REPEATS = (10, 20, 10)


def inception_resnet_v2_body(x, drop_path_rate: float = 0.0, geometry: Geometry | None = None):
    """Stem to `conv_7b` (8x8x1536 at 299). Creates the weighted layers in exactly the
    order of keras.applications, so its release `.h5` files load as they are."""
    geometry = geometry or Geometry()
    rates = drop_path_schedule(drop_path_rate, sum(REPEATS))
    a, b, c = REPEATS
    x = inception_resnet_stem(x, last="pool", geometry=geometry)
    x = inception_block(x, MIXED_5B, "mixed_5b", geometry)
    x = residual_stage(x, BLOCK35, prefix="block35", repeats=a, scale=0.17,
                       drop_path_rates=rates[:a], geometry=geometry)
    x = reduction_a(x, 256, 256, 384, 384, geometry=geometry)
    x = residual_stage(x, BLOCK17, prefix="block17", repeats=b, scale=0.10,
                       drop_path_rates=rates[a:a + b], geometry=geometry)
    x = inception_resnet_reduction_b(x, (384, 288, 288, 320), geometry=geometry)
    x = residual_stage(x, BLOCK8, prefix="block8", repeats=c, scale=0.20,
                       drop_path_rates=rates[a + b:], last_linear=True, geometry=geometry)
    return conv2d_bn(x, 1536, 1, name="conv_7b")


@document_builder
def InceptionResNetV2(
    include_top: bool = True,
    weights: Any = "imagenet",
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Any = "softmax",
    name: str = "inception_resnet_v2",
    *,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    include_preprocessing: bool = False,
    align_feature_maps: bool = False,
    output_stride: int = 32,
) -> keras.Model:
    """Instantiates Inception-ResNet-v2.

    Reference: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and
    the Impact of Residual Connections on Learning", AAAI 2017
    (https://arxiv.org/abs/1602.07261).

    This is the released network (TF-slim, keras.applications, timm): 10/20/10
    residual blocks scaled by 0.17/0.10/0.20, a linear last block and a 1x1 conv
    with 1536 filters. It creates the same weighted layers in the same order as
    `keras.applications.InceptionResNetV2`, whose weight files load unchanged.
    Inputs are expected in [-1, 1] (`keras_inception.preprocess_input`) unless
    `include_preprocessing=True`.
    """
    return build_model(
        get_spec(MODEL_NAME), inception_resnet_v2_body, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate, include_preprocessing=include_preprocessing,
        align_feature_maps=align_feature_maps, output_stride=output_stride,
    )


KERAS_RELEASE_BASE = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_resnet_v2/"
)

SPEC = register_model(ModelSpec(
    name=MODEL_NAME,
    body=inception_resnet_v2_body,
    builder=InceptionResNetV2,
    title="Inception-ResNet-v2",
    signature=("conv_4a", "mixed_5b", "block35_10", "block8_10", "conv_7b"),
    # timm's feature_info: a converted timm checkpoint gives timm's feature maps.
    feature_taps=(
        FeatureTap("conv_2b_ac", 64, 2),
        FeatureTap("conv_4a_ac", 192, 4),
        FeatureTap("block35_10_ac", 320, 8),
        FeatureTap("block17_20_ac", 1088, 16),
        FeatureTap("conv_7b_ac", 1536, 32),
    ),
    fine_tune_from="block8_",
    presets=(
        WeightsPreset(
            model=MODEL_NAME,
            name="imagenet",
            source="keras.applications release (TF-slim inception_resnet_v2_2016_08_30)",
            description="ImageNet-1k, 80.4% top-1 (TF-slim)",
            license="Apache-2.0",
            top=RemoteFile(
                KERAS_RELEASE_BASE + "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
                "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
                "e693bd0210a403b3192acc6073ad2e96",
            ),
            notop=RemoteFile(
                KERAS_RELEASE_BASE + "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "d19885ff4a710c122648d3b5c3b684e4",
            ),
            crop_pct=0.8975,
        ),
        WeightsPreset(
            model=MODEL_NAME,
            name="imagenet_ens_adv",
            source=(
                "timm inception_resnet_v2.tf_ens_adv_in1k (TF ens_adv_inception_resnet_v2_2017_08_18, "
                "ensemble adversarial training), converted"
            ),
            description="ImageNet-1k, ensemble adversarially trained (Tramer et al. 2018)",
            license="Apache-2.0",
            source_format="timm",
            hf_repo="timm/inception_resnet_v2.tf_ens_adv_in1k",
            revision="main",
            crop_pct=0.8975,
        ),
    ),
))
