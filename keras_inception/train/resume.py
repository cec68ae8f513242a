"""Resuming an interrupted run: a backup per stage, written and read with public Keras APIs.

A run killed at any point and started again with the same output folder continues
from its last finished epoch. The chief keeps, in `OUT/backup/`:

* `<stage>/epoch-NNNN.weights.h5`: the model and optimizer state after epoch N
  (numbered from 1 over the whole run, as in `history.csv`);
* `<stage>/progress.json`: `{"stage": ..., "epoch": N, "weights": "epoch-NNNN.weights.h5"}`,
  replaced only once that weights file is complete (both are written atomically),
  so the record always names a whole file; older weights files are removed after it;
* `<stage>.done.weights.h5`: the end state of a finished stage.

On a restart the training loop reads the record before `fit` (`read_progress`,
`resume_point`), passes `initial_epoch=N` to `fit`, and `RestoreBackup` loads the
weights file when `fit` starts, once Keras has built the optimizer (in the
distribution strategy's scope), printing the epoch it resumes from. Every worker of a
multi-worker run reads the chief's backup, so all of them resume at the same epoch;
only the chief writes.

`keras.callbacks.BackupAndRestore` is not used: it hands the restored epoch to `fit`
through a private model attribute that outlives the `fit` call (a later stage would
start at the earlier stage's epoch), and its progress file is private to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import keras

from keras_inception import files

PROGRESS_FILE = "progress.json"
_WEIGHTS_NAME = re.compile(r"^epoch-(\d+)\.weights\.h5$")


def weights_name(epoch: int) -> str:
    """The file name of the backup after `epoch` (1-based)."""
    return f"epoch-{epoch:04d}.weights.h5"


def done_path(backup_root: str, stage: str) -> str:
    """The end state of stage `stage`, written once its `fit` returned."""
    return os.path.join(backup_root, f"{stage}.done.weights.h5")


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a stage's backup holds: the epochs done and the weights file after them."""

    stage: str
    epoch: int  # epochs done, counted from the start of the run (1-based)
    weights: str  # absolute path of the weights file

    @property
    def initial_epoch(self) -> int:
        """`fit`'s `initial_epoch` that continues after the backup (0-based)."""
        return self.epoch


def read_progress(backup_dir: str) -> Progress | None:
    """The progress record of a stage's backup folder; None when there is no usable one
    (no record, an unreadable one, or one naming a weights file that is missing)."""
    try:
        with open(os.path.join(backup_dir, PROGRESS_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    epoch, name, stage = record.get("epoch"), record.get("weights"), record.get("stage")
    if not (isinstance(epoch, int) and epoch >= 1 and isinstance(name, str)
            and _WEIGHTS_NAME.match(name) and isinstance(stage, str)):
        return None
    path = os.path.join(os.path.abspath(backup_dir), name)
    if not os.path.isfile(path):
        return None
    return Progress(stage, epoch, path)


def resume_point(done: str, backup_dir: str) -> int:
    """Where a stage would start from the files in the output folder: -1 when it is
    finished (`done` exists), else the epochs its backup has done (0: none)."""
    if os.path.isfile(done):
        return -1
    progress = read_progress(backup_dir)
    return 0 if progress is None else progress.epoch


class StageBackup(keras.callbacks.Callback):
    """Backs up the model and optimizer state at the end of every epoch (the chief only).

    The weights file is written first, then the progress record that names it, then the
    older weights files are removed: a crash at any point leaves a record that names a
    complete file. Files are written with `keras_inception.files` (staged beside the
    destination, then renamed; the umask applies).
    """

    def __init__(self, backup_dir: str, stage: str) -> None:
        super().__init__()
        self.backup_dir, self.stage = os.path.abspath(backup_dir), stage

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        name = weights_name(done)
        files.write_atomic(os.path.join(self.backup_dir, name), self.model.save_weights,
                           create_parents=True)
        files.write_json_atomic(os.path.join(self.backup_dir, PROGRESS_FILE),
                                {"stage": self.stage, "epoch": done, "weights": name})
        for entry in os.listdir(self.backup_dir):
            if entry != name and _WEIGHTS_NAME.match(entry):
                os.remove(os.path.join(self.backup_dir, entry))


class RestoreBackup(keras.callbacks.Callback):
    """Loads a backup's weights file (model and optimizer state) when `fit` starts, and
    says so in one line: the stage, the epoch it resumes from, the file.

    `fit` must be called with `initial_epoch=progress.initial_epoch`. The optimizer's
    variables exist by then when a distribution strategy is in use (Keras builds them
    in its scope); otherwise they are built here, so that their state loads too.
    """

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def on_train_begin(self, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.progress.weights)
        progress = self.progress
        print(f"stage {progress.stage}: resuming from epoch {progress.epoch + 1}, after epoch "
              f"{progress.epoch} (its backup: {progress.weights})")


__all__ = [
    "PROGRESS_FILE",
    "Progress",
    "RestoreBackup",
    "StageBackup",
    "done_path",
    "read_progress",
    "resume_point",
    "weights_name",
]
