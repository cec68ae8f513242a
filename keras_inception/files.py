"""The one way this package writes a file or folder: staged, verified, then moved into place.

Every output (downloads, converted weights, exports, training outputs, benchmark
results) is written under a temporary name in a staging folder beside its
destination and renamed into place only when complete, so a reader never sees a
half-written file and a crash leaves the previous version intact. The staging
folder carries the writer's pid: a later write to the same destination removes
what a dead writer left behind. Files are created with the process' umask.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

_PARTIAL = ".partial"


def pid_alive(pid: int) -> bool:
    """Whether the process `pid` is running (this process included): the one check of the
    pids that staging folders and the training run's lock file carry."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_staging(parent: str, name: str) -> list[str]:
    """Removes the staging folders of `name` in `parent` left by writers that died."""
    removed = []
    prefix = f".{name}."
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(_PARTIAL)):
            continue
        pid_text = entry[len(prefix):-len(_PARTIAL)].split("-")[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            removed.append(entry)
    return removed


def _make_staging_dir(parent: str, name: str) -> str:
    base = os.path.join(parent, f".{name}.{os.getpid()}")
    for attempt in range(1000):
        candidate = f"{base}-{attempt}{_PARTIAL}"
        try:
            os.mkdir(candidate)  # honours the umask, unlike mkdtemp's 0700
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"Cannot create a staging folder beside {os.path.join(parent, name)!r}.")


def _received(arg: str, value: str) -> str:
    """`--out PATH` for a command-line option, `path='PATH'` for a Python argument."""
    return f"{arg} {value}" if arg.startswith("-") else f"{arg}={value!r}"


def check_destination(
    path: str | os.PathLike, *, overwrite: bool, suffix: str | None = None, arg: str = "path"
) -> str:
    """Absolute `path` after the checks every write makes before any work starts.

    `arg` names `path` in the errors: a Python argument (`"path"`), or the command line's
    option (`"--out"`), whose errors then speak of `--overwrite` instead of `overwrite=True`.
    """
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"`{arg}` must end with {suffix!r}; received {_received(arg, path)}.")
    if os.path.lexists(path) and not overwrite:
        how = "--overwrite" if arg.startswith("-") else "overwrite=True (--overwrite)"
        raise FileExistsError(f"`{arg}` already exists: {path!r}. Pass {how} to replace it.")
    if os.path.isdir(path) and os.path.ismount(path):
        raise ValueError(f"`{arg}` is a mount point and cannot be replaced: {path!r}.")
    return path


@contextlib.contextmanager
def staged_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = True,
    suffix: str | None = None,
    create_parents: bool = False,
    arg: str = "path",
) -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it to `path` if the block succeeds.

    The block writes a file or a folder at the yielded path. If the block raises,
    or writes nothing, nothing is moved and the staging folder is removed. An
    existing `path` is replaced only with `overwrite=True`, and it is kept if the
    final rename fails.
    """
    path = check_destination(path, overwrite=overwrite, suffix=suffix, arg=arg)
    parent, name = os.path.split(path)
    if create_parents:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise OSError(f"Cannot create the folder of `{arg}` {parent!r}: {e.strerror}.") from None
    elif not os.path.isdir(parent):
        raise FileNotFoundError(f"The folder of `{arg}` does not exist: {parent!r}.")
    remove_stale_staging(parent, name)
    try:
        workdir = _make_staging_dir(parent, name)
    except OSError as e:
        raise OSError(
            f"Cannot write into {parent!r} ({e.strerror or e}): choose a writable folder for `{arg}`."
        ) from None
    try:
        staged = os.path.join(workdir, name)
        yield staged
        if not os.path.lexists(staged):
            raise RuntimeError(f"Nothing was written for {path!r}.")
        previous = os.path.join(workdir, "previous")
        if os.path.lexists(path):
            if not overwrite:  # created by someone else while we worked
                raise FileExistsError(f"`{arg}` appeared while writing it: {path!r}.")
            os.replace(path, previous)
        try:
            os.replace(staged, path)
        except OSError:
            if os.path.lexists(previous):
                os.replace(previous, path)
            raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_atomic(path: str | os.PathLike, write: Callable[[str], Any], **kwargs: Any) -> str:
    """Calls `write(temporary_path)` and moves the result to `path` (see `staged_path`)."""
    with staged_path(path, **kwargs) as staged:
        write(staged)
    return os.path.abspath(os.fspath(path))


def write_text_atomic(path: str | os.PathLike, text: str, **kwargs: Any) -> str:
    """Writes `text` to `path` atomically."""

    def write(staged: str) -> None:
        with open(staged, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomic(path, write, **kwargs)


def write_json_atomic(path: str | os.PathLike, value: Any, **kwargs: Any) -> str:
    """Writes `value` as indented JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n", **kwargs)


def check_writable_parent(path: str | os.PathLike, arg: str = "path") -> None:
    """Refuses, before any work, a `path` whose folder (or the nearest existing folder above
    it, which would hold the created ones) cannot be written: one line naming `arg`."""
    check_writable_folder(os.path.dirname(os.path.abspath(os.fspath(path))), arg,
                          os.fspath(path))


def check_writable_folder(folder: str | os.PathLike, arg: str, value: str) -> None:
    """Refuses a `folder` (or, while it does not exist, the nearest existing folder above
    it) that is a file or cannot be written into: one line naming `arg` and `value`.

    The check writes (and removes) a small file there: permission bits do not tell, since
    root writes through them, and a read-only mount or an ACL may refuse anyway.
    """
    folder = os.path.abspath(os.fspath(folder))
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"`{arg}` is inside {folder!r}, which is a file, not a folder; "
                                 f"received {_received(arg, value)}.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".keras-inception-write-check.", dir=folder)
    except OSError as e:
        raise PermissionError(f"Cannot write into {folder!r} ({e.strerror or e}): choose a "
                              f"writable folder for `{arg}`; received {_received(arg, value)}.") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)


# The weights files the loaders read, by name: a `weights` value ending so (or holding a
# path separator) names a file, never a preset.
WEIGHTS_FILE_SUFFIXES = (".h5", ".hdf5", ".keras", ".weights.h5", ".pt", ".pth")


def looks_like_path(value: Any) -> bool:
    """Whether a `weights` value names a file (a path, or a weights file's name) rather than
    a preset such as "imagenet"."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (
        os.sep in value or bool(os.altsep and os.altsep in value)
        or value.endswith(WEIGHTS_FILE_SUFFIXES))


def make_folder(path: str | os.PathLike, what: str) -> str:
    """Creates the folder `path` (and its parents) if needed; an error is one line naming
    `what` (e.g. "the weights cache $KERAS_INCEPTION_CACHE") instead of an `[Errno N]`."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"Cannot use {what} {path!r}: it is a file, not a folder.") from None
    except OSError as e:
        raise OSError(f"Cannot create {what} {path!r}: {e.strerror or e}.") from None
    return path


__all__ = [
    "check_destination",
    "check_writable_folder",
    "check_writable_parent",
    "looks_like_path",
    "make_folder",
    "pid_alive",
    "remove_stale_staging",
    "staged_path",
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
