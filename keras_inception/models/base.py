"""What the three builders share: argument validation, input, head, weight loading."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from keras_inception import weights as weights_lib

DEFAULT_SIZE = 299
MIN_SIZE = 75
POOLING_MODES = (None, "avg", "max")


def _is_path_like(value: Any) -> bool:
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (
        os.sep in value or value.endswith((".h5", ".hdf5", ".keras", ".weights.h5"))
    )


def validate_weights(model_name: str, weights: Any) -> str | None:
    """Returns the preset name, `None` for random init, or raises; files are checked."""
    if weights is None:
        return None
    presets = weights_lib.preset_names(model_name)
    if isinstance(weights, str) and weights in presets:
        return weights
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return None
    if weights == "imagenet" or (isinstance(weights, str) and weights in weights_lib.KNOWN_PRESETS):
        raise ValueError(
            f"{weights_lib.unavailable_reason(model_name, weights)} Received weights={weights!r}; "
            f"allowed for {model_name}: None, {', '.join(map(repr, presets)) or 'no presets'}, "
            "or the path to a weights file."
        )
    if _is_path_like(weights):
        raise FileNotFoundError(
            f"`weights` points to a file that does not exist: weights={str(weights)!r}. "
            "Pass None, a preset name or the path to an existing weights file."
        )
    allowed = ", ".join(repr(p) for p in (None, *presets))
    raise ValueError(
        f"Invalid `weights`: received weights={weights!r}. Allowed: {allowed}, "
        "or the path to an existing weights file (.weights.h5, .h5, .keras)."
    )


def _check_rate(name: str, value: Any) -> float:
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


def validate_arguments(
    model_name: str,
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
    preset = validate_weights(model_name, weights)
    if pooling not in POOLING_MODES:
        raise ValueError(
            f"`pooling` must be one of {POOLING_MODES}; received pooling={pooling!r}."
        )
    if include_top:
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ValueError(f"`classes` must be a positive integer; received classes={classes!r}.")
        if preset is not None:
            expected = weights_lib.get_preset(model_name, preset).classes
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
    if input_tensor is not None and not (
        keras.utils.is_keras_tensor(input_tensor) or keras.ops.is_tensor(input_tensor)
    ):
        raise ValueError(
            "`input_tensor` must be a Keras tensor (e.g. from keras.Input) or a backend tensor; "
            f"received input_tensor of type {type(input_tensor).__name__}."
        )
    _check_rate("dropout_rate", dropout_rate)
    _check_rate("drop_path_rate", drop_path_rate)
    shape = resolve_input_shape(
        input_shape=input_shape, input_tensor=input_tensor, include_top=include_top, preset=preset
    )
    return preset, shape


def build_model(
    model_name: str,
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
) -> keras.Model:
    """Validates, builds `body(x, drop_path_rate=...)`, adds the head, loads weights."""
    preset, shape = validate_arguments(
        model_name,
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
    if input_tensor is None:
        img_input = layers.Input(shape=shape, name="input_layer")
    elif keras.utils.is_keras_tensor(input_tensor):
        img_input = input_tensor
    else:
        img_input = layers.Input(tensor=input_tensor, shape=shape)

    x = img_input
    if include_preprocessing:
        # Raw 0-255 RGB -> [-1, 1], the "tf" mode of preprocess_input.
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocessing")(x)
    x = body(x, drop_path_rate=float(drop_path_rate))

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate:
            x = layers.Dropout(float(dropout_rate), name="dropout")(x)
        # float32 head: logits/probabilities stay float32 under mixed precision.
        x = layers.Dense(
            classes, activation=classifier_activation, dtype="float32", name="predictions"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = keras.Model(inputs, x, name=name)

    if preset is not None:
        path = weights_lib.fetch_weights(model_name, preset, include_top=include_top)
        weights_lib.load_weights_file(model, path)
    elif weights is not None:
        weights_lib.load_weights_file(model, weights)
    return model


BUILDER_ARGS_DOC = """
    Args:
        include_top: whether to include the classification head (global average
            pooling, dropout, `Dense(classes)`).
        weights: `None` (random initialization), a preset name such as
            `"imagenet"` (see `keras_inception.list_weights()`), or the path to a
            weights file (`.weights.h5`, a legacy `.h5`, or a `.keras` file).
        input_tensor: optional Keras tensor (output of `keras.Input()`) to use as
            the image input.
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

    Returns:
        A `keras.Model`. Its outputs are float32 under mixed-precision policies.
"""
