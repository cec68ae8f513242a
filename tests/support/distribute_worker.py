"""Subprocess entry point of tests/test_distribute.py.

Devices and the cluster are fixed when TensorFlow or JAX starts, so every
distributed check runs in a fresh process:

* `distribute_worker.py mirrored WORKDIR`: 2 logical CPU devices, a few steps of the
  frozen-base IR-v1 head under `mirrored` and the same steps on one device, written
  to WORKDIR/mirrored.json;
* `distribute_worker.py train DUMPDIR -- ARGS`: `keras-inception train ARGS` (with
  TF_CONFIG / KERAS_BACKEND from the environment); at the end of each `fit` the
  process writes its weights and how they are placed to DUMPDIR/<task>.npz/.json.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL = "inception_resnet_v1"
SIZE = 75


def run_mirrored(workdir: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from keras_inception import files
    from keras_inception import train as training
    from keras_inception.models import get_builder
    from keras_inception.train import data as data_lib
    from keras_inception.train import distribute
    from support.helpers import randomize_weights

    dist = distribute.resolve("mirrored")
    per_replica, epochs = 5, 3
    global_batch = per_replica * dist.num_replicas
    base_path = os.path.join(workdir, "base.weights.h5")
    base = get_builder(MODEL)(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                              pooling="avg")
    randomize_weights(base, seed=3)
    base.save_weights(base_path)

    images = data_lib.load_data("flowers_sample", max_per_class=4)
    # Evaluation transform: deterministic crops, so both runs see the same pixels.
    ds = data_lib.make_pipeline(images.train, image_size=SIZE, num_classes=5,
                                batch_size=global_batch, training=False)

    def fit(scope) -> tuple[keras.Model, list[float]]:
        with scope:
            # Dropout off and the base in inference mode (BatchNorm uses its moving
            # statistics, not per-replica batch statistics): the replicas' gradients
            # then add up to the one-device gradient exactly.
            model = training.build_transfer_model(MODEL, 5, SIZE, base_path, dropout_rate=0.0)
            training.freeze_base(model)
            # Same start in both runs; the random base gives nearly collinear features, hence
            # a small step.
            head = model.get_layer("predictions")
            head.set_weights([np.zeros(head.kernel.shape, "float32"), np.zeros(5, "float32")])
            model.compile(optimizer=keras.optimizers.SGD(0.002),
                          loss=keras.losses.CategoricalCrossentropy())
        history = model.fit(ds, epochs=epochs, verbose=2, shuffle=False)
        return model, [float(v) for v in history.history["loss"]]

    mirrored, mirrored_loss = fit(dist.scope())
    per_replica_values = {
        v.path: [np.asarray(t) for t in dist.engine.experimental_local_results(v.value)]
        for v in mirrored.trainable_weights
    }
    single, single_loss = fit(distribute.resolve("none").scope())
    result = {
        "replicas": dist.num_replicas,
        "strategy": type(dist.engine).__name__,
        "devices": list(dist.engine.extended.worker_devices),
        "steps": epochs * int(np.ceil(images.train_count / global_batch)),
        "mirrored_loss": mirrored_loss,
        "single_loss": single_loss,
        "components": {k: len(v) for k, v in per_replica_values.items()},
        "replica_max_abs_diff": max(
            float(np.max(np.abs(vals[0] - other)))
            for vals in per_replica_values.values() for other in vals[1:]),
        "weights": {v.path: np.asarray(v.numpy()).tolist() for v in mirrored.trainable_weights},
        "single_weights": {v.path: np.asarray(v.numpy()).tolist()
                           for v in single.trainable_weights},
    }
    files.write_json_atomic(os.path.join(workdir, "mirrored.json"), result)


def run_train(dump_dir: str, args: list[str]) -> int:
    import keras
    import numpy as np

    from keras_inception import files
    from keras_inception.cli import main
    from keras_inception.train import distribute
    from support import crash

    keras.config.disable_traceback_filtering()  # full tracebacks in the logs
    os.makedirs(dump_dir, exist_ok=True)
    tf_config = distribute.parse_tf_config()
    task = "local" if tf_config is None else "{type}-{index}".format(**tf_config["task"])

    class DumpWeights(keras.callbacks.Callback):
        """This process's weights at the end of `fit`, and the devices holding them."""

        def on_train_end(self, logs=None) -> None:
            weights = {v.path: np.asarray(keras.ops.convert_to_numpy(v.value))
                       for v in self.model.weights}
            def save_npz(path: str) -> None:
                with open(path, "wb") as f:
                    np.savez(f, **weights)

            files.write_atomic(os.path.join(dump_dir, f"{task}.npz"), save_npz)
            kernel = self.model.get_layer("predictions").kernel.value
            sharding = getattr(kernel, "sharding", None)  # JAX arrays
            info = {"backend": keras.backend.backend(),
                    "kernel_devices": len(sharding.device_set) if sharding is not None else None,
                    "kernel_replicated": bool(sharding.is_fully_replicated)
                    if sharding is not None else None}
            files.write_json_atomic(os.path.join(dump_dir, f"{task}.json"), info)

    # Every stage's callbacks, plus the dump, then the crash hook when
    # $KERAS_INCEPTION_CRASH_AFTER_EPOCH is set (tests/support/crash.py).
    crash.install([DumpWeights(), *crash.hook_from_env()])
    return main(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        run_mirrored(target)
    elif mode == "train":
        sys.exit(run_train(target, sys.argv[sys.argv.index("--") + 1:]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
