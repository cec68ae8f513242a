"""`train`: data, model, the recipe's stages with `model.fit`, then the report.

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

from keras_inception import files
from keras_inception.preprocessing import DEFAULT_CROP_PCT
from keras_inception.presets.fetch import file_hash
from keras_inception.saving import load_model
from keras_inception.train import compile_notice, feature_cache, ladder, resume, run_folder
from keras_inception.train.callbacks import read_history, stage_callbacks
from keras_inception.train.config import (
    BACKUP_DIR,
    BEST_MODEL,
    CLASS_NAMES_FILE,
    HISTORY_FILE,
    RUN_FILE,
    TrainConfig,
)
from keras_inception.train.evaluation import evaluate_model
from keras_inception.train.recipes import BASE_LEARNING_RATE, base_of, plan
from keras_inception.train.report import split_label, summary, write_outputs


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
    if config.crop_pct is not None:
        return config.crop_pct
    weights = config.resolved_weights()
    if weights and not os.path.isfile(weights):
        from keras_inception.presets import get_preset

        return get_preset(config.model, weights).crop_pct
    return DEFAULT_CROP_PCT


def train(config: TrainConfig, strategy: Any = None) -> dict[str, Any]:
    """Runs the recipe of `config`, writes the outputs into `config.out`, returns the report.

    Outputs (see `keras_inception.train`): `best.keras`, `class_names.json`,
    `history.csv`, `logs/`, `report.json`, `curves.png`, `confusion.png`. A run
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

    config = ladder.resolve(config)
    config.validate()
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    dist = distribute.resolve(config.strategy if strategy is None else strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    chief = dist.is_chief
    out = os.path.abspath(config.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {config.out!r} is a file; --out must be a folder (created if missing).")
    os.makedirs(out, exist_ok=True)
    with run_folder.locked(out) if chief else contextlib.nullcontext():
        finished = run_folder.check(out, config, overwrite=config.overwrite, chief=chief)
        if finished is not None:
            print(f"{out} holds this run, already finished ({split_label(finished)} accuracy "
                  f"{finished['accuracy']:.1%}); its results are there (report.json, "
                  f"{BEST_MODEL}). Nothing was changed; pass --overwrite to train again.")
            return finished if chief else {}
        if chief and not os.path.isfile(os.path.join(out, RUN_FILE)):
            run_folder.record_start(out, config)
        report = _run(config, dist, out)
        if chief:
            run_folder.record_finish(out)
        return report


def _weights_note(note: str) -> str:
    """How the report names the weights: a file by its name and hash (a temporary file's
    path would point at nothing later)."""
    if not os.path.isfile(note):
        return note
    return f"file {os.path.basename(note)} (sha256 {file_hash(note, 'sha256')[:16]})"


def _run(config: TrainConfig, dist: Any, out: str) -> dict[str, Any]:
    from keras_inception.train import data as data_lib
    from keras_inception.train import distribute

    chief = dist.is_chief
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
    crop_pct = _crop_pct(config)
    pipe = dict(image_size=config.input_size(), num_classes=data.num_classes,
                batch_size=global_batch, crop_pct=crop_pct, seed=config.seed)
    train_ds = data_lib.make_pipeline(data.train, training=True, augment=config.augment, **pipe)
    val_ds = data_lib.make_pipeline(data.val, training=False, **pipe)
    steps = math.ceil(data.train_count / global_batch)
    views = feature_cache.DEFAULT_VIEWS if config.feature_views is None else config.feature_views
    # One device: the head stage trains on cached features (a replicated fit would need
    # the cache sharded the way the images are).
    cached_head = views > 0 and replicas == 1
    stage1 = {"features": "cached" if cached_head else "computed every epoch",
              "views": views if cached_head else 0}

    history_path = os.path.join(out, HISTORY_FILE)
    backup_root = os.path.join(out, BACKUP_DIR)
    started = time.perf_counter()
    # Models, optimizers and metrics are created in the strategy's scope; `fit` runs
    # in `dist.fit_scope()` (outside a tf.distribute scope, as Keras documents it), so
    # that what only the chief does (saving) creates no variables in the strategy.
    with _precision_policy(config.mixed_precision):
        with dist.scope():
            model, stages, weights_note = plan(config, data.num_classes)
        weights_note = _weights_note(weights_note)
        if chief:
            files.write_json_atomic(os.path.join(out, CLASS_NAMES_FILE), data.class_names)
        print(f"{config.recipe} recipe, {config.model} at {config.input_size()}px, weights: "
              f"{weights_note}; {data.train_count} train / {data.val_count} val images, "
              f"{data.num_classes} classes; stages: "
              + ", ".join(f"{s.name} (epochs {s.start + 1}-{s.end})" for s in stages)
              + ("" if replicas == 1 else f"; {dist.name} over {replicas} replicas, global "
                 f"batch {global_batch}, learning rate {learning_rate:g}"))
        for stage in stages:
            done = resume.done_path(backup_root, stage.name)
            stage_dir = os.path.join(backup_root, stage.name)
            point = resume.resume_point(done, stage_dir)
            dist.check_same_state(f"resume points of stage {stage.name}", point)
            stage.prepare(model)
            if point < 0:
                # Finished before a restart: its end state is all the next stage needs.
                model.load_weights(done)
                print(f"stage {stage.name}: already finished, resuming after it")
                continue
            progress = resume.read_progress(stage_dir) if point > 0 else None
            stage_started = time.perf_counter()
            fit_model, fit_train, fit_val, extra = model, train_ds, val_ds, []
            if stage.name == "head" and cached_head:
                cache = feature_cache.FeatureCache(
                    out, feature_cache.cache_key(config, data, crop_pct, views))
                train_views = [
                    data_lib.make_pipeline(data.train, training=True, augment=views > 1,
                                           shuffle=False, cache=False,
                                           **{**pipe, "seed": (config.seed or 0) + k})
                    for k in range(views)]
                features = cache.load_or_compute(base_of(model), train_views, val_ds)
                fit_model = feature_cache.head_of(model, features["train"].shape[-1])
                fit_train, fit_val, extra = feature_cache.feature_datasets(
                    features, batch_size=global_batch, seed=config.seed)
                stage1.update(backbone_passes=cache.backbone_passes,
                              cache=os.path.relpath(cache.path, out))
                print(f"stage {stage.name}: training the head on cached backbone features "
                      f"({views} view{'s' if views > 1 else ''} per image, "
                      f"{cache.backbone_passes} backbone pass(es) now; {stage1['cache']})")
            elif stage.name == "head":
                print(f"stage {stage.name}: backbone features computed every epoch "
                      + ("(feature cache off)" if views == 0 else f"({replicas} replicas)"))
            with dist.scope():
                fit_model.compile(jit_compile=compile_notice.resolve_jit(config.jit),
                                  **stage.compile_args(steps))
            # Says what the first step (trace / compile) will cost, then what it took.
            callbacks = stage_callbacks(fit_model, stage.name, out, chief, restore=progress,
                                        saved_model=model) + extra + compile_notice.for_stage(
                config, stage.name, fit_model is not model, out, global_batch, chief)
            initial_epoch = stage.start if progress is None else progress.initial_epoch
            with dist.fit_scope():
                fit_model.fit(fit_train, validation_data=fit_val, initial_epoch=initial_epoch,
                              epochs=stage.end, callbacks=callbacks, verbose=config.verbose,
                              shuffle=False)
            if stage.name == "head":
                # Features (or not) and every head epoch, best.keras included.
                stage1["seconds"] = round(time.perf_counter() - stage_started, 1)
            if chief:
                files.write_atomic(done, model.save_weights)
                shutil.rmtree(stage_dir, ignore_errors=True)
    train_seconds = time.perf_counter() - started
    if not chief:
        return {}
    best = load_model(os.path.join(out, BEST_MODEL))
    report = evaluate_model(best, val_ds, data.class_names)
    history = read_history(history_path)
    report.update({
        "model": config.model, "recipe": config.recipe, "data": data.source,
        "image_size": config.input_size(), "crop_pct": crop_pct, "weights": weights_note,
        "epochs": config.epochs, "batch_size": global_batch,
        "strategy": dist.name, "replicas": replicas, "learning_rate": learning_rate,
        "mixed_precision": config.mixed_precision,
        "best_epoch": _best_epoch(history),
        "train_images": data.train_count, "val_images": data.val_count,
        "skipped_files": data.skipped, "train_seconds": round(train_seconds, 1),
        "model_file": BEST_MODEL, "augment": config.augment,
    })
    if any(stage.name == "head" for stage in stages):
        report["stage1"] = stage1
    write_outputs(out, report, history)
    shutil.rmtree(backup_root, ignore_errors=True)
    print(summary(report))
    return report


__all__ = ["train"]
