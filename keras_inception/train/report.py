"""The outputs of a finished run: `report.json`, `curves.png`, `confusion.png`, a summary.

No `matplotlib.use("Agg")` here: it would switch a notebook's inline backend off.
Without a display matplotlib picks Agg by itself.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_inception import files
from keras_inception.train.config import REPORT_FILE

CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"


def _save_figure(fig, path: str) -> None:
    from matplotlib import pyplot as plt

    try:
        files.write_atomic(path, lambda staged: fig.savefig(staged, format="png", dpi=100))
    finally:
        plt.close(fig)


def split_label(report: dict[str, Any]) -> str:
    """"validation" or "training": the split a report's accuracy was measured on."""
    return "training" if report.get("split") == "train" else "validation"


def write_outputs(out: str, report: dict[str, Any], history: list[dict]) -> None:
    """report.json, curves.png and confusion.png (each written atomically)."""
    files.write_json_atomic(os.path.join(out, REPORT_FILE), report)
    _save_figure(plot_curves(history, f"{report['model']} on {report['data']}"),
                 os.path.join(out, CURVES_FILE))
    title = (f"{report['model']}: {split_label(report)} accuracy {report['accuracy']:.1%} "
             f"({report['num_images']} images)")
    _save_figure(plot_confusion(np.asarray(report["confusion_matrix"]), report["class_names"],
                                title), os.path.join(out, CONFUSION_FILE))


def plot_curves(history: list[dict], title: str = "Training curves"):
    """Loss and accuracy per epoch (train and validation), stage changes marked."""
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
    fig.suptitle(title)
    epochs = [r["epoch"] for r in history]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            key = prefix + metric
            if history and key in history[0]:
                ax.plot(epochs, [r[key] for r in history], style, label=key, markersize=3)
        for prev, row in zip(history[:-1], history[1:], strict=True):
            if row["stage"] != prev["stage"]:
                ax.axvline(prev["epoch"] + 0.5, color="gray", linestyle=":",
                           label=f"start of {row['stage']}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        if metric == "accuracy":
            ax.set_ylim(0.0, 1.0)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(confusion: np.ndarray, class_names: list[str], title: str = "Confusion matrix"):
    """The confusion matrix (rows: true class, columns: predicted class), with counts
    written in white on dark cells and in black on light ones."""
    from matplotlib import pyplot as plt

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(2.0 + 0.6 * n, 1.6 + 0.6 * n))
    ax.imshow(confusion, cmap="Blues", vmin=0)
    ax.set_title(title)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        dark = confusion.max() / 2 if confusion.size and confusion.max() > 0 else 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if confusion[i, j] > dark else "black")
    fig.tight_layout()
    return fig


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    how = f" ({report['recipe']}, weights: {report['weights']})" if "recipe" in report else ""
    lines = [
        f"{report['model']}{how} on "
        f"{report['data']} at {report['image_size']}px: {split_label(report)} accuracy "
        f"{report['accuracy']:.1%} on {report['num_images']} images"
        + (f", top-5 {report['top5_accuracy']:.1%}" if "top5_accuracy" in report else "")
        + (f" (best epoch {report['best_epoch']}, {report['train_seconds']:.0f} s)"
           if "best_epoch" in report else ""),
    ]
    for name, acc in report["per_class_accuracy"].items():
        lines.append(f"  {name:<20s} {'n/a' if acc is None else f'{acc:.1%}'}")
    return "\n".join(lines)


__all__ = ["plot_confusion", "plot_curves", "split_label", "summary", "write_outputs"]
