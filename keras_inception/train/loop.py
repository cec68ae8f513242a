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
from keras_inception.saving import load_model, load_weights
from keras_inception.train import compile_notice, feature_cache, ladder, resume, run_folder
from keras_inception.train.callbacks import BestInMemory, read_history, stage_callbacks
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


def _views_note(views: int) -> str:
    if views == 1:
        return "1 view per image: the evaluation crop"
    return f"{views} augmented views per image"


def _fine_tune_plan(config: TrainConfig, model: keras.Model, data: Any, views: int,
                    cached: bool) -> tuple[feature_cache.BaseSplit | None, dict[str, Any]]:
    """Whether stage 2 trains on cached activations below its unfrozen blocks: the split
    (None: the backbone runs every epoch) and the report's `stage2` entry."""
    reason = None
    split = None
    if not cached:
        reason = "feature cache off" if views == 0 else "several replicas"
    elif not config.fine_tune_cache:
        reason = "fine_tune_cache off" + (": augmented images every epoch" if config.augment
                                          else "")
    else:
        split = feature_cache.split_base(model, config.model)
        if split is None:
            reason = f"{config.model} has no single cut below its fine-tuned blocks"
        else:
            need = split.bytes_for(data.train_count * views + data.val_count)
            budget = feature_cache.activation_budget()
            if need > budget:
                reason = (f"its activations would take {need / 2**30:.1f} GiB, more than "
                          f"{budget / 2**30:.1f} GiB ({feature_cache.ACTIVATION_MEMORY_SHARE:.0%}"
                          " of this machine's memory)")
                split = None
    if split is None:
        return None, {"activations": "computed every epoch", "views": 0, "reason": reason}
    return split, {"activations": "cached", "views": views, "from_layer": split.at,
                   "activation_shape": list(split.cut_shape)}


class _FrozenPart:
    """The cached outputs of the base's frozen part (`feature_cache`), computed or
    loaded once, when the first stage that trains on them starts, and the models that
    train on them (sharing the transfer model's layers)."""

    def __init__(self, config: TrainConfig, data: Any, crop_pct: float, views: int,
                 pipe: dict[str, Any], out: str, model: keras.Model, val_ds: Any,
                 split: feature_cache.BaseSplit | None, base_changes: bool) -> None:
        self.config, self.data, self.crop_pct, self.views = config, data, crop_pct, views
        # Fine-tuning changes the pooled features: then only the activations below the
        # fine-tuned blocks stay valid for evaluation.
        self.base_changes = base_changes
        self.pipe, self.out, self.model, self.val_ds, self.split = pipe, out, model, val_ds, split
        self.cache: feature_cache.FeatureCache | None = None
        self.inputs: feature_cache.CachedInputs | None = None
        self.models: dict[str, keras.Model] = {}

    def _load(self) -> feature_cache.CachedInputs:
        if self.inputs is None:
            from keras_inception.train import data as data_lib

            config, split = self.config, self.split
            self.cache = feature_cache.FeatureCache(self.out, feature_cache.cache_key(
                config, self.data, self.crop_pct, self.views,
                cut=None if split is None else split.at))
            train_views = [
                data_lib.make_pipeline(self.data.train, training=True, augment=self.views > 1,
                                       shuffle=False, cache=False,
                                       **{**self.pipe, "seed": (config.seed or 0) + k})
                for k in range(self.views)]
            arrays = self.cache.load_or_compute(base_of(self.model), train_views, self.val_ds,
                                                split)
            self.inputs = feature_cache.CachedInputs(
                arrays, batch_size=self.pipe["batch_size"], seed=config.seed)
        return self.inputs

    def _model(self, kind: str) -> keras.Model:
        if kind not in self.models:
            self.models[kind] = (
                feature_cache.top_of(self.model, self.split) if kind == "cut"
                else feature_cache.head_of(self.model, self._load().arrays["train"].shape[-1]))
        return self.models[kind]

    def fit_inputs(self, stage: str) -> tuple[keras.Model, tuple]:
        """The model and (train, val, callbacks) of `fit` for stage "head" or "fine_tune"."""
        kind = "cut" if stage == "fine_tune" else ""
        inputs = self._load()
        return self._model(kind), inputs.datasets(kind)

    def evaluation_inputs(self, model: keras.Model, val_ds: Any) -> tuple[keras.Model, Any]:
        """What evaluates `model` on the val images: the top blocks and head on the cached
        activations, the head on the cached features, else `model` on the images."""
        if self.inputs is None or (self.base_changes and self.split is None):
            return model, val_ds
        kind = "cut" if self.split is not None else ""
        return self._model(kind), self.inputs.datasets(kind)[1]


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
    # One device: the frozen part of the base runs once (a replicated fit would need
    # the cache sharded the way the images are).
    cached = views > 0 and replicas == 1
    stage1 = {"features": "cached" if cached else "computed every epoch",
              "views": views if cached else 0}

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
        split, stage2 = None, None
        if any(stage.name == "fine_tune" for stage in stages):
            split, stage2 = _fine_tune_plan(config, model, data, views, cached)
        best = BestInMemory()
        frozen = _FrozenPart(config, data, crop_pct, views, pipe, out, model, val_ds, split,
                             base_changes=stage2 is not None)
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
            on_cache = (stage.name == "head" and cached) or (
                stage.name == "fine_tune" and split is not None)
            if on_cache:
                fit_model, (fit_train, fit_val, extra) = frozen.fit_inputs(stage.name)
                record = stage1 if stage.name == "head" else stage2
                record.update(backbone_passes=frozen.cache.backbone_passes,
                              cache=os.path.relpath(frozen.cache.path, out))
                print(f"stage {stage.name}: " + (
                    "training the head on cached backbone features" if stage.name == "head"
                    else f"fine-tuning the top blocks (from {split.at}) and the head on "
                         "cached activations below them")
                      + f" ({_views_note(views)}, {frozen.cache.backbone_passes} backbone "
                        f"pass(es) now; {record['cache']})")
            elif stage.name == "head":
                print(f"stage {stage.name}: backbone features computed every epoch "
                      + ("(feature cache off)" if views == 0 else f"({replicas} replicas)"))
            elif stage.name == "fine_tune":
                print(f"stage {stage.name}: the backbone runs every epoch "
                      f"({stage2['reason']})")
            with dist.scope():
                fit_model.compile(jit_compile=compile_notice.resolve_jit(config.jit),
                                  **stage.compile_args(steps))
            # Says what the first step (trace / compile) will cost, then what it took.
            notice_stage = {"head": "head_cached", "fine_tune": "fine_tune_cached"}.get(
                stage.name, stage.name) if on_cache else stage.name
            callbacks = stage_callbacks(fit_model, stage.name, out, chief, restore=progress,
                                        saved_model=model, best_in_memory=best)
            callbacks += extra + compile_notice.for_stage(config, notice_stage, out,
                                                          global_batch, chief)
            initial_epoch = stage.start if progress is None else progress.initial_epoch
            with dist.fit_scope():
                fit_model.fit(fit_train, validation_data=fit_val, initial_epoch=initial_epoch,
                              epochs=stage.end, callbacks=callbacks, verbose=config.verbose,
                              shuffle=False)
            record = {"head": stage1, "fine_tune": stage2}.get(stage.name)
            if record is not None:
                # Cached arrays (or not), every epoch of the stage, best.keras included.
                record["seconds"] = round(time.perf_counter() - stage_started, 1)
            if chief:
                files.write_atomic(done, model.save_weights)
                shutil.rmtree(stage_dir, ignore_errors=True)
    train_seconds = time.perf_counter() - started
    if not chief:
        return {}
    best_path = os.path.join(out, BEST_MODEL)
    if replicas == 1:
        # The model in memory takes the best epoch's weights (no second model is built;
        # from memory when this process wrote best.keras) and, where the frozen part's
        # outputs are cached, evaluates on them.
        if best.weights is not None:
            model.set_weights(best.weights)
        else:
            load_weights(model, best_path)
        eval_model, eval_ds = frozen.evaluation_inputs(model, val_ds)
        report = evaluate_model(eval_model, eval_ds, data.class_names)
    else:
        report = evaluate_model(load_model(best_path), val_ds, data.class_names)
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
    if stage2 is not None:
        report["stage2"] = stage2
    write_outputs(out, report, history)
    shutil.rmtree(backup_root, ignore_errors=True)
    print(summary(report))
    return report


__all__ = ["train"]
