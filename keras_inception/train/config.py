"""The settings of a training run (`TrainConfig`), their allowed values and the output files.

This module imports neither Keras nor TensorFlow: the command line builds its parser
from `RECIPES`, `PRECISIONS` and `STRATEGIES` without loading a backend.
"""

from __future__ import annotations

import dataclasses
import os

from keras_inception.saving import CLASS_NAMES_FILE

RECIPES = ("transfer", "paper")
PRECISIONS = ("none", "float16", "bfloat16")
# How a run is spread over devices (see keras_inception.train.distribute).
STRATEGIES = ("auto", "none", "mirrored", "multi_worker", "tpu")

# The files a run writes into its output folder.
BEST_MODEL = "best.keras"
HISTORY_FILE = "history.csv"
REPORT_FILE = "report.json"
BACKUP_DIR = "backup"
LOGS_DIR = "logs"
# Written when a run starts (what it is) and when it ends (where the results are).
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# TrainConfig fields that define a run: resuming a folder with other values is refused.
RUN_IDENTITY = ("model", "data", "recipe", "image_size", "epochs", "weights", "stage1_epochs",
                "batch_size", "learning_rate", "mixed_precision", "seed", "max_per_class",
                "crop_pct", "augment", "feature_views", "fine_tune_cache")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the CLI flags map one to one onto it.

    `weights=None` means the recipe's default: "imagenet" for `transfer`, none for
    `paper`; pass "none" for random initialization or the path of a weights file.
    """

    out: str
    model: str = "inception_resnet_v2"
    data: str = "flowers_sample"
    # None: the network's (299; FaceNet's 160).
    image_size: int | None = None
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
    # Replace a finished run (or another run's outputs) in `out` instead of refusing.
    overwrite: bool = False
    # Random resized crops and flips while training (False: the evaluation crop).
    augment: bool = True
    # Stage 1 of `transfer` on cached backbone features: views per image (0: no cache,
    # the backbone runs every epoch; None: the default, see train.feature_cache).
    feature_views: int | None = None
    # Stage 2 of `transfer` on the cached activations below the unfrozen blocks (the same
    # views as stage 1); False: the backbone runs on augmented images every epoch.
    fine_tune_cache: bool = True

    def validate(self) -> None:
        """Raises ValueError for a setting that cannot work, before any work starts."""
        from keras_inception.registry import get_spec

        spec = get_spec(self.model)
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
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or self.image_size < 75):
            raise ValueError(
                f"`image_size` must be an integer >= 75; received image_size={self.image_size!r}."
            )
        if self.stage1_epochs is not None and (
            not isinstance(self.stage1_epochs, int) or self.stage1_epochs < 0
        ):
            raise ValueError(
                "`stage1_epochs` must be an integer >= 0 (0: fine-tune from the first epoch); "
                f"received stage1_epochs={self.stage1_epochs!r}."
            )
        if self.learning_rate is not None and not (
            isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < float("inf")
        ):
            raise ValueError(
                f"`learning_rate` must be a positive number; received learning_rate="
                f"{self.learning_rate!r}."
            )
        if self.max_per_class is not None and (
            not isinstance(self.max_per_class, int) or self.max_per_class < 1
        ):
            raise ValueError(
                f"`max_per_class` must be a positive integer; received max_per_class="
                f"{self.max_per_class!r}."
            )
        if self.feature_views is not None and (
            not isinstance(self.feature_views, int) or self.feature_views < 0
        ):
            raise ValueError(
                "`feature_views` must be an integer >= 0 (0: no feature cache); received "
                f"feature_views={self.feature_views!r}."
            )
        if not isinstance(self.fine_tune_cache, bool):
            raise ValueError(
                "`fine_tune_cache` must be True or False; received "
                f"fine_tune_cache={self.fine_tune_cache!r}."
            )
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ValueError(f"`crop_pct` must be in (0, 1]; received crop_pct={self.crop_pct!r}.")
        weights = self.resolved_weights()
        if not spec.classifier and (self.recipe == "paper" or weights is None):
            raise ValueError(
                f"{spec.title} is trained from its pretrained weights with the transfer recipe "
                f"(weights: {', '.join(spec.preset_names)} or a file); received recipe="
                f"{self.recipe!r}, weights={self.weights!r}. To train Inception-ResNet-v1 from "
                "scratch, use model='inception_resnet_v1'."
            )
        if self.recipe == "paper" and weights is not None and not os.path.isfile(str(weights)):
            raise ValueError(
                "The `paper` recipe trains from scratch: `weights` must be 'none' or a weights "
                f"file of the full model; received weights={self.weights!r}."
            )

    def input_size(self) -> int:
        """The image size: the configured one, else the network's default."""
        from keras_inception.registry import get_spec

        return self.image_size or get_spec(self.model).default_size

    def resolved_weights(self) -> str | None:
        """The weights to load: None (random), a preset name or a file. The transfer
        recipe's default is "imagenet" (FaceNet's: its first preset, "ms_celeb_1m")."""
        from keras_inception.registry import get_spec

        if self.weights is None:
            if self.recipe != "transfer":
                return None
            spec = get_spec(self.model)
            return "imagenet" if spec.classifier else spec.presets[0].name
        return None if str(self.weights).lower() == "none" else self.weights


__all__ = [
    "BACKUP_DIR",
    "BEST_MODEL",
    "CLASS_NAMES_FILE",
    "HISTORY_FILE",
    "LOGS_DIR",
    "PRECISIONS",
    "RECIPES",
    "REPORT_FILE",
    "STRATEGIES",
    "TrainConfig",
]
