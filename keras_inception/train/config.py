"""The settings of a training run (`TrainConfig`), their allowed values and the output files.

This module imports neither Keras nor TensorFlow: the command line builds its parser
from `RECIPES`, `PRECISIONS` and `STRATEGIES` without loading a backend.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

from keras_inception.registry import CLASSIFIER, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, model_kind
from keras_inception.saving import CLASS_NAMES_FILE

RECIPES = ("transfer", "paper")
# `data` that is not a folder: the embedded sample, and tensorflow-datasets names.
SAMPLE_NAME = "flowers_sample"
TFDS_PREFIX = "tfds:"
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


class TrainingNotice(UserWarning):
    """A warning about a run's files that its message says all of (images left out, a
    cache computed again): printed as one line, `Category: message`, without the line of
    the package that raised it, which `warnings` prints under other warnings and which
    tells a user nothing. Filters and `pytest.warns` see a UserWarning as before."""


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """`warnings.formatwarning` with `TrainingNotice`s on one line; other warnings as the
    format this replaced writes them."""
    if issubclass(category, TrainingNotice):
        return f"{category.__name__}: {message}\n"
    return _other_warnings(message, category, filename, lineno, line)


_other_warnings = warnings.formatwarning
warnings.formatwarning = _format_warning


def _field(default: Any, *, identity: bool = False, minimum: int | None = None,
           maximum: int | None = None, note: str = "") -> Any:
    """A `TrainConfig` field; its metadata says whether it defines the run (`RUN_IDENTITY`)
    and, for integers, the smallest and largest values `validate` accepts (`note`: what
    the smallest means)."""
    return dataclasses.field(default=default, metadata={
        "identity": identity, "minimum": minimum, "maximum": maximum, "note": note})


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the CLI flags map one to one onto it.

    `weights=None` means the recipe's default: "imagenet" for `transfer`, none for
    `paper`; pass "none" for random initialization or the path of a weights file.
    Fields marked `identity` define a run: resuming a folder with other values is refused.
    """

    out: str
    model: str = _field("inception_resnet_v2", identity=True)
    data: str = _field("flowers_sample", identity=True)
    # None: the network's (299; FaceNet's 160).
    image_size: int | None = _field(None, identity=True, minimum=MIN_IMAGE_SIZE,
                                    maximum=MAX_IMAGE_SIZE)
    batch_size: int = _field(32, identity=True, minimum=1)
    epochs: int = _field(10, identity=True, minimum=1)
    weights: str | None = _field(None, identity=True)
    recipe: str = _field("transfer", identity=True)
    mixed_precision: str = _field("none", identity=True)
    # XLA: None lets Keras decide (`jit_compile="auto"`).
    jit: bool | None = None
    data_dir: str | None = None
    download: bool = False
    seed: int = _field(0, identity=True)
    crop_pct: float | None = _field(None, identity=True)
    learning_rate: float | None = _field(None, identity=True)
    stage1_epochs: int | None = _field(None, identity=True, minimum=0,
                                       note="0: fine-tune from the first epoch")
    max_per_class: int | None = _field(None, identity=True, minimum=1)
    # "auto": a progress bar on a terminal, one plain line per epoch otherwise.
    verbose: int | str = "auto"
    strategy: str = "auto"
    # Replace a finished run (or another run's outputs) in `out` instead of refusing.
    overwrite: bool = False
    # Random resized crops and flips while training (False: the evaluation crop).
    augment: bool = _field(True, identity=True)
    # Stage 1 of `transfer` on cached backbone features: views per image (0: no cache,
    # the backbone runs every epoch; None: the default, see train.feature_cache).
    feature_views: int | None = _field(None, identity=True, minimum=0,
                                       note="0: no feature cache")
    # Stage 2 of `transfer` on the cached activations below the unfrozen blocks (the same
    # views as stage 1); False: the backbone runs on augmented images every epoch.
    fine_tune_cache: bool = _field(True, identity=True)

    def validate(self) -> None:
        """Raises ValueError for a setting that cannot work, before any work starts."""
        from keras_inception.registry import get_spec

        spec = get_spec(self.model)
        for name, allowed in (("strategy", STRATEGIES), ("recipe", RECIPES),
                              ("mixed_precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}; received "
                                 f"{name}={getattr(self, name)!r}.")
        for field in dataclasses.fields(self):
            _check_bounds(field, getattr(self, field.name))
        check_stage1_epochs(self.stage1_epochs, self.epochs)
        if self.learning_rate is not None and not (
            isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < float("inf")
        ):
            raise ValueError(
                f"`learning_rate` must be a positive number; received learning_rate="
                f"{self.learning_rate!r}."
            )
        if not isinstance(self.fine_tune_cache, bool):
            raise ValueError(
                "`fine_tune_cache` must be True or False; received "
                f"fine_tune_cache={self.fine_tune_cache!r}."
            )
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ValueError(f"`crop_pct` must be in (0, 1]; received crop_pct={self.crop_pct!r}.")
        self._check_weights(spec)

    def _check_weights(self, spec: Any) -> None:
        weights = self.resolved_weights()
        if model_kind(spec.name) != CLASSIFIER and (self.recipe == "paper" or weights is None):
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
            if model_kind(self.model) == CLASSIFIER:
                return "imagenet"
            return get_spec(self.model).presets[0].name
        return None if str(self.weights).lower() == "none" else self.weights



def evaluation_crop_pct(model: str, weights: str | None, crop_pct: float | None) -> float:
    """The center crop a run evaluates (and a trained model predicts) with: `crop_pct`, else
    the pretrained preset's (`weights` names a preset of `model`), else 0.875 (random
    weights or a weights file)."""
    from keras_inception.preprocessing import DEFAULT_CROP_PCT

    if crop_pct is not None:
        return float(crop_pct)
    if weights and not os.path.isfile(weights):
        from keras_inception.presets import get_preset

        return get_preset(model, weights).crop_pct
    return DEFAULT_CROP_PCT


def check_stage1_epochs(stage1_epochs: int | None, epochs: int,
                        spell: Callable[[str, int], str] = "{}={}".format) -> None:
    """Refuses a head-only stage longer than the run: its epochs are the first of `epochs`
    (min() of the two would drop the fine-tuning stage without a word). `spell(name,
    value)` writes a setting as the caller's user names it (the command line: `--epochs 2`)."""
    if stage1_epochs is None or stage1_epochs <= epochs:
        return
    stage1, total = spell("stage1_epochs", stage1_epochs), spell("epochs", epochs)
    raise ValueError(
        f"{stage1} is more than {total}: the head-only stage takes the first of the run's "
        f"epochs, 0 to {epochs} of them (fewer than {epochs} leaves epochs for the "
        "fine-tuning stage).")


def _check_bounds(field: dataclasses.Field, value: Any) -> None:
    """The integer bounds of a field's metadata (None passes: the default applies)."""
    minimum, maximum = field.metadata.get("minimum"), field.metadata.get("maximum")
    if minimum is None or value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        if maximum is not None:
            kind = f"an integer in {minimum}-{maximum}"
        else:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        note = field.metadata["note"]
        raise ValueError(f"`{field.name}` must be {kind}{f' ({note})' if note else ''}; "
                         f"received {field.name}={value!r}.")


# TrainConfig fields that define a run: resuming a folder with other values is refused.
RUN_IDENTITY = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("identity"))

__all__ = [
    "BACKUP_DIR",
    "BEST_MODEL",
    "CLASS_NAMES_FILE",
    "HISTORY_FILE",
    "LOGS_DIR",
    "PRECISIONS",
    "RECIPES",
    "REPORT_FILE",
    "RUN_IDENTITY",
    "SAMPLE_NAME",
    "STRATEGIES",
    "TFDS_PREFIX",
    "TrainConfig",
    "TrainingNotice",
    "check_stage1_epochs",
    "evaluation_crop_pct",
]
