"""`keras-inception demo` (the main job of `make demo`) in quick mode, offline."""

from __future__ import annotations

import json
import socket

from keras_inception.cli import main


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
    assert 0.0 <= report["accuracy"] <= 1.0
    assert f"Validation accuracy {report['accuracy']:.1%} (chance 20%)" in printed
    assert (tmp_path / "demo" / "best.keras").is_file()
