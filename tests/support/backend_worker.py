"""Runs the backend checks in a process whose KERAS_BACKEND is jax or torch.

Keras fixes its backend at import, so tests/test_backends.py starts this script once
per backend. It reads what the TensorFlow process prepared in `WORKDIR` (inputs.npy
and one `{model}.weights.h5` per network), and writes `{backend}.json` (facts and any
error per check) plus `{backend}_{model}.npz` (outputs) for the parent to assert on.

    KERAS_BACKEND=jax python tests/support/backend_worker.py WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU on every backend

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402

from keras_inception.layers import ScaledResidual  # noqa: E402
from keras_inception.models import get_builder  # noqa: E402


def feature_model(model: keras.Model) -> keras.Model:
    """Same weights, two outputs: the pooled features and the class probabilities."""
    return keras.Model(model.inputs, [model.get_layer("avg_pool").output, model.output])


def check_model(name: str, workdir: Path, config: dict, backend: str) -> dict:
    start = time.perf_counter()
    size, classes = config["image_size"], config["classes"]
    model = get_builder(name)(
        weights=str(workdir / f"{name}.weights.h5"), input_shape=(size, size, 3), classes=classes
    )
    result = {"build_and_load_s": time.perf_counter() - start, "params": model.count_params()}
    x = np.load(workdir / "inputs.npy")
    features, probs = feature_model(model).predict(x, batch_size=len(x), verbose=0)
    np.savez(workdir / f"{backend}_{name}.npz", features=features, probs=probs,
             **(explanations(model, x) if name in config["explain_models"] else {}))
    result["output_shape"] = list(probs.shape)
    result["output_dtype"] = str(probs.dtype)

    if name in config["train_models"]:
        before = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss="sparse_categorical_crossentropy",
            jit_compile=config["jit_compile"],
        )
        loss = model.train_on_batch(x, np.arange(len(x)) % classes)
        after = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
        result["train_loss"] = float(np.asarray(loss))
        result["train_changed_weights"] = sum(
            not np.array_equal(a, b) for a, b in zip(before, after, strict=True)
        )
        result["train_weights"] = len(before)
    result["seconds"] = time.perf_counter() - start
    return result


def explanations(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ at the stride-8 feature tap (the last one is 1x1 at the
    tests' 75 px), and integrated gradients, for the parent to compare across backends."""
    from keras_inception import explain
    from keras_inception.registry import spec_of

    layer = spec_of(model).feature_taps[2].layer
    maps = {f"map_{m.replace('+', 'p')}": explain.grad_cam(model, x, layer=layer, method=m)
            for m in explain.METHODS}
    return {**maps, "integrated_gradients": explain.integrated_gradients(model, x, steps=2)}


def check_drop_path(backend: str) -> dict:
    """ScaledResidual's stochastic depth: eager statistics and one compiled train step."""
    rate, scale = 0.5, 0.3
    layer = ScaledResidual(scale, activation=None, drop_path_rate=rate, seed=3)
    shortcut = np.ones((256, 2, 2, 4), "float32")
    residual = np.full((256, 2, 2, 4), 2.0, "float32")
    out = keras.ops.convert_to_numpy(layer([shortcut, residual], training=True))
    kept_value = 1.0 + scale * 2.0 / (1.0 - rate)
    per_sample = out.reshape(256, -1)
    dropped = np.all(per_sample == 1.0, axis=1)
    kept = np.all(np.isclose(per_sample, kept_value), axis=1)
    inference = keras.ops.convert_to_numpy(layer([shortcut, residual], training=False))

    # The same layer inside a model's compiled train step (jax.jit / torch eager).
    inp = keras.Input((4, 4, 2))
    up = keras.layers.Conv2D(2, 1)(inp)
    y = ScaledResidual(0.2, drop_path_rate=0.3, seed=1)([inp, up])
    y = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y))
    tiny = keras.Model(inp, y)
    tiny.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    loss = tiny.train_on_batch(rng.normal(size=(8, 4, 4, 2)).astype("float32"), np.arange(8) % 3)
    return {
        "dropped_fraction": float(dropped.mean()),
        "kept_fraction": float(kept.mean()),
        "inference_max_abs_err": float(np.abs(inference - (1.0 + scale * 2.0)).max()),
        "train_step_loss": float(np.asarray(loss)),
    }


def check_remat(backend: str, mode: str = "activations") -> dict:
    """Gradients of a stem + residual blocks built under keras.RematScope(mode)
    against the same network built without it (identical weights)."""
    from keras_inception.models import blocks

    def build(remat: bool) -> keras.Model:
        scope = keras.RematScope(mode=mode) if remat else keras.RematScope(mode=None)
        with scope:
            inp = keras.Input((33, 33, 3))
            x = blocks.stem_convs(inp)
            for i in range(2):
                x = blocks.inception_resnet_block(
                    x, [[(8, 1)], [(8, 1), (8, 3)]], scale=0.2, name=f"block{i}"
                )
            out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
            return keras.Model(inp, out)

    plain, remat = build(False), build(True)
    remat.set_weights(plain.get_weights())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 33, 33, 3)).astype("float32")
    y = np.arange(4) % 3
    grads, recomputed = {}, {}
    for label, model in (("plain", plain), ("remat", remat)):
        calls = _count_activation_calls(model)
        grads[label] = [np.asarray(g) for g in _gradients(model, x, y, backend)]
        recomputed[label] = _rematerialized(model, x, y, backend, calls)
    diff = max(
        float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
        for a, b in zip(grads["plain"], grads["remat"], strict=True)
    )
    moving = max(
        float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())
        for a, b in zip(plain.non_trainable_weights, remat.non_trainable_weights,
                        strict=True)
    )
    return {"grad_max_rel_diff": diff, "moving_stats_max_abs_diff": moving,
            "plain_rematerialized": recomputed["plain"],
            "remat_rematerialized": recomputed["remat"]}


def _count_activation_calls(model: keras.Model) -> list[int]:
    """Wraps each Activation layer's (public) `activation` function with a call counter:
    under RematScope("activations") it runs again during the backward pass."""
    calls = [0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Activation):
            def counted(inputs, fn=layer.activation):
                calls[0] += 1
                return fn(inputs)
            layer.activation = counted
    return calls


def _rematerialized(model: keras.Model, x, y, backend: str, calls: list[int]) -> bool:
    """Whether the activations were recomputed in the backward pass: more activation
    calls than one forward pass makes (TensorFlow, torch: eager recomputation), or a
    checkpoint in the traced gradient (JAX, where remat is a jaxpr primitive)."""
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def loss(tv):
            logits, _ = model.stateless_call(tv, non_trainable, x, training=True)
            return loss_fn(y, logits)

        text = str(jax.make_jaxpr(jax.grad(loss))(trainable))
        return "checkpoint" in text or "remat" in text
    calls[0] = 0
    model(x, training=True)
    forward = calls[0]
    calls[0] = 0
    _gradients(model, x, y, backend)
    return calls[0] > forward


def _gradients(model: keras.Model, x, y, backend: str) -> list:
    """Gradients of the training loss, and the BN statistics updated, per backend."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(tv, ntv):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_fn(y, logits), ntv

        (_, ntv), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable, non_trainable)
        for var, value in zip(model.non_trainable_variables, ntv, strict=True):
            var.assign(value)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        model.zero_grad()
        loss = loss_fn(y, model(x, training=True))
        loss.backward()
        return [v.value.grad.cpu().numpy() for v in model.trainable_variables]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def main(workdir: Path) -> int:
    backend = keras.backend.backend()
    config = json.loads((workdir / "config.json").read_text())
    report = {"backend": backend, "keras": keras.__version__, "models": {}, "errors": {}}
    checks = [(f"model:{name}", lambda n=name: check_model(n, workdir, config, backend))
              for name in config["models"]]
    checks += [("drop_path", lambda: check_drop_path(backend)),
               ("remat", lambda: check_remat(backend))]
    for key, check in checks:
        try:
            value = check()
        except Exception:  # reported to the parent, which fails the matching test
            report["errors"][key] = traceback.format_exc()
            continue
        if key.startswith("model:"):
            report["models"][key[6:]] = value
        else:
            report[key] = value
    out = workdir / f"{backend}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
