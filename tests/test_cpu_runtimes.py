"""benchmarks/cpu_runtimes.py at toy size: one round, Inception-ResNet-v1 at 75 px, batches 1
and 2, the runtimes installed here that export quickly; the table it writes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("cpu_runtimes", REPO / "benchmarks" / "cpu_runtimes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_runtimes_runs_at_toy_size_and_writes_its_table(tmp_path):
    import ai_edge_litert  # noqa: F401  (extras of `make venv`: fail, never skip)
    import openvino  # noqa: F401
    script = _script()
    runtimes = ["keras_tf", "openvino_f32", "litert_f32"]
    json_path, results = tmp_path / "r.json", tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    assert script.main(["--models", "inception_resnet_v1", "--image-size", "75", "--batch-sizes",
                        "1", "2", "--rounds", "1", "--runtimes", *runtimes, "--no-agreement",
                        "--json", str(json_path), "--results", str(results)]) == 0
    report = json.loads(json_path.read_text())
    rows = report["rows"]
    candidates = [*runtimes, script.REFERENCE]
    assert [(row["batch"], row["runtime"]) for row in rows] == [
        (batch, name) for batch in (1, 2) for name in candidates]
    for batch in (1, 2):
        at = {row["runtime"]: row for row in rows if row["batch"] == batch}
        reference = at[script.REFERENCE]["img_per_s"]
        assert at[script.REFERENCE]["ratio_to_reference"] == pytest.approx(1.0)
        gemm = at["keras_tf"]["gemm_gflops"] * 1e9
        for row in at.values():
            assert row["img_per_s"] > 0 and row["gemm_gflops"] > 0 and len(row["img_per_s_rounds"]) == 1
            assert row["ratio_to_reference"] == pytest.approx(row["img_per_s"] / reference)
            assert row["gemm_gflops"] * 1e9 == pytest.approx(gemm)  # one GEMM per batch size
            assert row["fraction_of_peak"] > 0
        # The same network in every runtime: the same flops per image, so fractions of
        # peak stand in the ratio of img/s.
        assert at["openvino_f32"]["fraction_of_peak"] / at["keras_tf"]["fraction_of_peak"] == \
            pytest.approx(at["openvino_f32"]["img_per_s"] / at["keras_tf"]["img_per_s"])
        assert at["openvino_f32"]["size_mb"] > 1 and at["litert_f32"]["export_s"] > 0
    assert report["fastest"].keys() == {"inception_resnet_v1 batch 1", "inception_resnet_v1 batch 2"}
    assert set(report["fastest"].values()) <= set(runtimes)
    assert report["cpu"]["cpus"] >= 1 and "load_average" in report
    text = results.read_text()
    assert text.startswith("# Benchmark results\n") and "## CPU runtimes side by side" in text
    table = re.findall(r"^\| inception_resnet_v1 \((?:75|299) px\) \| (\d) \| (\w+) \| ([0-9.]+) \| "
                       r"([0-9.]+) \|", text, re.M)
    assert [(int(b), name) for b, name, _, _ in table] == [
        (row["batch"], row["runtime"]) for row in rows]
    for (_, _, img_s, ratio), row in zip(table, rows, strict=True):
        assert float(img_s) == pytest.approx(row["img_per_s"], abs=0.006)
        assert float(ratio) == pytest.approx(row["ratio_to_reference"], abs=0.006)
    assert "goal >= 1x" in text  # openvino_f32 against Keras/TF at batch 1
