"""Builds keras_inception/assets/flowers_sample from tf_flowers_small.

Picks a seeded subset (40 train + 10 val images per class), downscales each photo
so its short side is 160 px, and writes CREDITS.txt with the photographers' CC BY
credit line of exactly the chosen files. Run from the repository root:

    .venv/bin/python tools/make_flowers_sample.py [--source ../shared/datasets/tf_flowers_small]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "keras_inception" / "assets" / "flowers_sample"
COUNTS = {"train": 40, "val": 10}
SHORT_SIDE = 160
SEED = 2016

HEADER = """\
flowers_sample: 250 photos (5 classes, 40 train + 10 val each) from the TensorFlow flowers
dataset, downscaled to a short side of {size} px by tools/make_flowers_sample.py.
All images are licensed under the Creative Commons Attribution 2.0 license:
https://creativecommons.org/licenses/by/2.0/
The photographers are listed below; thanks to all of them for making their work available.
Changes: the images were resized and re-encoded as JPEG (quality 85).

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REPO.parent / "shared/datasets/tf_flowers_small"))
    args = parser.parse_args()
    source = Path(args.source)
    credits = {}
    for line in (source / "LICENSE.txt").read_text(encoding="utf-8").splitlines():
        key = line.split(" ", 1)[0]
        if "/" in key and " CC-BY by " in line:
            credits[key] = line

    rng = random.Random(SEED)
    staging = Path(tempfile.mkdtemp(prefix=".flowers_sample-", dir=TARGET.parent))
    lines = []
    try:
        for split, count in COUNTS.items():
            for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
                files = sorted(p for p in class_dir.iterdir() if f"{class_dir.name}/{p.name}" in credits)
                for path in sorted(rng.sample(files, count)):
                    out = staging / split / class_dir.name / path.name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with Image.open(path) as image:
                        image = image.convert("RGB")
                        scale = SHORT_SIDE / min(image.size)
                        size = (round(image.width * scale), round(image.height * scale))
                        image.resize(size, Image.Resampling.BICUBIC).save(out, quality=85)
                    lines.append(f"{split}/{credits[f'{class_dir.name}/{path.name}']}")
        (staging / "CREDITS.txt").write_text(
            HEADER.format(size=SHORT_SIDE) + "\n".join(lines) + "\n", encoding="utf-8"
        )
        # Replace the previous sample only once the new one is complete.
        if TARGET.exists():
            shutil.rmtree(TARGET)
        os.replace(staging, TARGET)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(p.stat().st_size for p in TARGET.rglob("*") if p.is_file())
    print(f"wrote {len(lines)} images to {TARGET} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
