"""Face crops for FaceNet's notebooks, benchmarks and tests, with an MTCNN detector.

FaceNet takes face crops, not photos; finding faces is out of the library's scope. The
benchmarks, notebooks and tests crop the example photos with `faceie`, a pure-NumPy
MTCNN that ships its weights (a test-only dependency, GPL-3.0, from
`requirements-test.txt`: never a dependency of the package, imported only here, only
when called). For each photo the largest face found (upright search) is
cropped with a margin the way facenet-pytorch's `extract_face` does (`margin` in pixels
of the output, so the box grows by `margin / (size - margin)` of its size, clipped to
the photo), then resized to `size x size` RGB, float32 0-255.
"""

from __future__ import annotations

import os

import numpy as np

SIZE, MARGIN = 160, 32


def detect_largest_face(image) -> tuple[float, float, float, float] | None:
    """`(x1, y1, x2, y2)` of the largest face MTCNN finds in an RGB PIL image, or None."""
    try:
        from faceie import detect_faces
    except ImportError:
        raise ImportError(
            "Face cropping needs the faceie package (a test-only dependency): "
            "pip install -r requirements-test.txt"
        ) from None

    found = detect_faces(image, rotations=np.array([0.0]), extract_images=None)
    if len(found.probabilities) == 0:
        return None
    boxes = np.asarray(found.bounding_boxes, np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    x1, y1, x2, y2 = boxes[int(np.argmax(areas))]
    return float(x1), float(y1), float(x2), float(y2)


def face_crop(path: str | os.PathLike, size: int = SIZE, margin: int = MARGIN) -> np.ndarray | None:
    """The `(size, size, 3)` float32 0-255 crop of the largest face in a photo (None: no face)."""
    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    box = detect_largest_face(image)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    width, height = image.size
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    crop_box = (int(max(x1 - mx / 2, 0)), int(max(y1 - my / 2, 0)),
                int(min(x2 + mx / 2, width)), int(min(y2 + my / 2, height)))
    face = image.crop(crop_box).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(face, dtype=np.float32)


__all__ = ["MARGIN", "SIZE", "detect_largest_face", "face_crop"]
