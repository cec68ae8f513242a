"""Strategy names -> the backends' engines: `resolve` and the `Distribution` it returns.

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

Keras 3 with `MultiWorkerMirroredStrategy`: `model.fit` of Keras 3.15 fails with it
(keras-team/keras#20585, tensorflow/tensorflow#72388) because it asks the strategy
for two reductions that TensorFlow's collective implementation does not do: a
`reduce` of the nested `(x, y)` sample batch it builds the model from ("Attempt to
convert a value (PerReplica...) to a Tensor"), and a `reduce(..., axis=0)` of the
scalar metric values of each step ("Invalid reduction dimension 0 for input with 0
dimensions"). `multi_worker_strategy()` returns a subclass of the TensorFlow strategy
with those two reductions done tensor by tensor (public `tf.distribute` API only);
everything else (all-reduce of the gradients, variable initialization, input
sharding) is TensorFlow's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import keras

from keras_inception.train.config import STRATEGIES
from keras_inception.train.distribute.tf_config import (
    TF_CONFIG_EXAMPLE,
    num_tasks,
    parse_tf_config,
)


def _tf():
    import tensorflow as tf

    return tf


# --- the engines --------------------------------------------------------------------------


def _multi_worker_strategy_class():
    """The workaround class (see the module docstring), defined once TensorFlow is imported."""
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
    """The `MultiWorkerMirroredStrategy` of the cluster in `TF_CONFIG` (with the reductions
    Keras 3 needs, see the module docstring).

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


def mirrored_strategy():
    """`tf.distribute.MirroredStrategy` over every GPU, else every logical CPU device."""
    tf = _tf()
    gpus = tf.config.list_logical_devices("GPU")
    # Without GPUs, the logical CPU devices the user configured (one by default).
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def tpu_strategy():
    """`tf.distribute.TPUStrategy` on the TPU of `TPU_NAME`, or the TPU VM's own TPU."""
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


# --- Distribution ----------------------------------------------------------------------------


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


# --- resolve -----------------------------------------------------------------------------------


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
        return _from_object(strategy)
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


def _from_object(strategy: Any) -> Distribution:
    if hasattr(strategy, "num_replicas_in_sync"):
        multi = type(strategy).__name__.startswith(("MultiWorker", "CollectiveAllReduce"))
        if multi and type(strategy).__module__.startswith("tensorflow") and num_tasks(
                {"cluster": strategy.cluster_resolver.cluster_spec().as_dict()}) > 1:
            raise ValueError(
                "Keras 3's fit fails with TensorFlow's own MultiWorkerMirroredStrategy "
                "(keras-team/keras#20585): pass strategy='multi_worker' or "
                "keras_inception.train.distribute.multi_worker_strategy() instead of "
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
        return _tf_distribution(name, tpu_strategy())
    return _tf_distribution(name, mirrored_strategy())


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


__all__ = [
    "Distribution",
    "mirrored_strategy",
    "multi_worker_strategy",
    "resolve",
    "tpu_strategy",
]
