"""Export destinations: `keras_inception.files.staged_path` plus what exporting adds.

`files.staged_path` writes the artifact in a staging folder beside the destination
(`.NAME.PID-N.partial`) and moves it into place only when the export succeeded;
a later write to the same destination removes what a killed writer left there.
On top of it, `staged_export`

* checks the destination first, with one-line errors that name the path and say
  what to do (a file where a folder is expected and the reverse, a parent that is a
  file, a missing or unwritable folder);
* names the command "export" to `files.check_replaceable`: `overwrite=True` replaces a
  SavedModel folder only if an export made it (the `files.OUTPUT_MARKER` that
  `staged_path` leaves in it lists what it wrote; `tf.saved_model.load` ignores it);
* keeps every temporary file of the converters (Keras' LiteRT export, the TFLite
  converter, tf2onnx all create them through `tempfile`) inside the staging
  folder, so that an export leaves nothing in the system's temporary folder, not
  even when it is killed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Literal

from keras_inception.files import checked_path, staged_path

# The command an export's folders are marked with (the command line's `export` too).
EXPORT_COMMAND = "export"


class DestinationError(OSError, ValueError):
    """A destination that cannot be written to. An `OSError`, and a `ValueError` (a bad
    argument) so that callers reporting bad arguments in one line report it too."""


# `tempfile.tempdir` and TMPDIR are process-wide: one export redirects them at a time.
_TEMPDIR_LOCK = threading.RLock()


@contextlib.contextmanager
def temporary_files_inside(folder: str) -> Iterator[str]:
    """Points `tempfile` (and TMPDIR, for native code and child processes) at a new
    folder `folder/tmp` for the duration of the block; restores both afterwards."""
    tmp = os.path.join(folder, "tmp")
    os.mkdir(tmp)
    with _TEMPDIR_LOCK:
        previous_tempdir = tempfile.tempdir
        previous_env = os.environ.get("TMPDIR")
        tempfile.tempdir = tmp
        os.environ["TMPDIR"] = tmp
        try:
            yield tmp
        finally:
            tempfile.tempdir = previous_tempdir
            if previous_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous_env


def _check_kind(path: str, kind: str, what: str, arg: str) -> None:
    if kind == "folder" and os.path.lexists(path) and not os.path.isdir(path):
        raise DestinationError(
            f"`{arg}` {path!r} is a file, but {what} is a folder: remove the file or choose "
            "another path."
        )
    if kind == "file" and os.path.isdir(path):
        raise DestinationError(
            f"`{arg}` {path!r} is a folder, but {what} is a file: choose a file path such as "
            f"{os.path.join(path, 'model' + os.path.splitext(path)[1])!r}."
        )


def _check_parent(path: str, create_parents: bool, arg: str) -> None:
    parent = os.path.dirname(path)
    if os.path.isdir(parent):
        return
    ancestor = parent
    while not os.path.lexists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
        raise DestinationError(
            f"Cannot export to {path!r}: {ancestor!r} is a file, not a folder. Choose a "
            f"destination inside a folder for `{arg}`."
        )
    if not create_parents:
        raise FileNotFoundError(
            f"The directory of `{arg}` does not exist: {parent!r}. Create it first, or pass "
            "create_parents=True (the command line creates it)."
        )


@contextlib.contextmanager
def staged_export(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    kind: Literal["file", "folder"],
    what: str,
    suffix: str | None = None,
    create_parents: bool = False,
    arg: str = "path",
) -> Iterator[str]:
    """`files.staged_path` for an export of `kind` ("file" or "folder"; `what` names
    it in errors, e.g. "a SavedModel"), with the destination checked first and
    `tempfile` pointed inside the staging folder while the block runs."""
    # The suffix first; existence and what may be replaced are checked by staged_path.
    path = checked_path(path, suffix=suffix, arg=arg)
    _check_kind(path, kind, what, arg)
    _check_parent(path, create_parents, arg)
    with contextlib.ExitStack() as stack:
        try:
            staged = stack.enter_context(staged_path(
                path, overwrite=overwrite, suffix=suffix, create_parents=create_parents, arg=arg,
                command=EXPORT_COMMAND, kind=kind,
            ))
        except (FileExistsError, FileNotFoundError, ValueError):
            raise
        except OSError as e:  # an unwritable folder: files' message names it and what to do
            raise DestinationError(str(e)) from None
        stack.enter_context(temporary_files_inside(os.path.dirname(staged)))
        yield staged


__all__ = ["EXPORT_COMMAND", "DestinationError", "staged_export", "temporary_files_inside"]
