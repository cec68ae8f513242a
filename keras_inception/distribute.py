"""Training on several devices or machines with the backends' own engines.

`resolve(strategy)` turns a strategy name (or an existing strategy object) into a
`Distribution`: the engine's object, its scope, the number of replicas and whether
this process is the chief. `keras_inception.training.train` and
`keras-inception train --strategy NAME` use it.

Names (`STRATEGIES`):

* `none`: one device, no distribution.
* `mirrored`: synchronous data parallelism over the devices of this machine:
  `tf.distribute.MirroredStrategy` over every GPU (or, without GPUs, every logical
  CPU device) on TensorFlow; `keras.distribution.DataParallel` over every device on
  JAX.
* `multi_worker`: synchronous data parallelism over several machines (or
  processes), `tf.distribute.MultiWorkerMirroredStrategy` configured by the
  standard `TF_CONFIG` environment variable (see `parse_tf_config`). TensorFlow only.
* `tpu`: `tf.distribute.TPUStrategy` on the TPU named by `TPU_NAME` (or the TPU VM's
  own TPU); on JAX, `DataParallel` over the TPU devices.
* `auto` (default): `multi_worker` when `TF_CONFIG` describes more than one task,
  else `mirrored` when there is more than one accelerator, else `none`.

Batch and learning rate: the batch size of a run is per replica, so the global batch
is `batch_size x replicas`. The recipes' learning rates are tuned for one replica's
batch; with N replicas they are scaled by the recipe's rule (`SCALING_RULES`):
linearly (x N, Goyal et al. 2017, "Accurate, Large Minibatch SGD") for the `paper`
recipe's RMSprop with momentum, and by the square root (x sqrt(N), the rule for
adaptive optimizers, Malladi et al. 2022) for the `transfer` recipe's Adam.

Keras 3 with `MultiWorkerMirroredStrategy`: `model.fit` of Keras 3.15 fails with it
(keras-team/keras#20585, tensorflow/tensorflow#72388) because it asks the strategy
for two reductions that TensorFlow's collective implementation does not do: a
`reduce` of the nested `(x, y)` sample batch it builds the model from ("Attempt to
convert a value (PerReplica...) to a Tensor"), and a `reduce(..., axis=0)` of the
scalar metric values of each step ("Invalid reduction dimension 0 for input with 0
dimensions"). `MultiWorkerMirroredStrategy` below is the TensorFlow strategy with
those two reductions done tensor by tensor; everything else (all-reduce of the
gradients, variable initialization, input sharding) is TensorFlow's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
from typing import Any

import keras

STRATEGIES = ("auto", "none", "mirrored", "multi_worker", "tpu")
# How the recipes' learning rates follow the number of replicas (see the module docstring).
SCALING_RULES = {"paper": "linear", "transfer": "sqrt"}
TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)
# Task types of TF_CONFIG that synchronous multi-worker training can use.
_SYNC_TASK_TYPES = ("chief", "worker")
_ADDRESS = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:(\d{1,5})$")


# --- TF_CONFIG -----------------------------------------------------------------------


def parse_tf_config(text: str | None = None) -> dict[str, Any] | None:
    """The validated `TF_CONFIG` (the environment variable when `text` is None).

    Returns None when it is unset or empty, else `{"cluster": {job: [address]},
    "task": {"type": str, "index": int}}`. Only the synchronous task types `chief`
    (at most one) and `worker` are accepted: Keras 3 has no parameter-server
    training and no side-car evaluator, so a `ps` or `evaluator` task is an error.

    Raises:
        ValueError: not JSON, a missing or malformed `cluster` or `task`, a task
            that is not in the cluster, or an address that is not `host:port`.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None

    def fail(problem: str) -> ValueError:
        return ValueError(
            f"TF_CONFIG {problem}; received TF_CONFIG={text!r}. Expected e.g. {TF_CONFIG_EXAMPLE}."
        )

    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(f"is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config[
        "cluster"
    ]:
        raise fail('needs a "cluster" object mapping task types to address lists')
    cluster = config["cluster"]
    for job, addresses in cluster.items():
        if job in ("ps", "evaluator"):
            raise fail(
                f'has a "{job}" task: parameter-server training and side-car evaluation '
                "are not supported by Keras 3; use only \"chief\" and \"worker\" tasks"
            )
        if job not in _SYNC_TASK_TYPES:
            raise fail(f'has an unknown task type "{job}" (allowed: {", ".join(_SYNC_TASK_TYPES)})')
        if not isinstance(addresses, list) or not addresses:
            raise fail(f'must list the addresses of "{job}" as a non-empty list')
        for address in addresses:
            match = _ADDRESS.match(address) if isinstance(address, str) else None
            if not match or not 0 < int(match.group(1)) < 65536:
                raise fail(f'has the address {address!r} for "{job}", which is not "host:port"')
    if len(cluster.get("chief", [])) > 1:
        raise fail('lists more than one "chief"')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise fail('needs a "task" object with "type" and "index"')
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise fail(f'has task type "{kind}", which is not in the cluster ({", ".join(cluster)})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(
        cluster[kind]
    ):
        raise fail(f'has task index {index!r}, not in 0..{len(cluster[kind]) - 1} for "{kind}"')
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


def num_tasks(tf_config: dict[str, Any] | None) -> int:
    """The number of processes a (parsed) `TF_CONFIG` describes (1 without one)."""
    if not tf_config:
        return 1
    return sum(len(addresses) for addresses in tf_config["cluster"].values())


def is_chief_task(tf_config: dict[str, Any] | None) -> bool:
    """TensorFlow's rule: the `chief` task if there is one, else worker 0."""
    if not tf_config:
        return True
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


# --- the learning rate ----------------------------------------------------------------


def scaled_learning_rate(learning_rate: float, replicas: int, rule: str) -> float:
    """`learning_rate` (tuned for one replica's batch) for `replicas` replicas.

    `rule` is "linear" (x replicas), "sqrt" (x sqrt(replicas)) or "none".
    """
    if not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"`replicas` must be a positive integer; received replicas={replicas!r}.")
    factors = {"linear": float(replicas), "sqrt": math.sqrt(replicas), "none": 1.0}
    if rule not in factors:
        raise ValueError(f"`rule` must be one of {tuple(factors)}; received rule={rule!r}.")
    return learning_rate * factors[rule]


# --- strategies -----------------------------------------------------------------------


def _tf():
    import tensorflow as tf

    return tf


def _multi_worker_strategy_class():
    tf = _tf()

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`tf.distribute.MultiWorkerMirroredStrategy` with the reductions Keras 3 asks for.

        TensorFlow's collective `reduce` takes a single tensor, and `axis=0` needs a
        batch dimension; Keras 3's `fit` passes a nested sample batch and scalar
        metrics. Each tensor is reduced on its own, and a scalar with `axis=0` is
        averaged over replicas, which is what Keras does with one worker.
        """

        def reduce(self, reduce_op, value, axis=None):  # noqa: D102 (see the class)
            def one(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return super(MultiWorkerMirroredStrategy, self).reduce(
                    reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy


def multi_worker_strategy(tf_config: dict[str, Any] | None = None):
    """The `MultiWorkerMirroredStrategy` of the cluster in `TF_CONFIG`.

    It must be created before TensorFlow runs anything else in the process (the
    collective ops are configured at start-up), which `resolve` does first thing.

    Raises:
        ValueError: `TF_CONFIG` is unset or invalid.
        RuntimeError: TensorFlow was initialized before the strategy was created.
    """
    if tf_config is None:
        tf_config = parse_tf_config()
    if tf_config is None:
        raise ValueError(
            "strategy='multi_worker' reads the cluster from the TF_CONFIG environment "
            f"variable, which is not set. Set it in every process, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' "
            "(same cluster everywhere, a different task index per process)."
        )
    try:
        return _multi_worker_strategy_class()()
    except RuntimeError as e:
        raise RuntimeError(
            "strategy='multi_worker' must be created before TensorFlow runs any operation "
            "in the process (collective ops are configured at start-up): create it first "
            f"thing, before loading data or building models. TensorFlow said: {e}"
        ) from None


def _mirrored_strategy():
    tf = _tf()
    gpus = tf.config.list_logical_devices("GPU")
    # Without GPUs, the logical CPU devices the user configured (one by default).
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def _tpu_strategy():
    tf = _tf()
    name = os.environ.get("TPU_NAME", "")
    on_tpu_vm = any(os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0"))
    if not name and not on_tpu_vm:
        raise RuntimeError(
            "strategy='tpu' found no TPU: set TPU_NAME to the TPU's name or address "
            "(e.g. grpc://10.0.0.2:8470), or run on a Cloud TPU VM."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise RuntimeError(f"strategy='tpu' could not connect to the TPU {name or 'local'!r}: "
                           f"{e}") from None
    return tf.distribute.TPUStrategy(resolver)


@dataclasses.dataclass
class Distribution:
    """How one training process takes part in a (possibly) distributed run.

    Attributes:
        name: "none", "mirrored", "multi_worker" or "tpu" (after resolving "auto").
        engine: the `tf.distribute.Strategy`, the `keras.distribution.Distribution`
            (JAX) or None.
        num_replicas: replicas that train in sync (all workers together).
        is_chief: whether this process writes checkpoints, the model and reports.
    """

    name: str
    engine: Any = None
    num_replicas: int = 1
    is_chief: bool = True

    def scope(self):
        """Where models, optimizers and metrics must be created."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def fit_scope(self):
        """Where `fit` runs: outside a tf.distribute scope (Keras enters it where it
        must; callbacks then create no variables in the strategy), inside a
        keras.distribution scope (JAX reads the distribution when it feeds batches)."""
        if self.engine is None or self.is_tf_strategy:
            return contextlib.nullcontext()
        return self.engine.scope()

    @property
    def is_tf_strategy(self) -> bool:
        return self.engine is not None and hasattr(self.engine, "num_replicas_in_sync")

    def check_even_split(self, sizes: dict[str, int]) -> None:
        """Fails when a keras.distribution (JAX) run would get a batch it cannot split.

        `DataParallel` splits every batch evenly over its devices, the last, partial
        batch of an epoch included, so each split's size must be a multiple of the
        number of replicas (tf.distribute handles uneven batches itself).
        """
        if self.engine is None or self.is_tf_strategy or self.num_replicas == 1:
            return
        for split, size in sizes.items():
            if size % self.num_replicas:
                raise ValueError(
                    f"strategy={self.name!r} splits every batch evenly over "
                    f"{self.num_replicas} devices, but the {split} split has {size} images, "
                    f"not a multiple of {self.num_replicas}: use a multiple (e.g. with "
                    "--max-per-class) or strategy='none'."
                )

    def check_same_state(self, what: str, value: int) -> None:
        """Fails unless every worker has the same `value` of `what` (e.g. a resume point).

        The workers of a multi-worker run share one output folder; a worker that
        sees another resume point than the chief would wait forever in the first
        all-reduce, so a mismatch is a clear error instead.
        """
        if self.name != "multi_worker":
            return
        tf = _tf()
        strategy = self.engine
        # Each worker contributes its value; all-gather brings every value to every worker.
        values = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant([value], tf.int64))
        seen = sorted(set(strategy.gather(values, axis=0).numpy().tolist()))
        if len(seen) > 1:
            raise RuntimeError(
                f"The workers of this multi-worker run see different {what} ({seen}; this "
                f"worker: {value}). The output folder must be the same storage for every "
                "worker (a shared file system such as NFS, or a gs:// path), and every "
                "worker must be started with the same arguments."
            )


def _tf_distribution(name: str, strategy: Any) -> Distribution:
    return Distribution(name, strategy, int(strategy.num_replicas_in_sync),
                        bool(strategy.extended.should_checkpoint))


def resolve(strategy: Any = "auto") -> Distribution:
    """A `Distribution` from a name of `STRATEGIES`, a `tf.distribute.Strategy`, a
    `keras.distribution.Distribution`, a `Distribution` or None (= "auto").

    Raises:
        ValueError: an unknown name, a name the current backend cannot run, or an
            invalid `TF_CONFIG`.
        RuntimeError: the hardware or cluster the name asks for is not there.
    """
    if isinstance(strategy, Distribution):
        return strategy
    if strategy is None:
        strategy = "auto"
    if not isinstance(strategy, str):
        if hasattr(strategy, "num_replicas_in_sync"):
            multi = type(strategy).__name__.startswith(("MultiWorker", "CollectiveAllReduce"))
            if multi and type(strategy).__module__.startswith("tensorflow") and num_tasks(
                    {"cluster": strategy.cluster_resolver.cluster_spec().as_dict()}) > 1:
                raise ValueError(
                    "Keras 3's fit fails with TensorFlow's own MultiWorkerMirroredStrategy "
                    "(keras-team/keras#20585): pass strategy='multi_worker' or "
                    "keras_inception.distribute.multi_worker_strategy() instead of "
                    f"{type(strategy).__name__}."
                )
            return _tf_distribution("multi_worker" if multi else "mirrored", strategy)
        if isinstance(strategy, keras.distribution.Distribution):
            replicas = int(strategy.device_mesh.devices.size)
            return Distribution("mirrored", strategy, replicas, True)
        raise ValueError(
            "`strategy` must be one of "
            f"{STRATEGIES}, a tf.distribute.Strategy or a keras.distribution.Distribution; "
            f"received strategy={strategy!r}."
        )
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received strategy={strategy!r}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _resolve_tensorflow(strategy)
    if backend == "jax":
        return _resolve_jax(strategy)
    if strategy in ("auto", "none"):
        return Distribution("none")
    raise ValueError(
        f"strategy={strategy!r} needs the TensorFlow or JAX backend; the {backend} backend "
        "trains on one device here (strategy='none')."
    )


def _resolve_tensorflow(name: str) -> Distribution:
    tf_config = parse_tf_config() if name in ("auto", "multi_worker") else None
    if name == "auto":
        if num_tasks(tf_config) > 1:
            name = "multi_worker"
        else:
            gpus = _tf().config.list_physical_devices("GPU")
            name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return Distribution("none")
    if name == "multi_worker":
        return _tf_distribution(name, multi_worker_strategy(tf_config))
    if name == "tpu":
        return _tf_distribution(name, _tpu_strategy())
    return _tf_distribution(name, _mirrored_strategy())


def _resolve_jax(name: str) -> Distribution:
    if name == "multi_worker":
        raise ValueError(
            "strategy='multi_worker' is TensorFlow's MultiWorkerMirroredStrategy and needs "
            "KERAS_BACKEND=tensorflow. On JAX, start every process with "
            "keras.distribution.initialize() (JAX's multi-process runtime) and use "
            "strategy='mirrored', which then spans the devices of all processes."
        )
    devices = keras.distribution.list_devices()
    if name == "tpu" and not all(d.lower().startswith("tpu") for d in devices):
        raise RuntimeError(f"strategy='tpu' found no TPU devices in JAX (devices: {devices}).")
    if name == "none" or (name == "auto" and len(devices) < 2):
        return Distribution("none")
    engine = keras.distribution.DataParallel(devices=devices)
    return Distribution("tpu" if name == "tpu" else "mirrored", engine, len(devices), True)


# --- checkpoints of multi-worker runs -------------------------------------------------------


class RestoreFromChief(keras.callbacks.Callback):
    """Restores a non-chief worker from the chief's `BackupAndRestore` folder.

    The weights are the same on every worker of a synchronous run, so the chief's
    backup is every worker's backup; reading it (rather than a backup of one's own)
    guarantees that all workers resume at the same epoch.
    """

    def __init__(self, backup_dir: str) -> None:
        super().__init__()
        self.reader = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.reader.set_model(self.model)
        self.reader.on_train_begin(logs)


def backup_callbacks(backup_dir: str, chief: bool) -> list:
    """`BackupAndRestore` for one process: the chief writes `backup_dir`; another worker
    restores from it and writes its own backup to a private temporary folder (deleted
    at the end of training), as TensorFlow's multi-worker protocol has it.
    """
    if chief:
        return [keras.callbacks.BackupAndRestore(backup_dir)]
    private = tempfile.mkdtemp(prefix="keras-inception-worker-backup-")
    return [RestoreFromChief(backup_dir), keras.callbacks.BackupAndRestore(private)]


def resume_point(done_path: str, backup_dir: str) -> int:
    """Where a stage would start from the files in the output folder: -1 when it is
    finished (`done_path` exists), else the epochs its backup has done (0: none)."""
    if os.path.isfile(done_path):
        return -1
    try:
        with open(os.path.join(backup_dir, "training_metadata.json")) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError):
        return 0
