"""`train`: resolve the weights, validate, plan the stages, run each, evaluate, report.

A run is a list of stages (`keras_inception.train.stages`): each owns its input source
(images, cached features or cached activations), its trainable model, its compile
settings and callbacks, and resumes from its own backup.

Several devices or machines (`config.strategy` or the `strategy` argument, see
`keras_inception.train.distribute`): the model, optimizer and metrics are created in
the strategy's scope, `batch_size` is per replica, the learning rate is scaled by the
recipe's rule for the number of replicas, and only the chief writes files (every
worker resumes from the chief's backup, see `keras_inception.train.resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import time
from typing import Any

import keras

from keras_inception.presets.fetch import file_hash
from keras_inception.saving import load_model, load_weights
from keras_inception.train import feature_cache, ladder, run_folder
from keras_inception.train.callbacks import read_history
from keras_inception.train.config import (
    BACKUP_DIR,
    BEST_MODEL,
    HISTORY_FILE,
    RUN_FILE,
    TrainConfig,
    evaluation_crop_pct,
)
from keras_inception.train.evaluation import evaluate_model
from keras_inception.train.recipes import BASE_LEARNING_RATE, Phase, RecipePlan, plan_stages
from keras_inception.train.report import split_label, summary, write_outputs
from keras_inception.train.stages import CachedBase, RunContext, plan_run_stages, run_stage

# The report's entry on each transfer stage's inputs (cached or not, passes, seconds).
REPORT_ENTRIES = {Phase.HEAD: "stage1", Phase.FINE_TUNE: "stage2"}


@contextlib.contextmanager
def _precision_policy(name: str):
    previous = keras.config.dtype_policy()
    if name != "none":
        keras.config.set_dtype_policy(f"mixed_{name}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _best_epoch(rows: list[dict]) -> int | None:
    scored = [r for r in rows if not math.isnan(r.get("val_accuracy", float("nan")))]
    return max(scored, key=lambda r: r["val_accuracy"])["epoch"] if scored else None


def _crop_pct(config: TrainConfig) -> float:
    """The evaluation crop: the config's, else the pretrained preset's, else the default."""
    return evaluation_crop_pct(config.model, config.resolved_weights(), config.crop_pct)


def train(config: TrainConfig, strategy: Any = None) -> dict[str, Any]:
    """Runs the recipe of `config`, writes the outputs into `config.out`, returns the report.

    Outputs (see `keras_inception.train`): `best.keras` (carrying its input size, crop
    and class names: `keras_inception.metadata`), `history.csv`, `logs/`, `report.json`,
    `curves.png`, `confusion.png`. A run
    started again with the same `out` resumes after its last finished epoch.

    Args:
        config: the run's settings (see `TrainConfig`).
        strategy: overrides `config.strategy`: a name of `STRATEGIES`, a
            `tf.distribute.Strategy` or a `keras.distribution.Distribution`.
            `config.batch_size` is per replica.

    Returns:
        The report (also in `report.json`); an empty dict on workers other than the chief.
    """
    from keras_inception.train import distribute

    config, ladder_record = ladder.resolve_with_record(config)
    config.validate()
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    dist = distribute.resolve(config.strategy if strategy is None else strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    chief = dist.is_chief
    out = _output_folder(config.out)
    with run_folder.locked(out) if chief else contextlib.nullcontext():
        finished = run_folder.check(out, config, overwrite=config.overwrite, chief=chief)
        if finished is not None:
            print(f"{out} holds this run, already finished ({split_label(finished)} accuracy "
                  f"{finished['accuracy']:.1%}); its results are there (report.json, "
                  f"{BEST_MODEL}). Nothing was changed; pass --overwrite to train again.")
            return finished if chief else {}
        report = _run(config, dist, out, ladder_record)
        if chief:
            run_folder.record_finish(out)
        return report


def _output_folder(out: str) -> str:
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {out!r} is a file; --out must be a folder (created if missing).")
    os.makedirs(path, exist_ok=True)
    return path


def _weights_note(note: str) -> str:
    """How the report names the weights: a file by its name and hash (a temporary file's
    path would point at nothing later)."""
    if not os.path.isfile(note):
        return note
    return f"file {os.path.basename(note)} (sha256 {file_hash(note, 'sha256')[:16]})"


def _context(config: TrainConfig, dist: Any, out: str) -> RunContext:
    """The data, its pipelines at the run's batch (capped at the training images on one
    replica: a larger batch is one batch of every image) and the cache views."""
    from keras_inception.train import data as data_lib

    data = data_lib.load_data(config.data, data_dir=config.data_dir, download=config.download,
                              seed=config.seed, max_per_class=config.max_per_class)
    dist.check_even_split({"train": data.train_count, "val": data.val_count})
    batch = config.batch_size * dist.num_replicas
    if dist.num_replicas == 1 and batch > data.train_count:
        print(f"--batch-size {batch} is more than the {data.train_count} training images: "
              f"using batches of {data.train_count}")
        batch = data.train_count
    pipe = dict(image_size=config.input_size(), num_classes=data.num_classes, batch_size=batch,
                crop_pct=_crop_pct(config), seed=config.seed)
    views = feature_cache.DEFAULT_VIEWS if config.feature_views is None else config.feature_views
    return RunContext(
        config, dist, out, data, pipe,
        train_ds=data_lib.make_pipeline(data.train, training=True, augment=config.augment,
                                        **pipe),
        val_ds=data_lib.make_pipeline(data.val, training=False, **pipe), views=views)


def _start_line(ctx: RunContext, plan: RecipePlan, weights_note: str) -> str:
    config, data, dist = ctx.config, ctx.data, ctx.dist
    line = (f"{config.recipe} recipe, {config.model} at {config.input_size()}px, weights: "
            f"{weights_note}; {data.train_count} train / {data.val_count} val images, "
            f"{data.num_classes} classes; stages: "
            + ", ".join(f"{s.name} (epochs {s.start + 1}-{s.end})" for s in plan.stages))
    if dist.num_replicas > 1:
        line += (f"; {dist.name} over {dist.num_replicas} replicas, global batch "
                 f"{ctx.batch_size}, learning rate {config.learning_rate:g}")
    return line


def _record_start(out: str, config: TrainConfig) -> None:
    """The run starts: `run.json` (unless resumed) records `config` as given. Nothing is
    written before, so a run refused earlier (no data, no weights) leaves no trace."""
    if not os.path.isfile(os.path.join(out, RUN_FILE)):
        run_folder.record_start(out, config)


def _described(plan: RecipePlan, ctx: RunContext) -> RecipePlan:
    """The plan whose model carries the run's meaning (`keras_inception.metadata`): its
    input size, evaluation crop and class names travel inside `best.keras`, so a copy of
    it anywhere, and its exports, answer as the run does."""
    from keras_inception.metadata import ModelMetadata, describe

    size = ctx.pipe["image_size"]
    metadata = ModelMetadata(
        kind="classifier", image_size=(size, size), crop_pct=ctx.pipe["crop_pct"],
        interpolation="bicubic", input_scaling="inception",
        class_names=tuple(ctx.data.class_names), model=ctx.config.model)
    return dataclasses.replace(plan, model=describe(plan.model, metadata))


def _run(config: TrainConfig, dist: Any, out: str,
         ladder_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's stages, then its evaluation and outputs; `ladder_record`: what the weights
    ladder chose (`weights="auto"`), kept in the report as `weights_ladder`."""
    from keras_inception.train import distribute

    learning_rate = distribute.scaled_learning_rate(
        config.learning_rate or BASE_LEARNING_RATE[config.recipe], dist.num_replicas,
        distribute.SCALING_RULES[config.recipe])
    requested = config
    if dist.num_replicas > 1:
        config = dataclasses.replace(config, learning_rate=learning_rate)
    ctx = _context(config, dist, out)
    started = time.perf_counter()
    # Models, optimizers and metrics are created in the strategy's scope; `fit` runs
    # in `dist.fit_scope()` (outside a tf.distribute scope, as Keras documents it), so
    # that what only the chief does (saving) creates no variables in the strategy.
    with _precision_policy(config.mixed_precision):
        with dist.scope():
            plan = _described(plan_stages(config, ctx.data.num_classes), ctx)
        stages, cached = plan_run_stages(ctx, plan)
        weights_note = _weights_note(plan.weights_note)
        if dist.is_chief:
            _record_start(out, requested)
        print(_start_line(ctx, plan, weights_note))
        for stage in stages:
            run_stage(stage, ctx, plan.model)
    if not dist.is_chief:
        return {}
    report = _evaluate(ctx, plan, cached)
    report.update(_run_facts(ctx, weights_note, learning_rate, time.perf_counter() - started))
    if ladder_record is not None:
        report["weights_ladder"] = ladder_record
    for stage in stages:
        if stage.record is not None:
            report[REPORT_ENTRIES[stage.kind.phase]] = stage.record
    write_outputs(out, report, read_history(os.path.join(out, HISTORY_FILE)))
    shutil.rmtree(os.path.join(out, BACKUP_DIR), ignore_errors=True)
    print(summary(report))
    return report


def _evaluate(ctx: RunContext, plan: RecipePlan, cached: CachedBase | None) -> dict[str, Any]:
    """The best epoch's model on the validation images. One replica: the model in memory
    takes the best weights (from memory when this process wrote best.keras) and, where the
    frozen part's outputs are cached and still valid, evaluates on them."""
    best_path = os.path.join(ctx.out, BEST_MODEL)
    if ctx.dist.num_replicas > 1:
        return evaluate_model(load_model(best_path), ctx.val_ds, ctx.data.class_names)
    model = plan.model
    if ctx.best.weights is not None:
        model.set_weights(ctx.best.weights)
    else:
        load_weights(model, best_path)
    eval_model, eval_ds = model, ctx.val_ds
    if cached is not None and cached.inputs is not None:
        # Fine-tuning changes the pooled features: then only the activations below the
        # fine-tuned blocks stay valid.
        fine_tuned = any(s.phase is Phase.FINE_TUNE for s in plan.stages)
        if cached.split is not None or not fine_tuned:
            inputs = "activations" if cached.split is not None else "features"
            eval_model, eval_ds = cached.model(inputs), cached.datasets(inputs)[1]
    return evaluate_model(eval_model, eval_ds, ctx.data.class_names)


def _run_facts(ctx: RunContext, weights_note: str, learning_rate: float,
               seconds: float) -> dict[str, Any]:
    config, data = ctx.config, ctx.data
    return {
        "model": config.model, "recipe": config.recipe, "data": data.source,
        "image_size": config.input_size(), "crop_pct": ctx.pipe["crop_pct"],
        "weights": weights_note, "epochs": config.epochs, "batch_size": ctx.batch_size,
        "strategy": ctx.dist.name, "replicas": ctx.dist.num_replicas,
        "learning_rate": learning_rate, "mixed_precision": config.mixed_precision,
        "best_epoch": _best_epoch(read_history(os.path.join(ctx.out, HISTORY_FILE))),
        "train_images": data.train_count, "val_images": data.val_count,
        "skipped_files": data.skipped, "train_seconds": round(seconds, 1),
        "model_file": BEST_MODEL, "augment": config.augment,
    }


__all__ = ["train"]
