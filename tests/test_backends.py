"""The classifiers of the registry on the JAX and PyTorch backends, against TensorFlow.

Keras fixes its backend at import, so each backend runs in one subprocess
(tests/support/backend_worker.py) that does every check and writes a JSON report; the two
run side by side while this process computes the TensorFlow reference. Weights go
from TensorFlow to the other backends as `.weights.h5` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.backend_worker import check_drop_path, check_remat, explanations, feature_model
from support.helpers import rel_l2

from keras_inception.registry import classifier_names

# Each backend runs in a subprocess of its own (jax, torch); the TF reference alongside.
pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.jax, pytest.mark.torch]

MODELS = tuple(classifier_names())
BACKENDS = ("jax", "torch")
# One training step per backend: the smallest network that has every layer type
# of the Inception-ResNets (compiling a train step takes minutes on a 2-core CPU).
TRAIN_MODELS = ("inception_resnet_v1",)
# keras_inception.explain on each backend: gradients through each backend's own machinery
# (the smallest network: the maps' code is the same for all).
EXPLAIN_MODELS = ("inception_resnet_v1",)
EXPLAIN_TOL = 1e-3
WORKER = Path(__file__).parent / "support" / "backend_worker.py"
PARITY_TOL = 1e-4
WORKER_TIMEOUT_S = 1200
# XLA:CPU flags of the JAX worker, which compiles a few hundred small programs (initializers,
# op-by-op gradients) and a few jitted ones; the numerics are the same. Level 0 halves LLVM's
# time; the elemental emitters compile faster than the MLIR fusion emitters (the worker's CPU
# time: 64 s -> 46 s on 2 cores).
JAX_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def _jax_xla_flags(env: dict[str, str]) -> str:
    """JAX_XLA_FLAGS, less the emitters' switch where this jaxlib does not know it: XLA aborts
    on an unknown flag, and that switch is recent (a second's probe, against 18 s it saves)."""
    flags = " ".join(JAX_XLA_FLAGS)
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"],
                           env=dict(env, XLA_FLAGS=flags), capture_output=True, check=False)
    return flags if probe.returncode == 0 else JAX_XLA_FLAGS[0]


@pytest.fixture(scope="module")
def backend_runs(small_models, module_tmp_path):
    """Saves weights and inputs, runs both workers, returns (workdir, reports, TF outputs)."""
    workdir = module_tmp_path
    size = small_models["inception_v4"].input_shape[1]
    for name in MODELS:
        small_models[name].save_weights(workdir / f"{name}.weights.h5")
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    np.save(workdir / "inputs.npy", x)
    config = {"models": list(MODELS), "image_size": size, "classes": 5,
              "train_models": list(TRAIN_MODELS), "jit_compile": "auto",
              "explain_models": list(EXPLAIN_MODELS)}
    (workdir / "config.json").write_text(json.dumps(config))

    procs = {}
    for backend in BACKENDS:
        # One thread each: both workers and this process share the cores, where torch's
        # OpenMP threads spin waiting for one another (its worker: 42 s of CPU -> 15 s).
        env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="",
                   JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
        if backend == "jax":
            env["XLA_FLAGS"] = _jax_xla_flags(env)
        log = open(workdir / f"{backend}.log", "w")  # noqa: SIM115 (closed below)
        procs[backend] = (subprocess.Popen([sys.executable, str(WORKER), str(workdir)],
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log)
    reference = {name: [np.asarray(t) for t in feature_model(small_models[name])(x, training=False)]
                 for name in MODELS}
    reports = {}
    for backend, (proc, log) in procs.items():
        try:
            proc.wait(timeout=WORKER_TIMEOUT_S)
        finally:
            proc.kill()
            log.close()
        report_path = workdir / f"{backend}.json"
        log_tail = (workdir / f"{backend}.log").read_text()[-3000:]
        assert proc.returncode == 0 and report_path.is_file(), (
            f"{backend} worker failed (exit {proc.returncode}):\n{log_tail}"
        )
        reports[backend] = json.loads(report_path.read_text())
    return workdir, reports, reference


def _model_report(backend_runs, backend: str, name: str) -> dict:
    _, reports, _ = backend_runs
    report = reports[backend]
    assert report["backend"] == backend
    assert f"model:{name}" not in report["errors"], report["errors"][f"model:{name}"]
    return report["models"][name]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_builder_and_weight_loading(backend_runs, small_models, backend, name):
    """The builder runs and loads a TensorFlow `.weights.h5` file on the backend."""
    result = _model_report(backend_runs, backend, name)
    assert result["params"] == small_models[name].count_params()
    assert result["output_shape"] == [2, 5]
    assert result["output_dtype"] == "float32"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_match_tensorflow(backend_runs, backend, name):
    """Identical weights give the same pooled features and probabilities as TensorFlow."""
    result_dir, _, reference = backend_runs
    _model_report(backend_runs, backend, name)
    outputs = np.load(result_dir / f"{backend}_{name}.npz")
    ref_features, ref_probs = reference[name]
    assert np.abs(ref_features).max() > 1e-3  # the comparison is not between zeros
    assert rel_l2(outputs["features"], ref_features) <= PARITY_TOL
    assert rel_l2(outputs["probs"], ref_probs) <= PARITY_TOL


@pytest.fixture(scope="module")
def tf_explanations(backend_runs, small_models) -> dict[str, dict[str, np.ndarray]]:
    """The TensorFlow explanations of each EXPLAIN_MODELS network, once for both backends."""
    x = np.load(backend_runs[0] / "inputs.npy")
    return {name: explanations(small_models[name], x) for name in EXPLAIN_MODELS}


@pytest.mark.parametrize("name", EXPLAIN_MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_explanations_match_tensorflow(backend_runs, tf_explanations, backend, name):
    """Identical weights and images: the same Grad-CAM, Grad-CAM++ and integrated
    gradients as TensorFlow (max abs difference <= 1e-3; maps are in [0, 1])."""
    result_dir, _, _ = backend_runs
    _model_report(backend_runs, backend, name)
    outputs = np.load(result_dir / f"{backend}_{name}.npz")
    for key, reference in tf_explanations[name].items():
        assert outputs[key].shape == reference.shape, key
        assert np.abs(reference).max() > 1e-3  # the comparison is not between zeros
        if key.startswith("map_"):  # maps that vary over the image, not one constant
            assert reference.std(axis=(1, 2)).min() > 0.01, key
        assert np.abs(outputs[key] - reference).max() <= EXPLAIN_TOL, key


@pytest.mark.parametrize("name", TRAIN_MODELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_training_step(backend_runs, backend, name):
    result = _model_report(backend_runs, backend, name)
    assert np.isfinite(result["train_loss"]) and result["train_loss"] > 0
    # Every kernel, bias and BN offset received an update.
    assert result["train_changed_weights"] == result["train_weights"]


def _check_drop_path(result: dict) -> None:
    # rate 0.5 over 256 samples: each sample either dropped or rescaled by 1/(1-rate).
    assert result["dropped_fraction"] + result["kept_fraction"] == pytest.approx(1.0)
    assert 0.35 < result["dropped_fraction"] < 0.65
    assert result["inference_max_abs_err"] < 1e-6
    assert np.isfinite(result["train_step_loss"])


def _check_remat(result: dict) -> None:
    assert result["grad_max_rel_diff"] < 1e-5
    assert result["moving_stats_max_abs_diff"] < 1e-6
    # And remat did happen (only) where it was asked for: the comparison above would
    # also pass if RematScope had no effect.
    assert result["remat_rematerialized"] is True
    assert result["plain_rematerialized"] is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_path_on_backend(backend_runs, backend):
    _, reports, _ = backend_runs
    assert "drop_path" not in reports[backend]["errors"], reports[backend]["errors"]["drop_path"]
    _check_drop_path(reports[backend]["drop_path"])


def test_drop_path_on_tensorflow():
    _check_drop_path(check_drop_path("tensorflow"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_remat_scope_on_backend(backend_runs, backend):
    """keras.RematScope("activations") on our blocks: same gradients and BN statistics."""
    _, reports, _ = backend_runs
    assert "remat" not in reports[backend]["errors"], reports[backend]["errors"]["remat"]
    _check_remat(reports[backend]["remat"])


def test_remat_scope_on_tensorflow():
    _check_remat(check_remat("tensorflow"))
