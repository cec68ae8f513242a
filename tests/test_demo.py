"""`keras-inception demo` (the main job of `make demo`) in quick mode, offline."""

from __future__ import annotations

import json
import socket

import pytest

from keras_inception.cli import main
from keras_inception.train import evaluate


def test_demo_quick_offline(tmp_path, monkeypatch, capsys):
    def refuse(self, address, *args, **kwargs):
        raise OSError("network access blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("KERAS_INCEPTION_QUICK", "1")
    monkeypatch.setenv("KERAS_INCEPTION_DEMO_OUT", str(tmp_path / "demo"))
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    assert "ImageNet weights unavailable" in printed and "from scratch" in printed
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["model"] == "inception_resnet_v2" and report["num_images"] == 20
    assert f"Validation accuracy {report['accuracy']:.1%} (chance 20%)" in printed
    # The reported accuracy is that of the saved model, recomputed from the file.
    again = evaluate(str(tmp_path / "demo" / "best.keras"), "flowers_sample", max_per_class=4)
    assert again["num_images"] == 20 and again["crop_pct"] == report["crop_pct"]
    assert again["confusion_matrix"] == report["confusion_matrix"]
    assert again["accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
