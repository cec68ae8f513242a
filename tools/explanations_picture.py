"""Writes docs/explanations.png, the picture of Grad-CAM in docs/explanations.md, and the credits
of the photos it shows (docs/explanations_credits.txt).

The model is the one `make demo` trains (runs/demo/best.keras: the FaceNet backbone with a
flowers head), explained on validation photos of the embedded `flowers_sample` (CC BY 2.0,
credits in keras_inception/assets/flowers_sample/CREDITS.txt): four it classifies right
and two it gets wrong, each photo above its Grad-CAM overlay.

    make demo && .venv/bin/python tools/explanations_picture.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "runs" / "demo"
SAMPLE = REPO / "keras_inception" / "assets" / "flowers_sample"
PICTURE = REPO / "docs" / "explanations.png"
CREDITS = REPO / "docs" / "explanations_credits.txt"
RIGHT, WRONG = 4, 2


def _credit_lines(paths: list[Path]) -> list[str]:
    lines = (SAMPLE / "CREDITS.txt").read_text(encoding="utf-8").splitlines()
    return [next(line for line in lines if f"{p.parent.name}/{p.name}" in line) for p in paths]


def main() -> int:
    from keras_inception import explain
    from keras_inception.preprocessing import load_image, preprocess_input
    from keras_inception.saving import load_model
    from keras_inception.train.run_folder import recorded_crop_pct

    if not (RUN / "best.keras").is_file():
        print(f"{RUN / 'best.keras'} not found: run `make demo` first.", file=sys.stderr)
        return 2
    model = load_model(RUN / "best.keras")
    names = json.loads((RUN / "class_names.json").read_text())
    size, crop_pct = int(model.input_shape[1]), recorded_crop_pct(str(RUN / "best.keras"))
    photos = sorted((SAMPLE / "val").glob("*/*.jpg"))
    pixels = np.stack([load_image(str(p), size, crop_pct=crop_pct) for p in photos])
    predicted = model.predict(preprocess_input(pixels), verbose=0).argmax(-1)
    truth = np.array([names.index(p.parent.name) for p in photos])
    right, wrong = np.flatnonzero(predicted == truth), np.flatnonzero(predicted != truth)
    picked = [*right[np.linspace(0, len(right) - 1, RIGHT).astype(int)], *wrong[:WRONG]]
    layer = explain.feature_tap_names(model)[-2]  # stride 16 (the last tap's map is 4x4)
    maps = explain.grad_cam(model, preprocess_input(pixels[picked]), layer=layer)

    fig, axes = plt.subplots(2, len(picked), figsize=(2.1 * len(picked), 4.5))
    for column, (i, heat) in enumerate(zip(picked, maps, strict=True)):
        ok = predicted[i] == truth[i]
        axes[0, column].imshow(pixels[i].astype("uint8"))
        axes[0, column].set_title(f"{names[predicted[i]]}" + ("" if ok else
                                  f"\n(is {names[truth[i]]})"),
                                  color="green" if ok else "red", fontsize=9)
        axes[1, column].imshow(explain.overlay(pixels[i], heat))
        for ax in axes[:, column]:
            ax.axis("off")
    fig.suptitle(f"Grad-CAM of the demo model at {layer} (green: right, red: wrong)",
                 fontsize=10)
    PICTURE.parent.mkdir(exist_ok=True)
    fig.savefig(PICTURE, dpi=72, bbox_inches="tight")
    CREDITS.write_text("Photos of docs/explanations.png, left to right (CC BY 2.0, "
                       "https://creativecommons.org/licenses/by/2.0/):\n"
                       + "\n".join(_credit_lines([photos[i] for i in picked])) + "\n",
                       encoding="utf-8")
    print(f"{PICTURE.relative_to(REPO)}: {len(picked)} photos, layer {layer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
