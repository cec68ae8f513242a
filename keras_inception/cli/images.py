"""Input images of the command line (`predict`, `embed`, `verify`): read once, a warning for
an image far smaller than the model's input, then the evaluation crop."""

from __future__ import annotations

import sys


def small_image_warning(path: str, height: int, width: int, size: int) -> str | None:
    """The warning for an image whose short side is under half the model's input size (it
    would be enlarged more than twice, and the model's answer on it means little)."""
    short = min(height, width)
    if short * 2 >= size:
        return None
    return (f"{path} is {width}x{height} pixels, less than half the model's {size}x{size} "
            f"input: it is enlarged {size / max(short, 1):.0f}x, so the result on it is "
            "unreliable")


def load_input_image(path: str, size: int, crop_pct: float, command: str):
    """`path` through the evaluation transform at `size` (float32 0-255), as `load_image`
    gives it; a far too small image gets one warning line on stderr, naming it."""
    from keras_inception.preprocessing import crop_pixels, read_image

    pixels = read_image(path)  # decoded once: its size for the warning, then the crop
    warning = small_image_warning(path, pixels.shape[0], pixels.shape[1], size)
    if warning is not None:
        print(f"keras-inception {command}: warning: {warning}", file=sys.stderr)
    return crop_pixels(pixels, size, crop_pct)


def load_input_images(paths: list[str], size: int, crop_pct: float,
                      command: str) -> tuple[list[tuple[int, str, object]], list[str]]:
    """([(position among `paths`, path, crop 0-255)], errors): a file that cannot be read
    is reported in `errors`, one line each, and the others are still loaded."""
    loaded, errors = [], []
    for position, path in enumerate(paths):
        try:
            loaded.append((position, path, load_input_image(path, size, crop_pct, command)))
        except (ValueError, OSError) as e:
            errors.append(" ".join(str(e).split()))
    return loaded, errors
