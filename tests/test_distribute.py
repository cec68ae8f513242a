"""Multi-device and multi-worker training (keras_inception.train.distribute).

Devices, clusters and backends are fixed when TensorFlow or JAX starts, so each
distributed run is a subprocess (tests/support/distribute_worker.py), bounded by a timeout:

* `mirrored` over 2 logical CPU devices against one device, same global batch;
* `multi_worker`: two `keras-inception train` processes on 127.0.0.1 with their own
  TF_CONFIG, killed at the end of epoch 1 (the crash hook) and restarted;
* JAX `DataParallel` over 2 host devices.

Everything is tiny: Inception-ResNet-v1 at 75 px with a frozen randomized base (the
head stage of the transfer recipe), 10 training images, one step per epoch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.crash import CRASH_AFTER_EPOCH_ENV
from support.helpers import rel_l2

from keras_inception import train as training
from keras_inception.cli import main
from keras_inception.train import distribute, resume

MODEL = "inception_resnet_v1"
SIZE = 75
REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "support" / "distribute_worker.py"
TIMEOUT_S = 420


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CONFIG", "XLA_FLAGS", CRASH_AFTER_EPOCH_ENV)}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
                "CUDA_VISIBLE_DEVICES": ""}, **extra)
    return env


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _train_args(base_weights: str, out: Path, epochs: int, strategy: str,
                batch_size: int = 5) -> list[str]:
    return ["train", "--model", MODEL, "--image-size", str(SIZE), "--batch-size",
            str(batch_size), "--epochs", str(epochs), "--stage1-epochs", str(epochs),
            "--weights", base_weights, "--max-per-class", "2", "--strategy", strategy,
            "--out", str(out)]


class Cluster:
    """Two `keras-inception train` workers on 127.0.0.1, each with its TF_CONFIG."""

    def __init__(self, args: list[str], dump: Path, logs: Path,
                 worker_env: dict[int, dict[str, str]] | None = None) -> None:
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        dump.mkdir(parents=True, exist_ok=True)
        self.logs = [logs.with_suffix(f".worker{i}.log") for i in range(2)]
        self.procs = []
        for i in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            with open(self.logs[i], "w") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), "train", str(dump), "--", *args],
                    cwd=REPO, env=_env(TF_CONFIG=tf_config, **(worker_env or {}).get(i, {})),
                    stdout=log,
                    stderr=subprocess.STDOUT))

    def log(self, i: int) -> str:
        return self.logs[i].read_text()

    def wait(self, timeout: float = TIMEOUT_S) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            for p in self.procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill()
        return [p.returncode for p in self.procs]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def _dumped_weights(dump: Path, task: str) -> dict[str, np.ndarray]:
    with np.load(dump / f"{task}.npz") as f:
        return {k: f[k] for k in f.files}


def _assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys() and len(a) > 100
    differing = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differing, f"{len(differing)} weights differ between workers, e.g. {differing[:3]}"


# --- in-process: names, TF_CONFIG, learning rate ------------------------------------------


def test_tf_config_parsing_and_chief():
    two = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    parsed = distribute.parse_tf_config(json.dumps(two))
    assert parsed == two and distribute.num_tasks(parsed) == 2
    assert not distribute.is_chief_task(parsed)
    assert distribute.is_chief_task({**two, "task": {"type": "worker", "index": 0}})
    with_chief = {"cluster": {"chief": ["c:3"], "worker": ["a:1", "b:2"]},
                  "task": {"type": "worker", "index": 0}}
    assert distribute.num_tasks(distribute.parse_tf_config(json.dumps(with_chief))) == 3
    assert not distribute.is_chief_task(with_chief)  # the chief task is the chief
    assert distribute.is_chief_task({**with_chief, "task": {"type": "chief", "index": 0}})
    assert distribute.parse_tf_config("") is None and distribute.num_tasks(None) == 1

    bad = {
        "{not json": "not valid JSON",
        '{"task": {"type": "worker", "index": 0}}': '"cluster"',
        '{"cluster": {"worker": ["a:1"]}}': '"task"',
        '{"cluster": {"worker": ["a:1"], "ps": ["p:2"]}, "task": {"type": "worker", "index": 0}}':
            '"ps" task: parameter-server',
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}':
            "task index 1, not in 0..0",
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}':
            'task type "chief", which is not in the cluster',
        '{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}':
            "'nohost'.*not \"host:port\"",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=f"TF_CONFIG {'.*' if message else ''}"):
            distribute.parse_tf_config(text)
        with pytest.raises(ValueError, match=message):
            distribute.parse_tf_config(text)


def test_strategy_names_and_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    # One CPU, no cluster: auto and none train on one device.
    for name in ("auto", "none", None):
        dist = distribute.resolve(name)
        assert (dist.name, dist.num_replicas, dist.is_chief, dist.engine) == ("none", 1, True, None)
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*received strategy='ring'"):
        distribute.resolve("ring")
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*'ring'"):
        training.TrainConfig(out="x", strategy="ring").validate()
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        distribute.resolve("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {}}')
    with pytest.raises(ValueError, match='TF_CONFIG needs a "task"'):
        distribute.resolve("auto")
    with pytest.raises(RuntimeError, match="strategy='tpu' found no TPU: set TPU_NAME"):
        distribute.resolve("tpu")
    # keras.distribution splits every batch evenly: uneven splits are refused up front.
    data_parallel = distribute.Distribution("mirrored", engine=object(), num_replicas=2)
    data_parallel.check_even_split({"train": 10, "val": 4})
    with pytest.raises(ValueError, match="over 2 devices, but the val split has 5 images"):
        data_parallel.check_even_split({"train": 10, "val": 5})


def test_cli_rejects_unknown_strategy(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--strategy", "ring", "--out", "unused"])
    assert e.value.code == 2
    assert "--strategy: invalid choice: 'ring'" in capsys.readouterr().err


def test_learning_rate_scaling_rule():
    assert distribute.scaled_learning_rate(0.045, 8, distribute.SCALING_RULES["paper"]) == \
        pytest.approx(0.36)
    assert distribute.scaled_learning_rate(1e-3, 4, distribute.SCALING_RULES["transfer"]) == \
        pytest.approx(2e-3)
    assert distribute.scaled_learning_rate(1e-3, 1, "linear") == 1e-3
    with pytest.raises(ValueError, match="rule.*'cubic'"):
        distribute.scaled_learning_rate(1e-3, 2, "cubic")
    with pytest.raises(ValueError, match="replicas.*0"):
        distribute.scaled_learning_rate(1e-3, 0, "linear")


def test_pipeline_shards_by_data_and_resume_points(tmp_path):
    import tensorflow as tf

    from keras_inception.train import data as data_lib

    images = data_lib.load_data("flowers_sample", max_per_class=1)
    for training_mode in (True, False):
        ds = data_lib.make_pipeline(images.train, image_size=SIZE, num_classes=5, batch_size=2,
                                    training=training_mode)
        assert ds.options().experimental_distribute.auto_shard_policy == \
            tf.data.experimental.AutoShardPolicy.DATA
    # Where a stage would resume, as every worker checks it before training.
    done, backup = Path(resume.done_path(str(tmp_path), "head")), tmp_path / "head"
    assert resume.resume_point(str(done), str(backup)) == 0
    backup.mkdir()
    (backup / resume.weights_name(2)).write_bytes(b"")
    (backup / resume.PROGRESS_FILE).write_text(
        json.dumps({"stage": "head", "epoch": 2, "weights": resume.weights_name(2)}))
    assert resume.resume_point(str(done), str(backup)) == 2
    done.write_bytes(b"")
    assert resume.resume_point(str(done), str(backup)) == -1


# --- mirrored over 2 logical CPU devices ---------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
def test_mirrored_matches_one_device(tmp_path):
    """Same steps, same global batch: mirrored over 2 devices == one device.

    Comparable by construction: the base runs in inference mode (BatchNorm uses its
    moving statistics, not per-replica batch statistics), dropout is off and the
    data is the deterministic evaluation transform, so the mean of the two replicas'
    gradients is the gradient of the whole batch, up to float rounding.
    """
    proc = subprocess.run([sys.executable, str(WORKER), "mirrored", str(tmp_path)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "mirrored.json").read_text())
    assert r["strategy"] == "MirroredStrategy" and r["replicas"] == 2
    assert [d.split("/")[-1] for d in r["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert r["steps"] == 6
    loss = np.array(r["mirrored_loss"])
    assert np.all(np.isfinite(loss)) and np.all(np.diff(loss) < 0), loss
    # Each trainable variable is mirrored on both devices, bit for bit.
    assert r["components"] == {"predictions/kernel": 2, "predictions/bias": 2}
    assert r["replica_max_abs_diff"] == 0.0
    np.testing.assert_allclose(loss, r["single_loss"], rtol=1e-5)
    for name, value in r["weights"].items():
        start = np.zeros_like(np.asarray(value))
        assert np.max(np.abs(np.asarray(value) - start)) > 0, f"{name} did not train"
        assert rel_l2(value, r["single_weights"][name]) < 1e-4, name


# --- multi_worker: two processes on 127.0.0.1 -----------------------------------------------


@pytest.fixture(scope="module")
def resumed_cluster(module_tmp_path, base_weights) -> dict:
    """Two workers train 3 epochs; the chief dies at the end of epoch 1; both are restarted.

    The crash hook SIGKILLs the chief (worker 0) at the end of epoch 1, after its
    callbacks wrote the history and the backup; worker 1 cannot go on alone (its next
    all-reduce has no partner), so it is stopped too, and the cluster is restarted.
    The restarted cluster is a complete two-process run (it finishes and writes
    everything), so it serves both the plain multi-worker checks and the resume checks.
    """
    root = module_tmp_path
    out, dump = root / "run", root / "dump"
    first = Cluster(_train_args(base_weights, out, 3, "multi_worker"), dump, root / "first",
                    worker_env={0: {CRASH_AFTER_EPOCH_ENV: "1"}})
    try:
        first.procs[0].wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        first.kill()
    killed = {
        "codes": [p.returncode for p in first.procs],
        "logs": [first.log(0), first.log(1)],
        "epochs": [r["epoch"] for r in training.read_history(str(out / "history.csv"))],
        "resume_point": resume.resume_point(resume.done_path(str(out / "backup"), "head"),
                                            str(out / "backup" / "head")),
        "report": (out / "report.json").exists(),
    }
    # Restarted with `auto`, which picks multi_worker from TF_CONFIG.
    second = Cluster(_train_args(base_weights, out, 3, "auto"), dump, root / "second")
    codes = second.wait()
    return {"out": out, "dump": dump, "codes": codes, "killed": killed,
            "logs": [second.log(0), second.log(1)]}


def _completed(run: dict) -> None:
    assert run["codes"] == [0, 0], (
        f"exit codes {run['codes']}:\n{run['logs'][0][-3000:]}\n{run['logs'][1][-3000:]}")


@pytest.mark.subprocess
@pytest.mark.slow
def test_multi_worker_two_processes(resumed_cluster, base_weights):
    """Both workers finish, only the chief writes, and they end with the same weights."""
    run = resumed_cluster
    _completed(run)
    out, logs = run["out"], run["logs"]
    for log in logs:
        assert "multi_worker over 2 replicas, global batch 10" in log
    # The chief (worker 0) writes the model and the report; worker 1 writes nothing.
    assert "validation accuracy" in logs[0] and "validation accuracy" not in logs[1]
    for name in ("best.keras", "history.csv", "report.json", "curves.png"):
        assert (out / name).is_file(), name
    # The chief's best.keras carries the class names (no class_names.json beside it).
    from keras_inception.metadata import read_keras_metadata

    names = json.loads((out / "report.json").read_text())["class_names"]
    assert read_keras_metadata(out / "best.keras").class_names == tuple(names)
    assert not (out / "backup").exists()
    report = json.loads((out / "report.json").read_text())
    assert (report["strategy"], report["replicas"], report["batch_size"]) == ("multi_worker", 2, 10)
    # The transfer recipe's Adam: square-root scaling with the replicas.
    assert report["learning_rate"] == pytest.approx(1e-3 * np.sqrt(2))
    # Synchronous training: both processes end with the same weights.
    chief = _dumped_weights(run["dump"], "worker-0")
    _assert_same_weights(chief, _dumped_weights(run["dump"], "worker-1"))
    # ... which did train: the head moved away from its initialization.
    import keras

    import keras_inception  # noqa: F401  (custom layers)

    start = training.build_transfer_model(MODEL, 5, SIZE, base_weights)
    assert np.max(np.abs(chief["predictions/kernel"]
                         - start.get_layer("predictions").kernel.numpy())) > 0
    saved = keras.saving.load_model(out / "best.keras")
    assert saved.count_params() == start.count_params()


@pytest.mark.subprocess
@pytest.mark.slow
def test_multi_worker_resumes_after_a_worker_dies(resumed_cluster):
    """Chief killed after epoch 1 of 3, cluster restarted: epochs 2 and 3 run once, from
    the backup."""
    run = resumed_cluster
    killed = run["killed"]
    # The chief died at the crash hook, right after epoch 1; worker 1 did not finish.
    assert killed["codes"][0] == -signal.SIGKILL and killed["codes"][1] != 0, (
        f"exit codes {killed['codes']}:\n" + "\n".join(log[-3000:] for log in killed["logs"]))
    assert "Epoch 1/3" in killed["logs"][0] and "Epoch 2/3" not in killed["logs"][0]
    assert killed["epochs"] == [1] and killed["resume_point"] == 1 and not killed["report"]
    _completed(run)
    for log in run["logs"]:
        # Both workers resumed from the chief's backup: no epoch 1, epochs 2 and 3 once.
        assert "Epoch 1/3" not in log
        assert log.count("Epoch 2/3") == 1 and log.count("Epoch 3/3") == 1
    rows = training.read_history(str(run["out"] / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    report = json.loads((run["out"] / "report.json").read_text())
    assert report["epochs"] == 3 and report["best_epoch"] in (1, 2, 3)


# --- JAX: keras.distribution.DataParallel -----------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.jax
def test_jax_data_parallel_on_two_host_devices(tmp_path, base_weights):
    out, dump = tmp_path / "run", tmp_path / "dump"
    # Two host devices; optimization level 0 halves XLA:CPU compile time, same numerics.
    env = _env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                         "--xla_backend_optimization_level=0")
    args = _train_args(base_weights, out, 1, "mirrored", batch_size=2)
    proc = subprocess.run([sys.executable, str(WORKER), "train", str(dump), "--", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mirrored over 2 replicas, global batch 4" in proc.stdout
    info = json.loads((dump / "local.json").read_text())
    # The variables live on both devices, replicated.
    assert info == {"backend": "jax", "kernel_devices": 2, "kernel_replicated": True}
    report = json.loads((out / "report.json").read_text())
    assert (report["strategy"], report["replicas"], report["batch_size"]) == ("mirrored", 2, 4)
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1]
    assert np.isfinite(rows[0]["loss"]) and np.isfinite(rows[0]["val_loss"])
    weights = _dumped_weights(dump, "local")
    assert all(np.all(np.isfinite(w)) for w in weights.values())
