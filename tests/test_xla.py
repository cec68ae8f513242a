"""XLA on the TensorFlow backend: the train step really is XLA-compiled.

Keras silently turns `jit_compile=True` off (with only a warning) when a layer says
it does not support XLA, so the tests turn that warning into an error, check
`model.jit_compile`, reach the tf.function Keras runs per batch and check that it is
jit-compiled, and lower the real train step to XLA HLO (which fails on any op XLA
cannot compile; the LLVM code generation after it takes minutes on CPU and adds
nothing to the check).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.helpers import rel_l2

from keras_inception.export.fold_bn import FoldedBatchNorm, fuse_batchnorm
from keras_inception.registry import classifier_names

MODELS = tuple(classifier_names())


def _xla_train_step(model: keras.Model):
    """The tf.function that Keras' train function runs for one batch.

    Keras wraps its `one_step_on_data` tf.function (jit_compile=model.jit_compile)
    in plain closures; walk them to reach it.
    """
    model.make_train_function()
    pending, seen = [model.train_function], set()
    while pending:
        fn = pending.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        python_function = getattr(fn, "python_function", None)
        if python_function is not None and python_function.__name__ == "one_step_on_data":
            return fn
        pending += [f for f in (getattr(fn, "__wrapped__", None), python_function) if f]
        pending += [c.cell_contents for c in getattr(fn, "__closure__", None) or ()
                    if callable(c.cell_contents)]
    raise AssertionError("Keras' one_step_on_data tf.function was not found")


def _compiled_copy(model: keras.Model) -> keras.Model:
    """A new Model on the same layers (no rebuild), compiled with jit_compile=True."""
    copy = keras.Model(model.inputs, model.outputs)
    with warnings.catch_warnings():
        # Keras' only sign of falling back to non-XLA execution is a warning.
        warnings.filterwarnings("error", message=".*jit_compile.*")
        copy.compile(optimizer=keras.optimizers.SGD(0.01),
                     loss="sparse_categorical_crossentropy", jit_compile=True)
    return copy


@pytest.mark.parametrize("name", MODELS)
def test_train_step_asks_for_xla(small_models, name):
    """No layer of ours makes Keras fall back to non-XLA execution."""
    model = _compiled_copy(small_models[name])
    assert model.jit_compile is True
    assert _xla_train_step(model)._jit_compile is True


@pytest.mark.slow
def test_train_step_lowers_to_xla(small_models):
    """XLA accepts every op of the real train step (forward, gradients, SGD update)."""
    model = _compiled_copy(small_models["inception_resnet_v2"])
    model.optimizer.build(model.trainable_variables)
    size = model.input_shape[1]
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)), tf.float32)
    hlo = _xla_train_step(model).experimental_get_compiler_ir((x, tf.constant([0, 3])))(
        stage="hlo")
    assert hlo.count("convolution(") >= 2 * 244  # forward + gradients of 244 convs
    assert model.jit_compile is True


@pytest.mark.slow
def test_xla_inference_matches_eager(small_models):
    # The deepest network; each XLA compilation of a forward pass takes a minute here.
    model = small_models["inception_resnet_v2"]
    size = model.input_shape[1]
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)), tf.float32)
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    xla_call = tf.function(lambda t: features(t, training=False), jit_compile=True)
    # Lowering to HLO fails for anything XLA cannot compile.
    assert "convolution" in xla_call.experimental_get_compiler_ir(x)(stage="hlo")
    eager = features(x, training=False).numpy()
    assert np.abs(eager).max() > 1e-3
    assert rel_l2(xla_call(x).numpy(), eager) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fused_batchnorm_matches(small_models, name):
    """fuse_batchnorm (the inference speed-up measured in benchmarks/) changes no output."""
    model = small_models[name]
    folded = fuse_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert sum(isinstance(layer, FoldedBatchNorm) for layer in folded.layers) == sum(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    size = model.input_shape[1]
    x = np.random.default_rng(2).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    folded_features = keras.Model(folded.inputs, folded.get_layer("avg_pool").output)
    assert rel_l2(folded_features(x, training=False), features(x, training=False)) < 1e-5


def test_fuse_batchnorm_folds_only_a_conv_that_feeds_nothing_else():
    """The conv feeding each BatchNormalization comes from the model's config; a conv
    whose output is read elsewhere too (here also a model output), a shared conv and a
    conv with an activation keep their BatchNormalization."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    folded_conv = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="folded")
    read_twice = keras.layers.Conv2D(4, 3, padding="same", name="read_twice")
    shared = keras.layers.Conv2D(4, 1, name="shared")
    activated = keras.layers.Conv2D(4, 1, activation="relu", name="activated")
    x = keras.layers.BatchNormalization(name="bn_folded")(folded_conv(inputs))
    y = read_twice(x)
    z = keras.layers.BatchNormalization(name="bn_read_twice")(y)
    a = keras.layers.BatchNormalization(name="bn_shared")(shared(z))
    b = shared(a)
    c = keras.layers.BatchNormalization(name="bn_activated")(activated(b))
    model = keras.Model(inputs, [c, y])
    for layer in model.layers:  # non-trivial statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(np.random.uniform(-1, 1, shape))
            layer.moving_variance.assign(np.random.uniform(0.5, 2, shape))
            layer.gamma.assign(np.random.uniform(0.5, 2, shape))
            layer.beta.assign(np.random.uniform(-1, 1, shape))
    folded = fuse_batchnorm(model)
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert kinds["bn_folded"] == "FoldedBatchNorm"
    assert [kinds[n] for n in ("bn_read_twice", "bn_shared", "bn_activated")] == [
        "BatchNormalization"] * 3
    x = np.random.default_rng(3).uniform(-1, 1, (2, 12, 12, 3)).astype("float32")
    for got, want in zip(folded(x, training=False), model(x, training=False), strict=True):
        assert rel_l2(got, want) < 1e-5

    sequential = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c"),
        keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
    ])
    folded = fuse_batchnorm(sequential)
    assert isinstance(folded.get_layer("bn"), FoldedBatchNorm)
    x = x[:, :8, :8]
    assert rel_l2(folded(x, training=False), sequential(x, training=False)) < 1e-5
    with pytest.raises(ValueError, match="functional keras.Model"):
        fuse_batchnorm(keras.layers.Dense(2))
