"""The output folder of a training run: one run at a time, resumed only by the same run,
never overwritten once finished unless asked.

* `locked(out)`: a lock file holding the owner's pid; a second run on the same folder
  is refused while the owner lives, and a lock left by a dead process is taken over.
* `run.json` records what the run is (the `RUN_IDENTITY` settings) when it starts and
  that it finished when it ends. `check(out, config, overwrite)` then tells a rerun of
  a finished run (returned as its report, nothing changed), a resume of the same run,
  and a folder holding another run (refused, with the settings that differ).
* `overwrite=True` removes the previous run's outputs (only the files a run writes), by the
  rule of every command's `--overwrite` (`files.protected_reason`): not in the current
  folder, the home folder or the filesystem root, and never an input of the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

from keras_inception import files
from keras_inception.saving import CLASS_NAMES_FILE
from keras_inception.train.config import (
    BACKUP_DIR,
    BEST_MODEL,
    HISTORY_FILE,
    LOCK_FILE,
    LOGS_DIR,
    REPORT_FILE,
    RUN_FILE,
    RUN_IDENTITY,
    SAMPLE_NAME,
    TFDS_PREFIX,
    TrainConfig,
    evaluation_crop_pct,
)

# Everything a run writes into its folder (removed by overwrite=True).
RUN_OUTPUTS = (BEST_MODEL, CLASS_NAMES_FILE, HISTORY_FILE, REPORT_FILE, "curves.png",
               "confusion.png", LOGS_DIR, BACKUP_DIR, RUN_FILE)


class RunFolderError(ValueError):
    """The output folder is in use, or holds another or an unfinished foreign run."""


@contextlib.contextmanager
def locked(out: str) -> Iterator[None]:
    """Holds `out`'s lock for the duration of the block (see the module docstring)."""
    path = os.path.join(out, LOCK_FILE)
    for _ in range(100):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    owner = int(f.read().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and files.pid_alive(owner):
                raise RunFolderError(
                    f"--out {out!r} is in use by another training run (pid {owner}); wait for "
                    "it to finish or choose another --out."
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise RunFolderError(f"Could not take the lock {path!r}.")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path, encoding="utf-8") as f:
                mine = f.read().strip() == str(os.getpid())
            if mine:
                os.remove(path)


def resolved_data(data: str) -> str:
    """`--data` as a run compares it: a folder by its resolved path (the same folder given
    as an absolute and a relative path is the same data; a relative path from another
    working directory is not), the embedded sample and `tfds:NAME` by name."""
    data = os.fspath(data)
    if data == SAMPLE_NAME or data.startswith(TFDS_PREFIX):
        return data
    return os.path.realpath(os.path.expanduser(data))


def identity(config: TrainConfig) -> dict[str, Any]:
    """The settings that define a run (resuming with other values is a different run)."""
    values = {name: getattr(config, name) for name in RUN_IDENTITY}
    values["weights"] = config.resolved_weights()
    values["image_size"] = config.input_size()
    values["data"] = resolved_data(config.data)
    return values


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _inputs(config: TrainConfig) -> list[str]:
    """The files and folders a run reads: a `--data` folder and a `--weights` file."""
    data = resolved_data(config.data)
    paths = [] if data == SAMPLE_NAME or data.startswith(TFDS_PREFIX) else [data]
    weights = config.resolved_weights()
    return paths + ([weights] if files.looks_like_path(weights) else [])


def _check_clearable(out: str, present: list[str], config: TrainConfig) -> None:
    """Refuses `overwrite` where removing the run's outputs (`present`, names in
    RUN_OUTPUTS) could delete what is not the run's: `out` is (or holds) the current or
    the home folder, or is the root; an output is, holds or lies inside an input."""
    inputs = _inputs(config)
    for target, among in [(out, ()), *((os.path.join(out, name), inputs) for name in present)]:
        reason = files.protected_reason(target, among)
        if reason is not None:
            raise RunFolderError(
                f"--overwrite does not clear --out {out!r}: {target!r} {reason}. Choose "
                "another --out (nothing was changed).")


def check(out: str, config: TrainConfig, *, overwrite: bool, chief: bool) -> dict | None:
    """Before a run: the report of a finished identical run (nothing to do), or None to
    train (fresh or resumed). Raises RunFolderError for another run's folder."""
    run_path = os.path.join(out, RUN_FILE)
    present = [name for name in RUN_OUTPUTS if os.path.lexists(os.path.join(out, name))]
    if overwrite:
        _check_clearable(out, present, config)
        if chief:
            for name in present:
                target = os.path.join(out, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.remove(target)
        return None
    if not os.path.isfile(run_path):
        if present:
            raise RunFolderError(
                f"--out {out!r} holds outputs of another run ({', '.join(present[:4])}) but no "
                f"{RUN_FILE}; pass --overwrite to replace them, or choose another --out."
            )
        return None
    try:
        run = _read_json(run_path)
        recorded = run["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunFolderError(
            f"{run_path!r} is damaged; pass --overwrite to start again in {out!r}."
        ) from None
    wanted = identity(config)
    differences = [f"{k}: {recorded.get(k)!r} in the folder, {wanted[k]!r} now"
                   for k in RUN_IDENTITY if recorded.get(k) != wanted[k]]
    if differences:
        raise RunFolderError(
            f"--out {out!r} holds another run ({'; '.join(differences[:4])}). Pass --overwrite "
            "to replace it, or choose another --out (nothing was changed)."
        )
    report_path = os.path.join(out, REPORT_FILE)
    if run.get("finished") and os.path.isfile(report_path):
        return _read_json(report_path)
    return None


def recorded_crop_pct(model_path: str) -> float | None:
    """The evaluation crop of the run that wrote the `.keras` file `model_path`, read from
    the run's folder: `report.json` once finished, else `run.json` (the settings recorded
    when it started). None for a file that is not a run's model."""
    folder, name = os.path.split(os.path.abspath(model_path))
    try:
        report = _read_json(os.path.join(folder, REPORT_FILE))
        if report.get("model_file", BEST_MODEL) == name and report.get("crop_pct") is not None:
            return float(report["crop_pct"])
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # no report yet (or a damaged one): the run's recorded settings say it
    if name != BEST_MODEL:
        return None
    try:
        recorded = _read_json(os.path.join(folder, RUN_FILE))["config"]
        return evaluation_crop_pct(recorded["model"], recorded.get("weights"),
                                   recorded.get("crop_pct"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_start(out: str, config: TrainConfig) -> None:
    files.write_json_atomic(os.path.join(out, RUN_FILE),
                            {"config": identity(config), "finished": False,
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def record_finish(out: str) -> None:
    path = os.path.join(out, RUN_FILE)
    run = _read_json(path)
    run.update(finished=True, ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
    files.write_json_atomic(path, run)


__all__ = ["RUN_OUTPUTS", "RunFolderError", "check", "identity", "locked", "record_finish",
           "record_start", "recorded_crop_pct", "resolved_data"]
