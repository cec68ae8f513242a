"""A training run as a list of stages, each one `fit` call that owns what it trains on.

`plan_run_stages` turns the recipe's stages (`recipes.plan_stages`: epochs, trainable
set, optimizer) into `TrainingStage`s of a `StageKind`: the recipe's phase and the
input the stage trains on:

* `HEAD_ON_IMAGES`, `FINE_TUNE_ON_IMAGES`, `SCRATCH`, `PAPER`: the model on the image
  pipeline (`ImageSource`);
* `HEAD_ON_FEATURES`: the head on the cached pooled features of the frozen base;
* `FINE_TUNE_ON_ACTIVATIONS`: the top blocks and the head on the cached activations
  below them (`CachedSource`, sharing one `CachedBase` and its `feature_cache` file).

Each stage owns its input source and trainable model (`source.fit_inputs()`), its
compile settings (`recipe.compile_args`) and its callbacks (`callbacks.stage_callbacks`,
the source's own, the compile notice); `run_stage` runs one, resuming from its backup
(`resume`) or skipping it when a previous process finished it.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import shutil
import time
from typing import Any, Protocol

import keras

from keras_inception import _compat, files
from keras_inception.train import callbacks as callbacks_lib
from keras_inception.train import compile_notice, feature_cache, resume
from keras_inception.train.config import BACKUP_DIR, TrainConfig
from keras_inception.train.recipes import Phase, RecipePlan, Stage


class StageKind(enum.Enum):
    """What a stage trains (its recipe phase) and on what input."""

    HEAD_ON_IMAGES = (Phase.HEAD, "images")
    HEAD_ON_FEATURES = (Phase.HEAD, "features")
    FINE_TUNE_ON_IMAGES = (Phase.FINE_TUNE, "images")
    FINE_TUNE_ON_ACTIVATIONS = (Phase.FINE_TUNE, "activations")
    SCRATCH = (Phase.SCRATCH, "images")
    PAPER = (Phase.PAPER, "images")

    @property
    def phase(self) -> Phase:
        return self.value[0]

    @property
    def inputs(self) -> str:
        """"images", "features" (pooled, cached) or "activations" (at the cut, cached)."""
        return self.value[1]

    @classmethod
    def of(cls, phase: Phase, inputs: str) -> StageKind:
        return next(kind for kind in cls if kind.value == (phase, inputs))


@dataclasses.dataclass
class RunContext:
    """What every stage of a run shares: the settings, the data and where outputs go."""

    config: TrainConfig
    dist: Any  # distribute.Distribution
    out: str
    data: Any  # data.ImageData
    pipe: dict[str, Any]  # make_pipeline's image_size, num_classes, batch_size, crop_pct, seed
    train_ds: Any
    val_ds: Any
    views: int  # cached views per image (0: no cache)
    best: callbacks_lib.BestInMemory = dataclasses.field(
        default_factory=callbacks_lib.BestInMemory)

    @property
    def batch_size(self) -> int:
        return self.pipe["batch_size"]

    @property
    def cached(self) -> bool:
        """The frozen part's outputs can be cached: views wanted, one replica (a replicated
        fit would need the cache sharded the way the images are)."""
        return self.views > 0 and self.dist.num_replicas == 1


class Source(Protocol):
    """A stage's input: the model `fit` trains and its (train, val, extra callbacks)."""

    def fit_inputs(self) -> tuple[keras.Model, Any, Any, list]: ...


@dataclasses.dataclass
class ImageSource:
    """The whole model on the image pipeline."""

    model: keras.Model
    train: Any
    val: Any

    def fit_inputs(self) -> tuple[keras.Model, Any, Any, list]:
        return self.model, self.train, self.val, []


class CachedBase:
    """The cached outputs of the base's frozen part (`feature_cache`), computed or loaded
    once, when the first stage on them starts, and the models that train on them (they
    share the transfer model's layers: the recipe's `Head`, the split's top)."""

    def __init__(self, ctx: RunContext, plan: RecipePlan,
                 split: feature_cache.BaseSplit | None) -> None:
        self.ctx, self.plan, self.split = ctx, plan, split
        self.cache = feature_cache.FeatureCache(ctx.out, feature_cache.cache_key(
            ctx.config, ctx.data, ctx.pipe["crop_pct"], ctx.views,
            cut=None if split is None else split.at))
        self.inputs: feature_cache.CachedInputs | None = None
        self._models: dict[str, keras.Model] = {}

    def load(self) -> feature_cache.CachedInputs:
        if self.inputs is None:
            from keras_inception.train import data as data_lib

            ctx = self.ctx
            train_views = [
                data_lib.make_pipeline(ctx.data.train, training=True, augment=ctx.views > 1,
                                       shuffle=False, cache=False,
                                       **{**ctx.pipe, "seed": (ctx.config.seed or 0) + k})
                for k in range(ctx.views)]
            arrays = self.cache.load_or_compute(self.plan.base, train_views, ctx.val_ds,
                                                self.split)
            self.inputs = feature_cache.CachedInputs(arrays, batch_size=ctx.batch_size,
                                                     seed=ctx.config.seed)
        return self.inputs

    def model(self, inputs: str) -> keras.Model:
        """The trainable model on "features" or "activations"."""
        if inputs not in self._models:
            self._models[inputs] = (
                feature_cache.top_model(self.plan.head, self.split) if inputs == "activations"
                else feature_cache.head_model(self.plan.head, self.load().arrays["train"].shape[-1]))
        return self._models[inputs]

    def datasets(self, inputs: str) -> tuple[Any, Any, list]:
        return self.load().datasets("cut" if inputs == "activations" else "")

    def record(self) -> dict[str, Any]:
        """The report's note on the cache: backbone passes of this process, the file."""
        return {"backbone_passes": self.cache.backbone_passes,
                "cache": os.path.relpath(self.cache.path, self.ctx.out)}


@dataclasses.dataclass
class CachedSource:
    """A stage on the cached "features" or "activations" of a `CachedBase`."""

    base: CachedBase
    inputs: str

    def fit_inputs(self) -> tuple[keras.Model, Any, Any, list]:
        train, val, extra = self.base.datasets(self.inputs)
        return self.base.model(self.inputs), train, val, extra


@dataclasses.dataclass
class TrainingStage:
    """One stage of a run: its kind, the recipe's epochs / compile settings / trainable
    set, its input source, the line that announces it and its entry in the report."""

    kind: StageKind
    recipe: Stage
    source: Source
    note: str = ""
    record: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.kind.phase.value


def _views_note(views: int) -> str:
    if views == 1:
        return "1 view per image: the evaluation crop"
    return f"{views} augmented views per image"


def _fine_tune_split(ctx: RunContext, plan: RecipePlan
                     ) -> tuple[feature_cache.BaseSplit | None, str | None]:
    """Where stage 2 can train on cached activations: (the split, None), else (None, why
    the backbone runs every epoch)."""
    config, data = ctx.config, ctx.data
    if not ctx.cached:
        return None, "feature cache off" if ctx.views == 0 else "several replicas"
    if not config.fine_tune_cache:
        return None, "fine_tune_cache off" + (": augmented images every epoch"
                                              if config.augment else "")
    split = feature_cache.split_base(plan.model, config.model)
    if split is None:
        return None, f"{config.model} has no single cut below its fine-tuned blocks"
    need = split.bytes_for(data.train_count * ctx.views + data.val_count)
    budget = feature_cache.activation_budget()
    if need > budget:
        return None, (f"its activations would take {need / 2**30:.1f} GiB, more than "
                      f"{budget / 2**30:.1f} GiB ({feature_cache.ACTIVATION_MEMORY_SHARE:.0%}"
                      " of this machine's memory)")
    return split, None


def _head_stage(ctx: RunContext, stage: Stage, images: ImageSource,
                cached: CachedBase | None) -> TrainingStage:
    if cached is None:
        why = "feature cache off" if ctx.views == 0 else f"{ctx.dist.num_replicas} replicas"
        return TrainingStage(StageKind.HEAD_ON_IMAGES, stage, images,
                             f"backbone features computed every epoch ({why})",
                             {"features": "computed every epoch", "views": 0})
    return TrainingStage(StageKind.HEAD_ON_FEATURES, stage, CachedSource(cached, "features"),
                         "training the head on cached backbone features",
                         {"features": "cached", "views": ctx.views})


def _fine_tune_stage(ctx: RunContext, stage: Stage, images: ImageSource,
                     cached: CachedBase | None, reason: str | None) -> TrainingStage:
    split = None if cached is None else cached.split
    if split is None:
        return TrainingStage(StageKind.FINE_TUNE_ON_IMAGES, stage, images,
                             f"the backbone runs every epoch ({reason})",
                             {"activations": "computed every epoch", "views": 0,
                              "reason": reason})
    return TrainingStage(
        StageKind.FINE_TUNE_ON_ACTIVATIONS, stage, CachedSource(cached, "activations"),
        f"fine-tuning the top blocks (from {split.at}) and the head on cached activations "
        "below them", {"activations": "cached", "views": ctx.views, "from_layer": split.at,
                       "activation_shape": list(split.cut_shape)})


def plan_run_stages(ctx: RunContext, plan: RecipePlan) -> tuple[list[TrainingStage],
                                                                CachedBase | None]:
    """The recipe's stages with their inputs, and the cached base they share (if any)."""
    images = ImageSource(plan.model, ctx.train_ds, ctx.val_ds)
    phases = {stage.phase for stage in plan.stages}
    cached, reason = None, None
    if plan.base is not None and ctx.cached:
        split = None
        if Phase.FINE_TUNE in phases:
            split, reason = _fine_tune_split(ctx, plan)
        if Phase.HEAD in phases or split is not None:
            cached = CachedBase(ctx, plan, split)
    elif Phase.FINE_TUNE in phases:
        reason = _fine_tune_split(ctx, plan)[1]
    stages = []
    for stage in plan.stages:
        if stage.phase is Phase.HEAD:
            stages.append(_head_stage(ctx, stage, images, cached))
        elif stage.phase is Phase.FINE_TUNE:
            stages.append(_fine_tune_stage(ctx, stage, images, cached, reason))
        else:
            stages.append(TrainingStage(StageKind.of(stage.phase, "images"), stage, images))
    return stages, cached


def _verbose(config: TrainConfig) -> int | str:
    """Keras' progress bar on a terminal; one plain line per epoch in a file or a pipe."""
    if config.verbose != "auto":
        return config.verbose
    import sys

    return 1 if getattr(sys.stdout, "isatty", lambda: False)() else 2


def _announce(stage: TrainingStage, ctx: RunContext) -> None:
    if stage.kind.inputs == "images":
        if stage.note:
            print(f"stage {stage.name}: {stage.note}")
        return
    base = stage.source.base
    stage.record.update(base.record())
    print(f"stage {stage.name}: {stage.note} ({_views_note(ctx.views)}, "
          f"{base.cache.backbone_passes} backbone pass(es) now; {stage.record['cache']})")


def _stage_callbacks(stage: TrainingStage, ctx: RunContext, fit_model: keras.Model,
                     model: keras.Model, progress: resume.Progress | None, extra: list) -> list:
    """The stage's callbacks (`callbacks.stage_callbacks`: best.keras holds `model`, of
    which `fit_model` may be a part), its source's, and the compile notice."""
    chief = ctx.dist.is_chief
    callbacks = callbacks_lib.stage_callbacks(
        fit_model, stage.name, ctx.out, chief, restore=progress,
        saved_model=None if fit_model is model else model, best_in_memory=ctx.best,
        epochs_done=stage.recipe.start if progress is None else progress.epoch)
    notice = []
    if chief:
        step = f"{stage.kind.name.lower()}|{ctx.config.model}|{ctx.config.input_size()}"
        notice = [compile_notice.CompileNotice(step, ctx.batch_size)]
    return callbacks + extra + notice


def run_stage(stage: TrainingStage, ctx: RunContext, model: keras.Model) -> None:
    """Runs one stage of `model`: skipped when a previous process finished it (its end
    state loaded), else continued from its backup or started; then its end state saved."""
    backup_root = os.path.join(ctx.out, BACKUP_DIR)
    done = resume.done_path(backup_root, stage.name)
    stage_dir = os.path.join(backup_root, stage.name)
    point = resume.resume_point(done, stage_dir)
    ctx.dist.check_same_state(f"resume points of stage {stage.name}", point)
    stage.recipe.prepare(model)
    if point < 0:
        # Finished before a restart: its end state is all the next stage needs.
        model.load_weights(done)
        print(f"stage {stage.name}: already finished, resuming after it")
        return
    progress = resume.read_progress(stage_dir) if point > 0 else None
    started = time.perf_counter()
    fit_model, train, val, extra = stage.source.fit_inputs()
    _announce(stage, ctx)
    with ctx.dist.scope():
        fit_model.compile(jit_compile=compile_notice.jit_compile(ctx.config.jit),
                          **stage.recipe.compile_args(-(-ctx.data.train_count // ctx.batch_size)))
        _compat.build_for_fit(fit_model, train.element_spec)  # one trace of the step, not two
    callbacks = _stage_callbacks(stage, ctx, fit_model, model, progress, extra)
    with ctx.dist.fit_scope():
        fit_model.fit(train, validation_data=val, epochs=stage.recipe.end,
                      initial_epoch=stage.recipe.start if progress is None else progress.epoch,
                      callbacks=callbacks, verbose=_verbose(ctx.config), shuffle=False)
    if stage.record is not None:
        # Cached arrays (or not), every epoch of the stage, best.keras included.
        stage.record["seconds"] = round(time.perf_counter() - started, 1)
    if ctx.dist.is_chief:
        files.write_atomic(done, model.save_weights)
        shutil.rmtree(stage_dir, ignore_errors=True)


__all__ = ["CachedBase", "CachedSource", "ImageSource", "RunContext", "StageKind",
           "TrainingStage", "plan_run_stages", "run_stage"]
