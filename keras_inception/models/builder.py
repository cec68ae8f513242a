"""What the builders share: argument validation, input, body + head, weight loading.

`build_model` is the classifiers' builder; `build_network` the assembly every builder
(FaceNet's too) goes through once its arguments are checked.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from keras_inception.files import looks_like_path
from keras_inception.layers import DescribedModel
from keras_inception.metadata import ModelMetadata
from keras_inception.models.blocks import OUTPUT_STRIDES, Geometry
from keras_inception.models.heads import classifier_head
from keras_inception.preprocessing import PIXEL_OFFSET, PIXEL_SCALE
from keras_inception.presets.loader import load_preset, load_weights_file
from keras_inception.registry import (
    MIN_IMAGE_SIZE,
    ModelSpec,
    known_preset_names,
    unavailable_reason,
)

DEFAULT_SIZE = 299
MIN_SIZE = MIN_IMAGE_SIZE
POOLING_MODES = (None, "avg", "max")


def validate_weights(spec: ModelSpec, weights: Any) -> str | None:
    """Returns the preset name, `None` for random init, or raises; files are checked."""
    if weights is None:
        return None
    model_name = spec.name
    presets = spec.preset_names
    if isinstance(weights, str) and weights in presets:
        return weights
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return None
    if isinstance(weights, str) and weights in known_preset_names():
        raise ValueError(
            f"{unavailable_reason(spec, weights)} Received weights={weights!r}; "
            f"allowed for {model_name}: None, {', '.join(map(repr, presets)) or 'no presets'}, "
            "or the path to a weights file."
        )
    if looks_like_path(weights):
        raise FileNotFoundError(
            f"`weights` points to a file that does not exist: weights={str(weights)!r}. "
            "Pass None, a preset name or the path to an existing weights file."
        )
    allowed = ", ".join(repr(p) for p in (None, *presets))
    raise ValueError(
        f"Invalid `weights`: received weights={weights!r}. Allowed: {allowed}, "
        "or the path to an existing weights file (.weights.h5, .h5, .keras)."
    )


def check_rate(name: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1); received {name}={value!r}.")
    return rate


def _spatial_dims(shape: tuple) -> tuple:
    if keras.config.image_data_format() == "channels_first":
        return shape[0], shape[1:]
    return shape[-1], shape[:-1]


def resolve_input_shape(
    *,
    input_shape: Any,
    input_tensor: Any,
    include_top: bool,
    preset: str | None,
    arg_name: str = "input_shape",
) -> tuple:
    """Validates `input_shape` (or the shape of `input_tensor`) and fills the default."""
    channels_first = keras.config.image_data_format() == "channels_first"
    default = (3, DEFAULT_SIZE, DEFAULT_SIZE) if channels_first else (DEFAULT_SIZE, DEFAULT_SIZE, 3)
    if input_tensor is not None:
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"`input_shape`={tuple(input_shape)} does not match the shape of `input_tensor` "
                f"{tensor_shape}; pass only one of them."
            )
        input_shape, arg_name = tensor_shape, "input_tensor"
    if input_shape is None:
        if include_top:
            return default
        return (3, None, None) if channels_first else (None, None, 3)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{arg_name}` must be a tuple of 3 integers (height, width, channels); "
            f"received {arg_name}={input_shape!r}."
        ) from None
    if len(input_shape) != 3:
        raise ValueError(
            f"`{arg_name}` must have 3 dimensions (height, width, channels); "
            f"received {arg_name}={input_shape}."
        )
    channels, spatial = _spatial_dims(input_shape)
    if preset is not None and channels != 3:
        raise ValueError(
            f"Pretrained weights (weights={preset!r}) need 3 input channels; "
            f"received {arg_name}={input_shape}."
        )
    if channels is None or channels < 1:
        raise ValueError(f"`{arg_name}` needs a known channel count; received {arg_name}={input_shape}.")
    for dim in spatial:
        if dim is not None and dim < MIN_SIZE:
            raise ValueError(
                f"Input size must be at least {MIN_SIZE}x{MIN_SIZE}; "
                f"received {arg_name}={input_shape}."
            )
    if preset is not None and include_top and input_shape != default:
        raise ValueError(
            f"With weights={preset!r} and include_top=True the input must be {default}; "
            f"received {arg_name}={input_shape}. Use include_top=False for other sizes."
        )
    return input_shape


def dense_geometry(align_feature_maps: Any, output_stride: Any) -> Geometry:
    """Checks the dense-prediction options and returns the `Geometry` they ask for."""
    if not isinstance(align_feature_maps, bool):
        raise ValueError(
            "`align_feature_maps` must be True or False; received "
            f"align_feature_maps={align_feature_maps!r}."
        )
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"`output_stride` must be one of {OUTPUT_STRIDES}; received output_stride={output_stride!r}."
        )
    return Geometry(align=align_feature_maps, output_stride=output_stride)


def validate_arguments(
    spec: ModelSpec,
    *,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: Any,
    pooling: Any,
    classes: Any,
    classifier_activation: Any,
    dropout_rate: Any,
    drop_path_rate: Any,
) -> tuple[str | None, tuple]:
    """Checks every builder argument up front; returns (preset, input_shape)."""
    preset = validate_weights(spec, weights)
    if pooling not in POOLING_MODES:
        raise ValueError(
            f"`pooling` must be one of {POOLING_MODES}; received pooling={pooling!r}."
        )
    if include_top:
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ValueError(f"`classes` must be a positive integer; received classes={classes!r}.")
        if preset is not None:
            expected = spec.preset(preset).classes
            if classes != expected:
                raise ValueError(
                    f"With weights={preset!r} and include_top=True, `classes` must be {expected}; "
                    f"received classes={classes}. Use include_top=False to train a new head."
                )
            activation = keras.activations.get(classifier_activation)
            if activation not in (keras.activations.get("softmax"), keras.activations.get(None)):
                raise ValueError(
                    "With pretrained weights, `classifier_activation` must be None or 'softmax'; "
                    f"received classifier_activation={classifier_activation!r}."
                )
    if input_tensor is not None and not keras.utils.is_keras_tensor(input_tensor):
        # keras.applications refuses these too in Keras 3 (Input(tensor=...) takes only
        # symbolic tensors); say what works instead of failing inside Keras.
        raise ValueError(
            "`input_tensor` must be a symbolic Keras tensor (from keras.Input() or a Keras "
            f"layer); received input_tensor of type {type(input_tensor).__name__}. To run the "
            "network on a backend tensor or array, build it with "
            "input_shape=tensor.shape[1:] and call it: model(tensor)."
        )
    check_rate("dropout_rate", dropout_rate)
    check_rate("drop_path_rate", drop_path_rate)
    shape = resolve_input_shape(
        input_shape=input_shape, input_tensor=input_tensor, include_top=include_top, preset=preset
    )
    return preset, shape


def build_model(
    spec: ModelSpec,
    body: Callable[..., Any],
    *,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: Any,
    pooling: Any,
    classes: int,
    classifier_activation: Any,
    name: str,
    dropout_rate: float,
    drop_path_rate: float,
    include_preprocessing: bool,
    align_feature_maps: bool = False,
    output_stride: int = 32,
) -> keras.Model:
    """A classifier: validates, builds `body(x, drop_path_rate=..., geometry=...)`, adds
    the classifier head (`heads.classifier_head`), loads weights."""
    geometry = dense_geometry(align_feature_maps, output_stride)
    preset, shape = validate_arguments(
        spec,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate,
    )
    # Raw 0-255 RGB -> [-1, 1], the "tf" mode of preprocess_input.
    rescaling = (layers.Rescaling(PIXEL_SCALE, offset=PIXEL_OFFSET, name="preprocessing")
                 if include_preprocessing else None)
    return build_network(
        spec, body, functools.partial(
            classifier_head, include_top=include_top, pooling=pooling, classes=classes,
            classifier_activation=classifier_activation, dropout_rate=dropout_rate),
        shape=shape, weights=weights, preset=preset, name=name, preprocessing=rescaling,
        drop_path_rate=drop_path_rate, geometry=geometry, include_top=include_top,
        input_tensor=input_tensor,
    )


def build_network(
    spec: ModelSpec,
    body: Callable[..., Any],
    head: Callable[[Any], Any],
    *,
    shape: tuple,
    weights: Any,
    preset: str | None,
    name: str,
    preprocessing: Callable[[Any], Any] | None = None,
    drop_path_rate: float = 0.0,
    geometry: Geometry | None = None,
    include_top: bool = True,
    input_tensor: Any = None,
    metadata: ModelMetadata | None = None,
    convert: Callable[[keras.Model, Any], None] | None = None,
) -> keras.Model:
    """What every builder shares once its arguments are checked: input (`input_layer`) ->
    `preprocessing` -> `body` -> `head`, the model (a `DescribedModel` carrying
    `metadata` when given), its weights, and its nesting on `input_tensor`.

    Weights: `convert(model, weights)` when given (an original file of another format),
    else the preset `preset`, else the weights file `weights` (None: random).
    """
    img_input = layers.Input(shape=shape, name="input_layer")
    x = img_input if preprocessing is None else preprocessing(img_input)
    x = head(body(x, drop_path_rate=float(drop_path_rate), geometry=geometry or Geometry()))
    if metadata is None:
        model = keras.Model(img_input, x, name=name)
    else:
        model = DescribedModel(img_input, x, name=name, metadata=metadata)
    if convert is not None:
        convert(model, weights)
    elif preset is not None:
        load_preset(model, spec, preset, include_top=include_top)
    elif weights is not None:
        load_weights_file(model, weights)
    if input_tensor is None:
        return model
    # On a given tensor the network is one nested layer (named `name`) of a model from
    # the tensor's source inputs, so several networks can share one input (an
    # ensemble) although their layer names repeat; `model.get_layer(name)` is it.
    return keras.Model(
        keras.utils.get_source_inputs(input_tensor), model(input_tensor), name=name
    )


_BUILDER_ARGS_DOC = """
    Args:
        include_top: whether to include the classification head (global average
            pooling, dropout, `Dense(classes)`).
        weights: `None` (random initialization), a preset name such as
            `"imagenet"` (see `keras_inception.list_weights()`), or the path to a
            weights file (`.weights.h5`, a legacy `.h5`, or a `.keras` file).
        input_tensor: optional symbolic Keras tensor (output of `keras.Input()` or
            of a layer) to use as the image input. The returned model then goes
            from the tensor's source inputs to the network's output and holds the
            network as one nested layer named `name` (`model.get_layer(name)`),
            so several networks can share one input, as in the paper's ensemble.
        input_shape: optional `(height, width, channels)` tuple. Defaults to
            `(299, 299, 3)` with the head and `(None, None, 3)` without. Height and
            width must be at least 75; pretrained weights need 3 channels, and
            `(299, 299, 3)` when `include_top=True`.
        pooling: `None`, `"avg"` or `"max"`: global pooling of the last feature map
            when `include_top=False`.
        classes: number of classes of the head; must match the weights' classes
            (1000) when loading pretrained weights with `include_top=True`.
        classifier_activation: activation of the head (`"softmax"`, `None` for
            logits, or any Keras activation when training from scratch).
        name: name of the model.
        dropout_rate: keyword-only; dropout before the classifier (the paper keeps
            0.8 of the activations, i.e. 0.2). Inactive at inference.
        drop_path_rate: keyword-only; stochastic depth on the residual branches,
            rising linearly with depth to this value. 0.0 disables it.
        include_preprocessing: keyword-only; when True the model takes raw 0-255
            RGB images and rescales them to [-1, 1] itself.
        align_feature_maps: keyword-only; when True every VALID convolution and
            pooling is SAME-padded (TF-slim's option of the same name), so an input
            divisible by 32 gives feature maps of exactly 1/2, 1/4, 1/8, 1/16 and
            1/32 of its size, which a feature pyramid can add together.
        output_stride: keyword-only; 32 (the released network), 16 or 8. The
            reductions beyond this stride keep stride 1 and the blocks after them
            use dilated (atrous) convolutions, rates 2 and 4, as DeepLab does: the
            last feature map is then 1/16 or 1/8 of the input. Kernels are
            unchanged, so pretrained weights load as they are.

    Returns:
        A `keras.Model`. Its outputs are float32 under mixed-precision policies.
"""


def document_builder(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Appends the arguments shared by every builder to its docstring.

    Docstrings are None under `python -OO`: then there is nothing to extend.
    """
    if builder.__doc__ is not None:
        builder.__doc__ += _BUILDER_ARGS_DOC
    return builder
