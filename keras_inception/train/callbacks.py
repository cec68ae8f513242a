"""The callbacks of a training stage: history, best model, TensorBoard, backup.

Every file is written with `keras_inception.files` (staged beside its destination,
then renamed into place; the umask applies), so a reader never sees half a file.

`BestModel` is Keras' `ModelCheckpoint` (`save_best_only`, the bar of a resumed run as
`initial_value_threshold`) writing through `keras_inception.files`. `HistoryCSV` is not
Keras' `CSVLogger`: that one appends to an open file (a crash can leave half a row, a
resumed epoch would be logged twice) and numbers epochs from 0 without the stage;
`history.csv` is rewritten atomically, one row per epoch numbered from 1.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any

import keras

from keras_inception import files
from keras_inception.train import resume
from keras_inception.train.config import BACKUP_DIR, BEST_MODEL, HISTORY_FILE, LOGS_DIR


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


def write_history(path: str, rows: list[dict[str, Any]]) -> None:
    """Writes `rows` as `history.csv` (atomically): `epoch`, `stage`, then the metrics."""
    keys = ["epoch", "stage"]
    for row in rows:
        keys += [k for k in row if k not in keys]

    def write(staged: str) -> None:
        with open(staged, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    files.write_atomic(path, write)


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
        write_history(self.path, [*rows, row])


class BestInMemory:
    """The weights of `best.keras` as this process last wrote it, shared by the stages'
    `BestModel` callbacks, so that the evaluation after training sets them instead of
    reading the file back (Keras' `load_weights` of a `.keras` archive takes about 27 s
    for Inception-ResNet-v2 on 2 cores; `get_weights` 0.2 s). `weights` stays None when
    this process wrote no `best.keras` (a resumed run whose best epoch came earlier)."""

    def __init__(self) -> None:
        self.weights: list | None = None


class _SavedAtomically:
    """What `BestModel` saves: `model` (the whole network, also when `fit` trains a part of
    it that shares its layers), written with `keras_inception.files`; its weights are also
    kept in `memory`. Anything else is the model's."""

    def __init__(self, model: keras.Model, memory: BestInMemory | None) -> None:
        self._model, self._memory = model, memory

    def save(self, filepath: str, overwrite: bool = True) -> None:
        files.write_atomic(filepath, self._model.save)
        if self._memory is not None:
            self._memory.weights = self._model.get_weights()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def best_so_far(history_path: str, best_path: str, epochs_done: int,
                monitor: str = "val_accuracy") -> float | None:
    """The bar a stage starting after `epochs_done` epochs must beat: the best `monitor` of
    those epochs in `history.csv` when `best.keras` exists, else None (any epoch is better)."""
    values = [r.get(monitor, -math.inf) for r in read_history(history_path)
              if r["epoch"] <= epochs_done]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values and os.path.isfile(best_path) else None


class BestModel(keras.callbacks.ModelCheckpoint):
    """Saves `best.keras` at the end of every epoch whose `val_accuracy` beats the best so
    far (`threshold`: the earlier epochs' best, see `best_so_far`), from that epoch on.

    `saved_model` is the model to save when `fit` trains a part of it (the head on cached
    features, the top blocks on cached activations); `memory` keeps the saved weights.
    """

    def __init__(self, path: str, threshold: float | None = None,
                 saved_model: keras.Model | None = None,
                 memory: BestInMemory | None = None) -> None:
        super().__init__(path, monitor="val_accuracy", mode="max", save_best_only=True,
                         initial_value_threshold=threshold)
        self.saved_model, self.memory = saved_model, memory

    def set_model(self, model: keras.Model) -> None:
        super().set_model(_SavedAtomically(self.saved_model or model, self.memory))


def stage_callbacks(model: keras.Model, stage: str, out: str, chief: bool = True,
                    restore: resume.Progress | None = None,
                    saved_model: keras.Model | None = None,
                    best_in_memory: BestInMemory | None = None,
                    epochs_done: int = 0) -> list:
    """The callbacks of one stage's `fit`, in the order they must run.

    `restore` (the stage's backup, see `keras_inception.train.resume`) is loaded first,
    when `fit` starts. At each epoch end, history comes before the backup: a crash
    between the two re-runs (and rewrites) the epoch instead of losing its row; the
    best model comes before the backup too, so that a resumed run never misses a better
    epoch. With an EMA optimizer, `SwapEMAWeights` comes first so that validation and
    `best.keras` use the averaged weights. Only the chief (`chief=True`) writes into `out`.
    `saved_model` is what `best.keras` holds when `model` is only a part of it;
    `best_in_memory` receives the weights each time `best.keras` is written;
    `epochs_done`: the epochs of the run before this `fit` (they set the best's bar).
    """
    history_path = os.path.join(out, HISTORY_FILE)
    callbacks: list = []
    if restore is not None:
        callbacks.append(resume.RestoreBackup(restore))
    if getattr(model.optimizer, "use_ema", False):
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if chief:
        callbacks.append(HistoryCSV(history_path, stage))
        best_path = os.path.join(out, BEST_MODEL)
        callbacks.append(BestModel(best_path, best_so_far(history_path, best_path, epochs_done),
                                   saved_model=saved_model, memory=best_in_memory))
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(out, LOGS_DIR), write_graph=False, profile_batch=0))
        callbacks.append(resume.StageBackup(os.path.join(out, BACKUP_DIR, stage), stage))
    return callbacks


__all__ = [
    "BestInMemory",
    "BestModel",
    "HistoryCSV",
    "best_so_far",
    "read_history",
    "stage_callbacks",
    "write_history",
]
