"""The callbacks of a training stage: history, best model, TensorBoard, backup, test hook.

Every file is written with `keras_inception.files` (staged beside its destination,
then renamed into place; the umask applies), so a reader never sees half a file.

Test hook: with the environment variable `KERAS_INCEPTION_CRASH_AFTER_EPOCH=N` set,
the process kills itself with SIGKILL at the end of epoch N (numbered from 1 over the
whole run, as in `history.csv`), after every other callback of that epoch ran, the
backup included. The resume tests use it to crash a run at a known point and then
rerun it without the variable.
"""

from __future__ import annotations

import csv
import math
import os
import signal
from typing import Any

import keras

from keras_inception import files
from keras_inception.train import resume
from keras_inception.train.config import BACKUP_DIR, BEST_MODEL, HISTORY_FILE, LOGS_DIR

CRASH_AFTER_EPOCH_ENV = "KERAS_INCEPTION_CRASH_AFTER_EPOCH"


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


class BestModel(keras.callbacks.Callback):
    """Saves the model when `val_accuracy` improves (staged, then renamed into place).

    The best value so far is read back from `history.csv`, so a resumed run only
    replaces `best.keras` with a better model. With `memory`, the saved weights are
    also kept there.
    """

    def __init__(self, path: str, history_path: str, monitor: str = "val_accuracy",
                 saved_model: keras.Model | None = None,
                 memory: BestInMemory | None = None) -> None:
        super().__init__()
        self.path, self.history_path, self.monitor = path, history_path, monitor
        self.memory = memory
        # The model to save, when `fit` trains a part of it (the head on cached features).
        # Then epochs take milliseconds and writing the whole network each time would
        # dominate: the best part's weights are kept and the model is written once, when
        # the stage ends.
        self.saved_model = saved_model
        self.best: float | None = None
        self.best_weights: list | None = None

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
            if self.saved_model is None:
                self._write(self.model)
            else:
                self.best_weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is None:
            return
        final = self.model.get_weights()
        self.model.set_weights(self.best_weights)
        try:
            self._write(self.saved_model)
        finally:
            self.model.set_weights(final)
            self.best_weights = None

    def _write(self, model: keras.Model) -> None:
        files.write_atomic(self.path, model.save)
        if self.memory is not None:
            self.memory.weights = model.get_weights()


class CrashAfterEpoch(keras.callbacks.Callback):
    """Test hook (see the module docstring): SIGKILLs this process at the end of epoch
    `epoch` (1-based). `stage_callbacks` adds it last, only when
    $KERAS_INCEPTION_CRASH_AFTER_EPOCH is set."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def crash_hook() -> list[keras.callbacks.Callback]:
    """[CrashAfterEpoch(N)] when $KERAS_INCEPTION_CRASH_AFTER_EPOCH=N is set, else []."""
    value = os.environ.get(CRASH_AFTER_EPOCH_ENV, "").strip()
    if not value:
        return []
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"${CRASH_AFTER_EPOCH_ENV} (a test hook) must be an epoch number >= 1; "
            f"received {value!r}.")
    return [CrashAfterEpoch(int(value))]


def stage_callbacks(model: keras.Model, stage: str, out: str, chief: bool = True,
                    restore: resume.Progress | None = None,
                    saved_model: keras.Model | None = None,
                    best_in_memory: BestInMemory | None = None) -> list:
    """The callbacks of one stage's `fit`, in the order they must run.

    `restore` (the stage's backup, see `keras_inception.train.resume`) is loaded first,
    when `fit` starts. At each epoch end, history comes before the backup: a crash
    between the two re-runs (and rewrites) the epoch instead of losing its row; the
    best model comes before the backup too, so that a resumed run never misses a better
    epoch. With an EMA optimizer, `SwapEMAWeights` comes first so that validation and
    `best.keras` use the averaged weights. Only the chief (`chief=True`) writes into `out`.
    `saved_model` is what `best.keras` holds when `model` is only a part of it;
    `best_in_memory` receives the weights each time `best.keras` is written.
    """
    history_path = os.path.join(out, HISTORY_FILE)
    callbacks: list = []
    if restore is not None:
        callbacks.append(resume.RestoreBackup(restore))
    if getattr(model.optimizer, "use_ema", False):
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if chief:
        callbacks.append(HistoryCSV(history_path, stage))
        callbacks.append(BestModel(os.path.join(out, BEST_MODEL), history_path,
                                   saved_model=saved_model, memory=best_in_memory))
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(out, LOGS_DIR), write_graph=False, profile_batch=0))
        callbacks.append(resume.StageBackup(os.path.join(out, BACKUP_DIR, stage), stage))
    return callbacks + crash_hook()


__all__ = [
    "CRASH_AFTER_EPOCH_ENV",
    "BestInMemory",
    "BestModel",
    "CrashAfterEpoch",
    "HistoryCSV",
    "read_history",
    "stage_callbacks",
    "write_history",
]
