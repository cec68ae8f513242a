"""Test hook: a training run that SIGKILLs itself at the end of a chosen epoch.

`install(epoch)` wraps `keras_inception.train.callbacks.stage_callbacks` so that every
stage's `fit` ends its callbacks with `CrashAfterEpoch(epoch)`: the process kills itself
with SIGKILL at the end of epoch `epoch` (numbered from 1 over the whole run, as in
`history.csv`), after every other callback of that epoch ran, the backup included.
`install_from_env()` reads the epoch from $KERAS_INCEPTION_CRASH_AFTER_EPOCH.

As a script it is the command line with the hook installed from that variable:

    KERAS_INCEPTION_CRASH_AFTER_EPOCH=1 python tests/support/crash.py train --out ...

The resume tests crash a run at a known point this way, then rerun it without the hook.
Nothing of this is in the package: its callbacks have no test hook.
"""

from __future__ import annotations

import os
import signal
import sys

import keras

CRASH_AFTER_EPOCH_ENV = "KERAS_INCEPTION_CRASH_AFTER_EPOCH"
SCRIPT = os.path.abspath(__file__)


class CrashAfterEpoch(keras.callbacks.Callback):
    """SIGKILLs this process at the end of epoch `epoch` (1-based)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def hook_from_env() -> list:
    """[CrashAfterEpoch(N)] when $KERAS_INCEPTION_CRASH_AFTER_EPOCH=N is set, else []."""
    value = os.environ.get(CRASH_AFTER_EPOCH_ENV, "").strip()
    if not value:
        return []
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"${CRASH_AFTER_EPOCH_ENV} (a test hook) must be an epoch number >= 1; "
            f"received {value!r}.")
    return [CrashAfterEpoch(int(value))]


def install(hooks: list) -> None:
    """Appends `hooks` (callbacks) to every stage's callbacks, after the backup."""
    from keras_inception.train import callbacks

    original = callbacks.stage_callbacks

    def with_hooks(*args, **kwargs):
        return [*original(*args, **kwargs), *hooks]

    callbacks.stage_callbacks = with_hooks


def install_from_env() -> None:
    """`install(hook_from_env())` when the variable is set."""
    hooks = hook_from_env()
    if hooks:
        install(hooks)


if __name__ == "__main__":
    from keras_inception.cli import main

    install_from_env()
    sys.exit(main(sys.argv[1:]))
