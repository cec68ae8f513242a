"""The training recipes: the model each one builds and its stages (trainable set, optimizer).

* `transfer`: stage 1 trains a new head on the frozen pretrained base, called with
  `training=False` so its BatchNorm statistics never change; stage 2 unfreezes the
  top blocks (from the network's `ModelSpec.fine_tune_from` layer on; BatchNorm layers
  stay frozen and in inference mode) with a low, cosine-decaying learning rate.
  Without pretrained weights there is nothing to transfer: the whole network is
  trained from scratch in a single stage.
* `paper`: training from scratch as in section 4 of Szegedy et al. (2016): RMSprop
  (rho 0.9, momentum 0.9, epsilon 1.0), learning rate 0.045 decayed by 0.94 every two
  epochs, an exponential moving average of the weights used for evaluation and
  saving, label smoothing 0.1, gradient clipping at global norm 2.0, weight decay
  4e-5 (decoupled, as Keras optimizers apply it) and head dropout 0.2.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import keras

from keras_inception.models import pooled_backbone
from keras_inception.registry import get_spec
from keras_inception.train.config import TrainConfig, check_stage1_epochs

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
# Head dropout of the transfer recipe and of training from scratch without pretrained weights.
HEAD_DROPOUT = 0.2


class Phase(enum.Enum):
    """What a stage trains; its value names the stage in `history.csv` and the backups."""

    HEAD = "head"  # the new head on the frozen pretrained base
    FINE_TUNE = "fine_tune"  # the top blocks and the head
    SCRATCH = "scratch"  # the whole network, no pretrained weights (transfer recipe)
    PAPER = "paper"  # the whole network, the paper's recipe


@dataclasses.dataclass
class Stage:
    """One `fit` call of a recipe: epochs [start, end) with its own trainable set and
    optimizer (`compile_args` creates new metric objects on every call)."""

    phase: Phase
    start: int
    end: int
    compile_args: Callable[[int], dict]  # steps_per_epoch -> compile kwargs
    prepare: Callable[[keras.Model], None]  # sets what is trainable

    @property
    def name(self) -> str:
        """The phase's name: "head", "fine_tune", "scratch" or "paper"."""
        return self.phase.value


@dataclasses.dataclass(frozen=True)
class Head:
    """The transfer model's new head (dropout, then the classifier), held by the recipe so
    that the stages on cached inputs call the same layers without looking them up."""

    dropout: keras.layers.Layer
    classifier: keras.layers.Layer

    def __call__(self, x: Any) -> Any:
        return self.classifier(self.dropout(x))


@dataclasses.dataclass
class RecipePlan:
    """What `plan_stages` returns: the model, its stages, a note on the weights used, and
    for the transfer recipe's pretrained model its base and head."""

    model: keras.Model
    stages: list[Stage]
    weights_note: str
    base: keras.Model | None = None
    head: Head | None = None


def transfer_parts(model_name: str, num_classes: int, image_size: int, weights: str | None,
                   dropout_rate: float = HEAD_DROPOUT, seed: int | None = None,
                   ) -> tuple[keras.Model, keras.Model, Head]:
    """`build_transfer_model`'s model, with its base and its `Head`. With `seed`, the head
    starts from it whatever loading the base drew (converting weights that are not cached
    yet builds models too, which advances the random state)."""
    base = pooled_backbone(model_name, weights, (image_size, image_size, 3))
    if seed is not None:
        keras.utils.set_random_seed(seed)
    head = Head(keras.layers.Dropout(dropout_rate, name="head_dropout"),
                keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                   name="predictions"))
    inputs = keras.Input((image_size, image_size, 3), name="image")
    model = keras.Model(inputs, head(base(inputs, training=False)), name=f"{model_name}_transfer")
    return model, base, head


def build_transfer_model(
    model_name: str, num_classes: int, image_size: int, weights: str | None,
    dropout_rate: float = HEAD_DROPOUT,
) -> keras.Model:
    """A pretrained base (no top, avg pooling) called with `training=False` + a new head.

    Calling the base with `training=False` keeps its BatchNorm layers in inference
    mode whatever their `trainable` flag, so fine-tuning never updates their
    statistics (the Keras transfer-learning guide's rule).
    """
    return transfer_parts(model_name, num_classes, image_size, weights, dropout_rate)[0]


def base_of(model: keras.Model) -> keras.Model:
    """The pretrained base inside a model made by `build_transfer_model`."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def freeze_base(model: keras.Model) -> None:
    """Stage 1: only the head trains."""
    base_of(model).trainable = False


def fine_tune_network(base: keras.Model, model_name: str) -> tuple[keras.Model, int]:
    """The network whose layers fine-tuning unfreezes (the base itself, or the network
    nested in it: FaceNet's base wraps its body behind an input rescaling) and the
    index in `network.layers` of its first layer named `ModelSpec.fine_tune_from`."""
    prefix = get_spec(model_name).fine_tune_from
    network = base
    while not any(layer.name.startswith(prefix) for layer in network.layers):
        nested = [layer for layer in network.layers if isinstance(layer, keras.Model)]
        if len(nested) != 1:
            raise ValueError(
                f"The base {base.name!r} has no layer named {prefix!r}..., where "
                f"fine-tuning of {model_name} starts (ModelSpec.fine_tune_from)."
            )
        network = nested[0]
    first = next(i for i, layer in enumerate(network.layers) if layer.name.startswith(prefix))
    return network, first


def unfreeze_top(model: keras.Model, model_name: str) -> None:
    """Stage 2: unfreeze the base from the spec's `fine_tune_from` layer on, except BatchNorm."""
    base = base_of(model)
    base.trainable = True
    network, first = fine_tune_network(base, model_name)
    for i, layer in enumerate(network.layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def all_trainable(model: keras.Model) -> None:
    """Training from scratch: every layer trains."""
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


def metrics_for(num_classes: int) -> list:
    """Accuracy, and top-5 accuracy when there are more than five classes."""
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes >= 6:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
    return metrics


def _adam(learning_rate: float, num_classes: int, decay_epochs: int | None = None):
    """compile_args of an Adam stage, cosine-decaying over `decay_epochs` when given."""

    def args(steps: int) -> dict:
        schedule = learning_rate if decay_epochs is None else (
            keras.optimizers.schedules.CosineDecay(
                learning_rate, decay_steps=max(1, decay_epochs * steps), alpha=0.01))
        return {"optimizer": keras.optimizers.Adam(schedule),
                "loss": keras.losses.CategoricalCrossentropy(),
                "metrics": metrics_for(num_classes)}

    return args


def _paper_plan(config: TrainConfig, num_classes: int) -> RecipePlan:
    size, weights, total = config.input_size(), config.resolved_weights(), config.epochs
    model = get_spec(config.model).builder(
        weights=weights, input_shape=(size, size, 3), classes=num_classes,
        dropout_rate=PAPER["dropout_rate"])

    def paper_args(steps: int) -> dict:
        return {
            "optimizer": paper_optimizer(steps, total, config.learning_rate),
            "loss": keras.losses.CategoricalCrossentropy(label_smoothing=PAPER["label_smoothing"]),
            "metrics": metrics_for(num_classes),
        }

    note = f"from scratch{'' if weights is None else f' (initialized from {weights})'}"
    return RecipePlan(model, [Stage(Phase.PAPER, 0, total, paper_args, all_trainable)], note)


def _transfer_plan(config: TrainConfig, num_classes: int) -> RecipePlan:
    weights, size, total = config.resolved_weights(), config.input_size(), config.epochs
    check_stage1_epochs(config.stage1_epochs, total)  # a longer head stage: refused, not cut
    learning_rate = config.learning_rate or BASE_LEARNING_RATE["transfer"]
    if weights is None:
        # Nothing to transfer: the whole network learns, BatchNorm in training mode.
        model = get_spec(config.model).builder(
            weights=None, input_shape=(size, size, 3), classes=num_classes,
            dropout_rate=HEAD_DROPOUT)
        stage = Stage(Phase.SCRATCH, 0, total, _adam(learning_rate, num_classes, total),
                      all_trainable)
        return RecipePlan(model, [stage], "from scratch (no pretrained weights)")
    model, base, head = transfer_parts(config.model, num_classes, size, weights,
                                       seed=config.seed)
    first = config.stage1_epochs if config.stage1_epochs is not None else max(1, total // 2)
    # stage1_epochs=0: no head-only stage, fine-tuning from the first epoch.
    stages = [Stage(Phase.HEAD, 0, first, _adam(learning_rate, num_classes), freeze_base)
              ] if first else []
    if first < total:
        stages.append(Stage(
            Phase.FINE_TUNE, first, total, _adam(learning_rate / 10, num_classes, total - first),
            lambda m: unfreeze_top(m, config.model),
        ))
    return RecipePlan(model, stages, str(weights), base=base, head=head)


def plan_stages(config: TrainConfig, num_classes: int) -> RecipePlan:
    """The recipe's model and stages, and a one-line note on the weights used."""
    if config.recipe == "paper":
        return _paper_plan(config, num_classes)
    return _transfer_plan(config, num_classes)


__all__ = [
    "BASE_LEARNING_RATE",
    "PAPER",
    "Head",
    "Phase",
    "RecipePlan",
    "Stage",
    "all_trainable",
    "base_of",
    "build_transfer_model",
    "fine_tune_network",
    "freeze_base",
    "metrics_for",
    "paper_optimizer",
    "plan_stages",
    "transfer_parts",
    "unfreeze_top",
]
