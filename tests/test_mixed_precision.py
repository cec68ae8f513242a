"""The classifiers of the registry under the mixed_float16 and mixed_bfloat16 policies (TF backend)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from support.backend_worker import feature_model
from support.helpers import rel_l2
from support.networks import EXPECTED

from keras_inception.layers import ScaledResidual
from keras_inception.models import get_builder
from keras_inception.preprocessing import load_image
from keras_inception.registry import classifier_names

MODELS = tuple(classifier_names())
RESIDUAL_MODELS = tuple(name for name in MODELS if EXPECTED[name].residual_blocks)
POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# Pooled features of a mixed model against the float32 model with the same weights.
FEATURES_TOL = {"mixed_float16": 0.02, "mixed_bfloat16": 0.1}
IMAGES_PER_CLASS = 2
# The training steps run eagerly at the smallest input the networks take: an eager step
# there costs about 2.4x less than at the shared models' 96 px (same weight files).
TRAIN_SIZE = 75


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    yield
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    assert policy == "float32", f"a test left the global policy at {policy}"


@pytest.fixture(scope="module")
def float32_weights(small_models, module_tmp_path) -> dict[str, Path]:
    folder = module_tmp_path
    paths = {}
    for name in MODELS:
        paths[name] = folder / f"{name}.weights.h5"
        small_models[name].save_weights(paths[name])
    return paths


@pytest.fixture(scope="module", params=sorted(POLICIES))
def mixed_models(request, small_models, float32_weights):
    """(policy, {name: model}) built under the policy from the float32 weight files."""
    size = small_models["inception_v4"].input_shape[1]
    keras.mixed_precision.set_global_policy(request.param)
    try:
        models = {
            name: get_builder(name)(
                weights=str(float32_weights[name]), input_shape=(size, size, 3), classes=5
            )
            for name in MODELS
        }
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return request.param, models


@pytest.fixture(scope="module")
def flowers_batch(flowers_dir):
    """A few real training images (2 per class) in [-1, 1] with their labels."""
    size = TRAIN_SIZE
    classes = sorted(p.name for p in (flowers_dir / "train").iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((flowers_dir / "train" / name).iterdir())[:IMAGES_PER_CLASS]:
            images.append(load_image(path, size))
            labels.append(label)
    x = np.stack(images).astype("float32") / 127.5 - 1.0
    return x, np.array(labels)


# `mixed_models` builds every network of the registry again under each policy (about 15 s
# of CPU per policy here): its tests are slow; the layer-level ones below stay fast.
@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_float32_weights_load_and_outputs_are_float32(mixed_models, small_models, name):
    policy, models = mixed_models
    model = models[name]
    assert model.dtype_policy.name == policy
    # Variables stay float32 under mixed precision and hold the file's values.
    reference = small_models[name]
    assert all(v.dtype == "float32" for v in model.weights)
    for ours, theirs in zip(model.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))

    x = np.random.default_rng(0).uniform(-1, 1, (2, *model.input_shape[1:])).astype("float32")
    # Eager calls: tracing a predict graph per model costs more than the small batch.
    features, probs = map(np.asarray, feature_model(model)(x, training=False))
    ref_features, ref_probs = map(np.asarray, feature_model(reference)(x, training=False))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert rel_l2(features, ref_features) < FEATURES_TOL[policy]
    assert np.abs(probs - ref_probs).max() < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", RESIDUAL_MODELS)
def test_residual_scaling_runs_in_compute_dtype(mixed_models, name):
    policy, models = mixed_models
    residuals = [layer for layer in models[name].layers if isinstance(layer, ScaledResidual)]
    assert len(residuals) > 10
    for layer in residuals:
        assert layer.compute_dtype == POLICIES[policy]
        assert layer.output.dtype == POLICIES[policy]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_scaled_residual_values_in_compute_dtype(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = ScaledResidual(0.17)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    shortcut, residual = rng.normal(size=(2, 2, 4, 3, 3)).astype("float32")
    out = layer([shortcut, residual])
    assert keras.backend.standardize_dtype(out.dtype) == POLICIES[policy]
    expected = np.maximum(shortcut + 0.17 * residual, 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).astype("float32"), expected,
                               atol=0.05)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_logits_head_is_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = get_builder("inception_resnet_v1")(
            weights=None, input_shape=(75, 75, 3), classes=3, classifier_activation=None
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.output.dtype == "float32"
    assert model.get_layer("avg_pool").compute_dtype == POLICIES[policy]
    logits = np.asarray(model(np.zeros((1, 75, 75, 3), "float32"), training=False))
    assert logits.dtype == np.float32 and logits.shape == (1, 3)


@pytest.mark.slow
@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name", MODELS)
def test_training_steps_on_flowers(float32_weights, flowers_batch, name, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = get_builder(name)(weights=str(float32_weights[name]),
                                  input_shape=(TRAIN_SIZE, TRAIN_SIZE, 3), classes=5)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x, y = flowers_batch
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        # Eager steps run the same ops; tracing a train graph per model and policy
        # would cost minutes on a 2-core CPU (XLA has its own tests).
        run_eagerly=True,
    )
    # Keras wraps the optimizer for float16 only; bfloat16 has float32's range.
    is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (policy == "mixed_float16")
    losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
    assert all(np.isfinite(losses)), losses
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_weights)
    if is_scaled:
        # Dynamic loss scaling is live: the scale is a finite power of two.
        scale = float(np.asarray(model.optimizer.dynamic_scale))
        assert scale >= 1.0 and np.log2(scale) == int(np.log2(scale))
