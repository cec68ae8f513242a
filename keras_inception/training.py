"""Fine-tuning and training from scratch: the `transfer` and `paper` recipes.

`train(TrainConfig(...))` loads the data (`keras_inception.data`), builds the model,
runs the recipe's stages with `model.fit` and writes into `config.out`:

* `best.keras`: the model of the epoch with the best validation accuracy;
* `class_names.json`: the class names, in the order of the model's outputs;
* `history.csv`: one row per epoch (numbered from 1), rewritten atomically so that a
  resumed run never repeats or skips a row;
* `logs/`: TensorBoard logs;
* `report.json`, `curves.png`, `confusion.png`: evaluation of `best.keras` on the
  validation split.

A run killed at any point and started again with the same `out` continues from its
last finished epoch (`keras.callbacks.BackupAndRestore`, one backup per stage).

Recipes:

* `transfer`: stage 1 trains a new head on the frozen pretrained base, called with
  `training=False` so its BatchNorm statistics never change; stage 2 unfreezes the
  top blocks (BatchNorm layers stay frozen and in inference mode) with a low, cosine-
  decaying learning rate. Without pretrained weights there is nothing to transfer:
  the whole network is trained from scratch in a single stage.
* `paper`: training from scratch as in section 4 of Szegedy et al. (2016): RMSprop
  (rho 0.9, momentum 0.9, epsilon 1.0), learning rate 0.045 decayed by 0.94 every two
  epochs, an exponential moving average of the weights used for evaluation and
  saving, label smoothing 0.1, gradient clipping at global norm 2.0, weight decay
  4e-5 (decoupled, as Keras optimizers apply it) and head dropout 0.2.

Several devices or machines (`config.strategy` or the `strategy` argument of
`train`, see `keras_inception.distribute`): the model, optimizer and metrics are
created inside the strategy's scope, `batch_size` is per replica, the learning rate
is scaled by the recipe's rule for the number of replicas, and only the chief writes
files (the other workers restore from the chief's backup).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

RECIPES = ("transfer", "paper")
PRECISIONS = ("none", "float16", "bfloat16")
BEST_MODEL = "best.keras"
CLASS_NAMES_FILE = "class_names.json"
HISTORY_FILE = "history.csv"
REPORT_FILE = "report.json"
# The first layer (by name prefix) of the blocks unfrozen in stage 2 of `transfer`.
FINE_TUNE_FROM = {
    "inception_v4": "mixed_7b",
    "inception_resnet_v1": "block8_",
    "inception_resnet_v2": "block8_",
}

# The paper recipe's constants (section 4 of the paper; label smoothing and clipping
# follow Inception-v3, whose recipe the paper reuses).
PAPER = {
    "learning_rate": 0.045,
    "decay_rate": 0.94,
    "decay_epochs": 2,
    "rho": 0.9,
    "momentum": 0.9,
    "epsilon": 1.0,
    "ema_momentum": 0.9999,
    "label_smoothing": 0.1,
    "global_clipnorm": 2.0,
    "weight_decay": 4e-5,
    "dropout_rate": 0.2,
}
# The recipes' base learning rates, for one replica's batch.
BASE_LEARNING_RATE = {"transfer": 1e-3, "paper": PAPER["learning_rate"]}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the CLI flags map one to one onto it.

    `weights=None` means the recipe's default: "imagenet" for `transfer`, none for
    `paper`; pass "none" for random initialization or the path of a weights file.
    """

    out: str
    model: str = "inception_resnet_v2"
    data: str = "flowers_sample"
    image_size: int = 299
    batch_size: int = 32
    epochs: int = 10
    weights: str | None = None
    recipe: str = "transfer"
    mixed_precision: str = "none"
    jit: bool | None = None
    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    crop_pct: float | None = None
    learning_rate: float | None = None
    stage1_epochs: int | None = None
    max_per_class: int | None = None
    verbose: int | str = "auto"
    strategy: str = "auto"

    def validate(self) -> None:
        from keras_inception.distribute import STRATEGIES
        from keras_inception.models import get_builder

        get_builder(self.model)
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {STRATEGIES}; received strategy={self.strategy!r}.")
        if self.recipe not in RECIPES:
            raise ValueError(f"`recipe` must be one of {RECIPES}; received recipe={self.recipe!r}.")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(
                f"`mixed_precision` must be one of {PRECISIONS}; "
                f"received mixed_precision={self.mixed_precision!r}."
            )
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
        if not isinstance(self.image_size, int) or self.image_size < 75:
            raise ValueError(
                f"`image_size` must be an integer >= 75; received image_size={self.image_size!r}."
            )
        if self.recipe == "paper" and self.resolved_weights() not in (None,) and not (
            os.path.isfile(str(self.resolved_weights()))
        ):
            raise ValueError(
                "The `paper` recipe trains from scratch: `weights` must be 'none' or a weights "
                f"file of the full model; received weights={self.weights!r}."
            )

    def resolved_weights(self) -> str | None:
        """The weights to load: None (random), a preset name or a file."""
        if self.weights is None:
            return "imagenet" if self.recipe == "transfer" else None
        return None if str(self.weights).lower() == "none" else self.weights


@dataclasses.dataclass
class Stage:
    """One `fit` call: epochs [start, end) with its own trainable set and optimizer."""

    name: str
    start: int
    end: int
    compile_args: Callable[[int], dict]  # steps_per_epoch -> compile kwargs
    prepare: Callable[[keras.Model], None]  # sets what is trainable


# --- models -----------------------------------------------------------------------


def build_transfer_model(
    model_name: str, num_classes: int, image_size: int, weights: str | None,
    dropout_rate: float = 0.2,
) -> keras.Model:
    """A pretrained base (no top, avg pooling) called with `training=False` + a new head.

    Calling the base with `training=False` keeps its BatchNorm layers in inference
    mode whatever their `trainable` flag, so fine-tuning never updates their
    statistics (the Keras transfer-learning guide's rule).
    """
    from keras_inception.models import get_builder

    base = get_builder(model_name)(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
        pooling="avg",
    )
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = base(inputs, training=False)
    x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=f"{model_name}_transfer")


def base_of(model: keras.Model) -> keras.Model:
    """The pretrained base inside a model made by `build_transfer_model`."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def freeze_base(model: keras.Model) -> None:
    """Stage 1: only the head trains."""
    base_of(model).trainable = False


def unfreeze_top(model: keras.Model, model_name: str) -> None:
    """Stage 2: unfreeze the base from `FINE_TUNE_FROM[model_name]` on, except BatchNorm."""
    base = base_of(model)
    base.trainable = True
    prefix = FINE_TUNE_FROM[model_name]
    names = [layer.name for layer in base.layers]
    first = next(i for i, name in enumerate(names) if name.startswith(prefix))
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def _all_trainable(model: keras.Model) -> None:
    model.trainable = True


def paper_optimizer(steps_per_epoch: int, total_epochs: int,
                    learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """RMSprop of the paper with its step-decay schedule, clipping, weight decay and EMA.

    The EMA momentum is the paper's 0.9999, lowered for short runs so that the
    average covers about the last tenth of the steps instead of the initial weights.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate or PAPER["learning_rate"],
        decay_steps=PAPER["decay_epochs"] * steps_per_epoch,
        decay_rate=PAPER["decay_rate"],
        staircase=True,
    )
    total_steps = max(1, steps_per_epoch * total_epochs)
    optimizer = keras.optimizers.RMSprop(
        learning_rate=schedule,
        rho=PAPER["rho"],
        momentum=PAPER["momentum"],
        epsilon=PAPER["epsilon"],
        global_clipnorm=PAPER["global_clipnorm"],
        weight_decay=PAPER["weight_decay"],
        use_ema=True,
        ema_momentum=min(PAPER["ema_momentum"], 1.0 - 10.0 / total_steps) if total_steps > 10
        else 0.0,
    )
    # As in the paper's codebase, no decay on biases and BatchNorm offsets.
    optimizer.exclude_from_weight_decay(var_names=["bias", "beta", "gamma"])
    return optimizer


def _metrics(num_classes: int) -> list:
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes >= 6:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    return metrics


def plan(config: TrainConfig, num_classes: int) -> tuple[keras.Model, list[Stage], str]:
    """The model, its stages and a one-line note on the weights used."""
    from keras_inception.models import get_builder

    weights = config.resolved_weights()
    size = config.image_size
    metrics = _metrics(num_classes)
    total = config.epochs

    if config.recipe == "paper":
        model = get_builder(config.model)(
            weights=weights, input_shape=(size, size, 3), classes=num_classes,
            dropout_rate=PAPER["dropout_rate"],
        )

        def paper_args(steps: int) -> dict:
            return {
                "optimizer": paper_optimizer(steps, total, config.learning_rate),
                "loss": keras.losses.CategoricalCrossentropy(
                    label_smoothing=PAPER["label_smoothing"]),
                "metrics": metrics,
            }

        note = f"from scratch{'' if weights is None else f' (initialized from {weights})'}"
        return model, [Stage("paper", 0, total, paper_args, _all_trainable)], note

    def adam(lr: float, decay_steps: int | None = None):
        def args(steps: int) -> dict:
            schedule = lr if decay_steps is None else keras.optimizers.schedules.CosineDecay(
                lr, decay_steps=max(1, decay_steps * steps), alpha=0.01)
            return {"optimizer": keras.optimizers.Adam(schedule),
                    "loss": keras.losses.CategoricalCrossentropy(), "metrics": metrics}
        return args

    if weights is None:
        # Nothing to transfer: the whole network learns, BatchNorm in training mode.
        model = get_builder(config.model)(
            weights=None, input_shape=(size, size, 3), classes=num_classes, dropout_rate=0.2)
        lr = config.learning_rate or BASE_LEARNING_RATE["transfer"]
        return model, [Stage("scratch", 0, total, adam(lr, total), _all_trainable)], \
            "from scratch (no pretrained weights)"

    model = build_transfer_model(config.model, num_classes, size, weights)
    first = config.stage1_epochs if config.stage1_epochs is not None else max(1, total // 2)
    first = min(first, total)
    lr = config.learning_rate or BASE_LEARNING_RATE["transfer"]
    stages = [Stage("head", 0, first, adam(lr), freeze_base)]
    if first < total:
        stages.append(Stage(
            "fine_tune", first, total, adam(lr / 10, total - first),
            lambda m: unfreeze_top(m, config.model),
        ))
    return model, stages, str(weights)


# --- callbacks ----------------------------------------------------------------------


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Writes through a temporary file in the same folder, then renames it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_history(path: str) -> list[dict[str, Any]]:
    """The rows of a `history.csv` (numbers as floats, `epoch` as int)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key == "epoch":
                row[key] = int(value)
            elif key != "stage":
                row[key] = float(value) if value not in ("", None) else float("nan")
    return rows


def _write_history(path: str, rows: list[dict[str, Any]]) -> None:
    keys = ["epoch", "stage"]
    for row in rows:
        keys += [k for k in row if k not in keys]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    _atomic_write(path, write)


class HistoryCSV(keras.callbacks.Callback):
    """Writes `history.csv` after each epoch, replacing rows of this epoch and later.

    Rewriting (instead of appending) makes a resumed run idempotent: an epoch that
    was logged but not backed up before a crash is run again and logged once.
    """

    def __init__(self, path: str, stage: str) -> None:
        super().__init__()
        self.path, self.stage = path, stage

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rows = [r for r in read_history(self.path) if r["epoch"] <= epoch]
        row = {"epoch": epoch + 1, "stage": self.stage}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row.setdefault("learning_rate", float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate)))
        _write_history(self.path, [*rows, row])


class BestModel(keras.callbacks.Callback):
    """Saves the model when `val_accuracy` improves (temporary file, then rename).

    The best value so far is read back from `history.csv`, so a resumed run only
    replaces `best.keras` with a better model.
    """

    def __init__(self, path: str, history_path: str, monitor: str = "val_accuracy") -> None:
        super().__init__()
        self.path, self.history_path, self.monitor = path, history_path, monitor
        self.best = -math.inf

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.best is None:
            # First epoch of this fit (after any restore): earlier epochs set the bar.
            values = [r.get(self.monitor, -math.inf) for r in read_history(self.history_path)
                      if r["epoch"] <= epoch]
            self.best = max(values) if values and os.path.isfile(self.path) else -math.inf

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            _atomic_write(self.path, self.model.save)


# --- training -----------------------------------------------------------------------


def stage_callbacks(model: keras.Model, stage: str, out: str, chief: bool = True) -> list:
    """The callbacks of one stage's `fit`, in the order they must run at each epoch end.

    History comes before the backup: a crash between the two re-runs (and rewrites)
    the epoch instead of losing its row. With an EMA optimizer, `SwapEMAWeights`
    comes first so that validation and `best.keras` use the averaged weights. Only the
    chief (`chief=True`) writes into `out`.
    """
    from keras_inception.distribute import backup_callbacks

    history_path = os.path.join(out, HISTORY_FILE)
    callbacks: list = []
    if getattr(model.optimizer, "use_ema", False):
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if chief:
        callbacks.append(HistoryCSV(history_path, stage))
        callbacks.append(BestModel(os.path.join(out, BEST_MODEL), history_path))
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(out, "logs"), write_graph=False, profile_batch=0))
    callbacks += backup_callbacks(os.path.join(out, "backup", stage), chief)
    return callbacks


@contextlib.contextmanager
def _precision_policy(name: str):
    previous = keras.config.dtype_policy()
    if name != "none":
        keras.config.set_dtype_policy(f"mixed_{name}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train(config: TrainConfig, strategy: Any = None) -> dict[str, Any]:
    """Runs the recipe of `config`, writes the outputs into `config.out`, returns the report.

    Args:
        config: the run's settings (see `TrainConfig`).
        strategy: overrides `config.strategy`: a name of `distribute.STRATEGIES`, a
            `tf.distribute.Strategy` or a `keras.distribution.Distribution`.
            `config.batch_size` is per replica.
    """
    from keras_inception import data as data_lib
    from keras_inception import distribute
    from keras_inception.weights import get_preset

    config.validate()
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    dist = distribute.resolve(config.strategy if strategy is None else strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    chief = dist.is_chief
    out = os.path.abspath(config.out)
    os.makedirs(out, exist_ok=True)
    replicas = dist.num_replicas
    global_batch = config.batch_size * replicas
    learning_rate = distribute.scaled_learning_rate(
        config.learning_rate or BASE_LEARNING_RATE[config.recipe], replicas,
        distribute.SCALING_RULES[config.recipe])
    if replicas > 1:
        config = dataclasses.replace(config, learning_rate=learning_rate)

    data = data_lib.load_data(config.data, data_dir=config.data_dir, download=config.download,
                              seed=config.seed, max_per_class=config.max_per_class)
    dist.check_even_split({"train": data.train_count, "val": data.val_count})
    weights = config.resolved_weights()
    crop_pct = config.crop_pct
    if crop_pct is None:
        crop_pct = get_preset(config.model, weights).crop_pct if (
            weights and not os.path.isfile(weights)) else 0.875
    pipe = dict(image_size=config.image_size, num_classes=data.num_classes,
                batch_size=global_batch, crop_pct=crop_pct, seed=config.seed)
    train_ds = data_lib.make_pipeline(data.train, training=True, **pipe)
    val_ds = data_lib.make_pipeline(data.val, training=False, **pipe)
    steps = math.ceil(data.train_count / global_batch)

    history_path = os.path.join(out, HISTORY_FILE)
    best_path = os.path.join(out, BEST_MODEL)
    backup_root = os.path.join(out, "backup")
    started = time.perf_counter()
    # Models, optimizers and metrics are created in the strategy's scope; `fit` runs
    # in `dist.fit_scope()` (outside a tf.distribute scope, as Keras documents it), so
    # that what only the chief does (saving) creates no variables in the strategy.
    with _precision_policy(config.mixed_precision):
        with dist.scope():
            model, stages, weights_note = plan(config, data.num_classes)
        if chief:
            _atomic_write(os.path.join(out, CLASS_NAMES_FILE),
                          lambda p: _write_json(p, data.class_names))
        print(f"{config.recipe} recipe, {config.model} at {config.image_size}px, weights: "
              f"{weights_note}; {data.train_count} train / {data.val_count} val images, "
              f"{data.num_classes} classes; stages: "
              + ", ".join(f"{s.name} (epochs {s.start + 1}-{s.end})" for s in stages)
              + ("" if replicas == 1 else f"; {dist.name} over {replicas} replicas, global "
                 f"batch {global_batch}, learning rate {learning_rate:g}"))
        for stage in stages:
            done = os.path.join(backup_root, f"{stage.name}.done.weights.h5")
            dist.check_same_state(
                f"resume points of stage {stage.name}",
                distribute.resume_point(done, os.path.join(backup_root, stage.name)))
            stage.prepare(model)
            if os.path.isfile(done):
                # Finished before a restart: its end state is all the next stage needs.
                model.load_weights(done)
                print(f"stage {stage.name}: already finished, resuming after it")
                continue
            with dist.scope():
                model.compile(jit_compile="auto" if config.jit is None else config.jit,
                              **stage.compile_args(steps))
            callbacks = stage_callbacks(model, stage.name, out, chief)
            # Keras keeps the epoch BackupAndRestore restored on the model; clear it
            # so that a later stage starts at its own first epoch.
            model._initial_epoch = None
            with dist.fit_scope():
                model.fit(train_ds, validation_data=val_ds, initial_epoch=stage.start,
                          epochs=stage.end, callbacks=callbacks, verbose=config.verbose,
                          shuffle=False)
            if chief:
                _atomic_write(done, model.save_weights)
    train_seconds = time.perf_counter() - started
    if not chief:
        return {}
    best = keras.saving.load_model(best_path)
    report = evaluate_model(best, val_ds, data.class_names)
    report.update({
        "model": config.model, "recipe": config.recipe, "data": data.source,
        "image_size": config.image_size, "crop_pct": crop_pct, "weights": weights_note,
        "epochs": config.epochs, "batch_size": global_batch,
        "strategy": dist.name, "replicas": replicas, "learning_rate": learning_rate,
        "mixed_precision": config.mixed_precision,
        "best_epoch": _best_epoch(read_history(history_path)),
        "train_images": data.train_count, "val_images": data.val_count,
        "skipped_files": data.skipped, "train_seconds": round(train_seconds, 1),
        "model_file": BEST_MODEL,
    })
    write_outputs(out, report, read_history(history_path))
    shutil.rmtree(backup_root, ignore_errors=True)
    print(summary(report))
    return report


def _best_epoch(rows: list[dict]) -> int | None:
    scored = [r for r in rows if not math.isnan(r.get("val_accuracy", float("nan")))]
    return max(scored, key=lambda r: r["val_accuracy"])["epoch"] if scored else None


def _write_json(path: str, value: Any) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


# --- evaluation and outputs -------------------------------------------------------------


def evaluate_model(model: keras.Model, dataset, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, top-5 (with >= 6 classes), per-class accuracy and confusion matrix."""
    probs, labels = [], []
    for x, y in dataset:
        probs.append(np.asarray(model(x, training=False), np.float32))
        labels.append(np.argmax(np.asarray(y), axis=-1))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    n = len(class_names)
    if probs.shape[-1] != n:
        raise ValueError(
            f"The model has {probs.shape[-1]} outputs but the data has {n} classes "
            f"({', '.join(class_names[:10])}{', ...' if n > 10 else ''})."
        )
    preds = probs.argmax(-1)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, preds), 1)
    support = confusion.sum(1)
    report = {
        "accuracy": float((preds == labels).mean()),
        "num_images": int(len(labels)),
        "class_names": list(class_names),
        "per_class_accuracy": {
            name: (float(confusion[i, i] / support[i]) if support[i] else None)
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
    }
    if n >= 6:
        top5 = np.argsort(probs, axis=-1)[:, -5:]
        report["top5_accuracy"] = float(np.mean([l in t for l, t in zip(labels, top5, strict=True)]))
    return report


def write_outputs(out: str, report: dict[str, Any], history: list[dict]) -> None:
    """report.json, curves.png and confusion.png (each written atomically)."""
    # No matplotlib.use("Agg") here: it would switch a notebook's inline backend off.
    # Without a display matplotlib picks Agg by itself.
    from matplotlib import pyplot as plt

    _atomic_write(os.path.join(out, REPORT_FILE), lambda p: _write_json(p, report))

    fig = plot_curves(history)
    _atomic_write(os.path.join(out, "curves.png"), lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    fig = plot_confusion(np.asarray(report["confusion_matrix"]), report["class_names"])
    _atomic_write(os.path.join(out, "confusion.png"),
                  lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def plot_curves(history: list[dict]):
    """Loss and accuracy per epoch (train and validation), stage changes marked."""
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [r["epoch"] for r in history]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            key = prefix + metric
            if history and key in history[0]:
                ax.plot(epochs, [r[key] for r in history], style, label=key, markersize=3)
        for prev, row in zip(history[:-1], history[1:], strict=True):
            if row["stage"] != prev["stage"]:
                ax.axvline(prev["epoch"] + 0.5, color="gray", linestyle=":",
                           label=f"start of {row['stage']}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(confusion: np.ndarray, class_names: list[str]):
    """The confusion matrix (rows: true class, columns: predicted class)."""
    from matplotlib import pyplot as plt

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    how = f" ({report['recipe']}, weights: {report['weights']})" if "recipe" in report else ""
    lines = [
        f"{report['model']}{how} on "
        f"{report['data']} at {report['image_size']}px: validation accuracy "
        f"{report['accuracy']:.1%} on {report['num_images']} images"
        + (f", top-5 {report['top5_accuracy']:.1%}" if "top5_accuracy" in report else "")
        + (f" (best epoch {report['best_epoch']}, {report['train_seconds']:.0f} s)"
           if "best_epoch" in report else ""),
    ]
    for name, acc in report["per_class_accuracy"].items():
        lines.append(f"  {name:<20s} {'n/a' if acc is None else f'{acc:.1%}'}")
    return "\n".join(lines)


def read_class_names(model_path: str) -> list[str] | None:
    """The class names saved next to a trained `.keras` model, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return list(json.load(f))


def evaluate(model_path: str, data: str, *, data_dir: str | None = None, batch_size: int = 32,
             crop_pct: float | None = None, split: str = "val",
             max_per_class: int | None = None) -> dict[str, Any]:
    """Evaluates a saved `.keras` classifier on the `split` ("val" or "train") of `data`.

    `crop_pct` defaults to the one in the `report.json` of the training run, else 0.875.
    """
    import keras_inception  # noqa: F401  (registers the custom layers)
    from keras_inception import data as data_lib

    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"Model file not found: {model_path!r}.")
    if split not in ("train", "val"):
        raise ValueError(f"`split` must be 'train' or 'val'; received split={split!r}.")
    model = keras.saving.load_model(model_path)
    if crop_pct is None:
        report_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), REPORT_FILE)
        crop_pct = 0.875
        if os.path.isfile(report_path):
            with open(report_path) as f:
                crop_pct = float(json.load(f).get("crop_pct", crop_pct))
    images = data_lib.load_data(data, data_dir=data_dir, max_per_class=max_per_class)
    names = read_class_names(model_path)
    if names is not None and names != images.class_names:
        raise ValueError(
            f"The classes of {data!r} ({images.class_names}) differ from those the model was "
            f"trained on ({names})."
        )
    ds = data_lib.make_pipeline(
        images.train if split == "train" else images.val, image_size=int(model.input_shape[1]),
        num_classes=images.num_classes, batch_size=batch_size, training=False,
        crop_pct=crop_pct, cache=False,
    )
    report = evaluate_model(model, ds, images.class_names)
    report.update({"model": os.path.basename(model_path), "data": images.source,
                   "image_size": int(model.input_shape[1]), "crop_pct": crop_pct})
    return report
