"""The one way this package writes a file or folder: staged, verified, then moved into place.

Every output (downloads, converted weights, exports, training outputs, benchmark
results) is written under a temporary name in a staging folder beside its
destination and renamed into place only when complete, so a reader never sees a
half-written file and a crash leaves the previous version intact. The staging
folder carries the writer's pid: a later write to the same destination removes
what a dead writer left behind. Files are created with the process' umask.
Replacing an existing destination (`overwrite=True`, `--overwrite`) follows one rule,
`check_replaceable`: only the command's own output is replaced, never a folder it did
not make, an input, the current folder, the home folder or the filesystem root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def _overwrite_option(arg: str) -> str:
    return "--overwrite" if arg.startswith("-") else "overwrite=True (--overwrite)"


# The file a command leaves in each folder it makes (explain's output folder, a SavedModel
# export): JSON naming the command and the entries it wrote there. What `overwrite` needs
# to replace a non-empty folder (see `check_replaceable`).
OUTPUT_MARKER = ".keras-inception-output"


def write_output_marker(folder: str | os.PathLike, command: str) -> str:
    """Records in `folder` that `command` made it, with the entries it holds now: all that
    a later overwrite by the same command may delete. Returns the marker's path."""
    folder = os.fspath(folder)
    written = sorted(name for name in os.listdir(folder) if name != OUTPUT_MARKER)
    path = os.path.join(folder, OUTPUT_MARKER)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"command": command, "written": written}, indent=2) + "\n")
    return path


def read_output_marker(folder: str | os.PathLike) -> dict | None:
    """`folder`'s marker, `{"command": str, "written": [names]}`; None if it has none or
    an unreadable one (such a folder is not known to be a command's output)."""
    try:
        with open(os.path.join(os.fspath(folder), OUTPUT_MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(marker, dict) and isinstance(marker.get("command"), str)
            and isinstance(marker.get("written"), list)):
        return None
    return marker


def _within(inner: str, outer: str) -> bool:
    """Whether the path `inner` is `outer` or lies below it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _spellings(path: str | os.PathLike) -> set[str]:
    """`path` as given (absolute) and resolved: a link and its target are both the path."""
    return {os.path.abspath(os.fspath(path)), os.path.realpath(path)}


def _meets(path: str, other: str | os.PathLike,
           relations: tuple[str, ...] = ("is", "holds", "is inside")) -> tuple[str, str] | None:
    """The first of `relations` between `path` and `other` over both spellings of each
    (`_spellings`): ("is" | "holds" | "is inside", the spelling of `other` it meets)."""
    for here in _spellings(other):
        for there in _spellings(path):
            found = {"is": here == there, "holds": _within(here, there),
                     "is inside": _within(there, here)}
            for relation in relations:
                if found[relation]:
                    return relation, here
    return None


def _protected_place(path: str) -> str | None:
    """Why the existing folder `path` is never replaced: it is the filesystem root, or is
    (or holds) the home folder or the current folder. None otherwise."""
    if any(os.path.dirname(p) == p for p in _spellings(path)):
        return "is the filesystem root"
    places = [("the home folder", os.path.expanduser("~"))]
    with contextlib.suppress(OSError):  # a working directory that was removed
        places.append(("the current folder", os.getcwd()))
    for what, place in places:
        met = _meets(path, place, ("is", "holds"))
        if met is not None:
            relation, spelling = met
            return f"is {what}" if relation == "is" else f"holds {what} ({spelling!r})"
    return None


def _input_conflict(path: str, inputs: Iterable[str | os.PathLike]) -> str | None:
    """How `path` meets one of the command's inputs (is it, holds it, lies inside it)."""
    for value in inputs:
        met = _meets(path, value)
        if met is not None:
            return f"{met[0]} an input of the command ({os.fspath(value)!r})"
    return None


def protected_reason(path: str | os.PathLike,
                     inputs: Iterable[str | os.PathLike] = ()) -> str | None:
    """Why `path` may never be replaced or emptied by an overwrite ("is the current
    folder", "holds an input of the command (...)"), or None: it is the filesystem root, is
    or holds the home folder or the current folder, or is, holds or lies inside an input."""
    return _protected_place(os.fspath(path)) or _input_conflict(os.fspath(path), inputs)


def _named(command: str | None) -> str:
    return f"`{command}`" if command else "a command of keras_inception"


def _folder_conflict(path: str, command: str | None) -> str | None:
    """Why the folder `path` is not `command`'s own output, or None: empty, or marked by
    `command` and holding nothing its marker does not list."""
    try:
        entries = set(os.listdir(path)) - {OUTPUT_MARKER}
    except OSError as e:
        return f"cannot be listed ({e.strerror or e})"
    if not entries:
        return None
    marker = read_output_marker(path)
    if marker is None:
        return f"is a folder that {_named(command)} did not make (it has no {OUTPUT_MARKER})"
    if marker["command"] != command:
        return f"was made by `{marker['command']}`, not by {_named(command)}"
    extra = sorted(entries - {str(name) for name in marker["written"]})
    if extra:
        shown = ", ".join(extra[:4]) + (f", ... ({len(extra)} entries)" if len(extra) > 4 else "")
        return f"holds entries that {_named(command)} did not write there ({shown})"
    return None


def check_replaceable(
    path: str | os.PathLike, *, command: str | None = None, kind: str | None = None,
    inputs: Iterable[str | os.PathLike] = (), arg: str = "path",
) -> None:
    """Refuses (FileExistsError, one line naming `arg`) to replace the existing `path` unless
    it is `command`'s own output: the one rule of `overwrite=True` (`--overwrite`), so that
    replacing an output never deletes what the command did not make. `path` is refused when

    * it is the filesystem root, or is or holds the home folder or the current folder;
    * it is, holds, or lies inside one of `inputs` (the files and folders the command reads);
    * `kind` says the command writes the other kind ("file" or "folder"; None: either);
    * it is a folder that is neither empty nor marked by `command`: `OUTPUT_MARKER`, which
      `staged_path(..., command=...)` leaves in every folder it writes, must name `command`,
      and list every entry of the folder (a file added there since is kept: the folder is
      refused). Without a `command`, only an empty folder is replaced.

    A file passes otherwise: `check_destination` has checked that its name ends with the
    suffix of what the command writes (`.tflite`, `.npy`, ...), so it is that kind of file.
    """
    path = os.path.abspath(os.fspath(path))
    reason = protected_reason(path, inputs)
    if reason is None and os.path.isdir(path):
        reason = (f"is a folder, but {_named(command)} writes a file here" if kind == "file"
                  else _folder_conflict(path, command))
    elif reason is None and kind == "folder":
        reason = f"is a file, but {_named(command)} writes a folder here"
    if reason is not None:
        raise FileExistsError(f"{_overwrite_option(arg)} does not replace `{arg}` {path!r}: "
                              f"it {reason}. Choose another `{arg}`.")


def checked_path(path: str | os.PathLike, *, suffix: str | None = None, arg: str = "path") -> str:
    """Absolute `path`, refused (one line naming `arg`) unless it ends with `suffix`."""
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"`{arg}` must end with {suffix!r}; received {_received(arg, path)}.")
    return path


def check_destination(
    path: str | os.PathLike, *, overwrite: bool, suffix: str | None = None, arg: str = "path",
    command: str | None = None, kind: str | None = None,
    inputs: Iterable[str | os.PathLike] = (),
) -> str:
    """Absolute `path` after the checks every write makes before any work starts.

    An existing `path` is refused without `overwrite`, and with it unless
    `check_replaceable(path, command=..., kind=..., inputs=...)` allows it. `arg` names
    `path` in the errors: a Python argument (`"path"`), or the command line's option
    (`"--out"`), whose errors then speak of `--overwrite` instead of `overwrite=True`.
    """
    path = checked_path(path, suffix=suffix, arg=arg)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"`{arg}` already exists: {path!r}. Pass "
                              f"{_overwrite_option(arg)} to replace it.")
    if os.path.lexists(path):
        check_replaceable(path, command=command, kind=kind, inputs=inputs, arg=arg)
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
    command: str | None = None,
    kind: str | None = None,
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it to `path` if the block succeeds.

    The block writes a file or a folder at the yielded path. If the block raises,
    or writes nothing, nothing is moved and the staging folder is removed. An
    existing `path` is replaced only with `overwrite=True`, only when
    `check_replaceable` allows it (checked first, and again just before the move),
    and it is kept if the final rename fails. With a `command`, a folder gets
    `OUTPUT_MARKER`, naming it and listing what the block wrote, so that the same command
    may replace it.
    """
    rule = dict(command=command, kind=kind, inputs=tuple(inputs), arg=arg)
    path = check_destination(path, overwrite=overwrite, suffix=suffix, **rule)
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
        if command is not None and os.path.isdir(staged) and not os.path.islink(staged):
            write_output_marker(staged, command)
        previous = os.path.join(workdir, "previous")
        if os.path.lexists(path):
            if not overwrite:  # created by someone else while we worked
                raise FileExistsError(f"`{arg}` appeared while writing it: {path!r}.")
            check_replaceable(path, **rule)  # what it holds may have changed meanwhile
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
    "OUTPUT_MARKER",
    "check_destination",
    "check_replaceable",
    "check_writable_folder",
    "check_writable_parent",
    "checked_path",
    "looks_like_path",
    "make_folder",
    "pid_alive",
    "protected_reason",
    "read_output_marker",
    "remove_stale_staging",
    "staged_path",
    "write_atomic",
    "write_json_atomic",
    "write_output_marker",
    "write_text_atomic",
]
