"""The three notebooks run end to end in quick mode (KERAS_INCEPTION_QUICK=1)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# What each notebook must print once it has run (besides raising no error).
EXPECTED = {
    "01_transfer_learning.ipynb": ["mode: quick", "validation accuracy", '"accuracy"'],
    "02_export_tflite.ipynb": ["mode: quick", "float32", "dynamic_int8", "top-1 agree"],
    "03_residual_scaling.ipynb": ["mode: quick", "residual, scale 1.0", "residual, scale 0.2",
                                  "non-residual"],
}
# Figures each notebook shows: curves, confusion matrix, prediction grid, ...
FIGURES = {"01_transfer_learning.ipynb": 3, "02_export_tflite.ipynb": 1,
           "03_residual_scaling.ipynb": 1}


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append(output["text"])
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k == "text/plain")
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_quick_mode(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_INCEPTION_QUICK", "1")
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    run_dir = tmp_path / "notebooks"
    run_dir.mkdir()
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(run_dir)}}).execute()
    text = _text(nb)
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: {expected!r} missing from the outputs"
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= FIGURES[name], f"{name}: {images} figures shown"
    assert "Traceback" not in text and not os.path.exists(run_dir / "runs")
