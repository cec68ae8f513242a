"""Fine-tuning and training from scratch: the `transfer` and `paper` recipes.

`train(TrainConfig(...))` loads the data (`data`), builds the model and the recipe's
stages (`recipes.plan_stages`), gives each its input source (`stages.plan_run_stages`:
images, cached features or cached activations), runs them with `model.fit`
(`stages.run_stage`, from `loop.train`) and writes into `config.out`:

* `best.keras`: the model of the epoch with the best validation accuracy, carrying its
  meaning (input size, evaluation crop, scaling, class names: `keras_inception.metadata`);
* `history.csv`: one row per epoch (numbered from 1), rewritten atomically so that a
  resumed run never repeats or skips a row;
* `logs/`: TensorBoard logs;
* `report.json`, `curves.png`, `confusion.png`: evaluation of `best.keras` on the
  validation split (`evaluation`, `report`).

Every file is written with `keras_inception.files` (staged, then renamed into place;
the umask applies). A run killed at any point and started again with the same `out`
continues from its last finished epoch (`resume`: one backup per stage).

Modules: `config` (TrainConfig and the allowed values, no Keras), `recipes`, `stages`,
`callbacks`, `resume`, `loop`, `evaluation`, `report`, `data` (tf.data input),
`feature_cache`, `compile_notice` and `distribute` (several devices or machines).

The names below are imported on first use (PEP 562), so that `keras_inception.train.config`
and `keras_inception.train.distribute.STRATEGIES` load without Keras (the command line's
parser).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_inception._lazy import lazy_exports

if TYPE_CHECKING:
    from keras_inception.train.callbacks import (
        BestModel,
        HistoryCSV,
        read_history,
        stage_callbacks,
    )
    from keras_inception.train.config import (
        BEST_MODEL,
        CLASS_NAMES_FILE,
        HISTORY_FILE,
        PRECISIONS,
        RECIPES,
        REPORT_FILE,
        STRATEGIES,
        TrainConfig,
    )
    from keras_inception.train.evaluation import evaluate, evaluate_model, read_class_names
    from keras_inception.train.loop import train
    from keras_inception.train.recipes import (
        BASE_LEARNING_RATE,
        PAPER,
        Phase,
        Stage,
        base_of,
        build_transfer_model,
        freeze_base,
        paper_optimizer,
        plan_stages,
        unfreeze_top,
    )
    from keras_inception.train.report import (
        plot_confusion,
        plot_curves,
        summary,
        write_outputs,
    )
    from keras_inception.train.stages import StageKind

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(
        ("TrainConfig", "RECIPES", "PRECISIONS", "STRATEGIES", "BEST_MODEL", "CLASS_NAMES_FILE",
         "HISTORY_FILE", "REPORT_FILE"), "keras_inception.train.config"),
    **dict.fromkeys(
        ("PAPER", "BASE_LEARNING_RATE", "Phase", "Stage", "build_transfer_model", "base_of",
         "freeze_base", "unfreeze_top", "paper_optimizer", "plan_stages"),
        "keras_inception.train.recipes"),
    **dict.fromkeys(("HistoryCSV", "BestModel", "stage_callbacks", "read_history"),
                    "keras_inception.train.callbacks"),
    "train": "keras_inception.train.loop",
    "StageKind": "keras_inception.train.stages",
    **dict.fromkeys(("evaluate", "evaluate_model", "read_class_names"),
                    "keras_inception.train.evaluation"),
    **dict.fromkeys(("write_outputs", "plot_curves", "plot_confusion", "summary"),
                    "keras_inception.train.report"),
}
_SUBMODULES = ("callbacks", "compile_notice", "config", "data", "distribute", "evaluation",
               "feature_cache", "loop", "recipes", "report", "resume", "stages")


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)


__all__ = [
    "BASE_LEARNING_RATE",
    "BEST_MODEL",
    "BestModel",
    "CLASS_NAMES_FILE",
    "HISTORY_FILE",
    "HistoryCSV",
    "PAPER",
    "PRECISIONS",
    "Phase",
    "RECIPES",
    "REPORT_FILE",
    "STRATEGIES",
    "Stage",
    "StageKind",
    "TrainConfig",
    "base_of",
    "build_transfer_model",
    "evaluate",
    "evaluate_model",
    "freeze_base",
    "paper_optimizer",
    "plan_stages",
    "plot_confusion",
    "plot_curves",
    "read_class_names",
    "read_history",
    "stage_callbacks",
    "summary",
    "train",
    "unfreeze_top",
    "write_outputs",
]
