"""keras_inception.training and `keras-inception train/evaluate`.

Tiny scale throughout: Inception-ResNet-v1 at 75 px on 4 images per class, with a
randomized "pretrained" base saved once per session so that the transfer recipe's
stages run (a frozen base also keeps the graphs small and fast to trace).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_inception import training
from keras_inception.cli import main

MODEL = "inception_resnet_v1"
SIZE = 75
REPO = Path(__file__).resolve().parents[1]


def _bn_stats(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        v.path: np.array(v.numpy())
        for layer in training.base_of(model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    }


def _weights_of(model: keras.Model, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in model.weights if v.path.split("/")[-2] in names}


def test_transfer_recipe_keeps_batchnorm_frozen(base_weights):
    from keras_inception import data as data_lib

    config = training.TrainConfig(out="unused", model=MODEL, image_size=SIZE, epochs=2,
                                  stage1_epochs=1, weights=base_weights)
    images = data_lib.load_data("flowers_sample", max_per_class=3)
    ds = data_lib.make_pipeline(images.train, image_size=SIZE, num_classes=5, batch_size=15,
                                training=True)
    model, stages, _ = training.plan(config, images.num_classes)
    assert [(s.name, s.start, s.end) for s in stages] == [("head", 0, 1), ("fine_tune", 1, 2)]
    bn_before = _bn_stats(model)
    assert len(bn_before) > 100
    base = training.base_of(model)
    head = model.get_layer("predictions").kernel.numpy().copy()

    # Stage 1: only the head trains; BN statistics are bit-for-bit unchanged.
    stages[0].prepare(model)
    model.compile(**stages[0].compile_args(1))
    assert len(model.trainable_weights) == 2
    model.fit(ds, epochs=1, verbose=0)
    after = _bn_stats(model)
    assert all(np.array_equal(after[k], bn_before[k]) for k in bn_before)
    assert np.max(np.abs(model.get_layer("predictions").kernel.numpy() - head)) > 0

    # Stage 2: the top blocks train, BatchNorm stays frozen and in inference mode
    # (test_cli_train_end_to_end checks the statistics after a real stage 2).
    stages[1].prepare(model)
    model.compile(**stages[1].compile_args(1))
    bn_layers = [la for la in base.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert not any(la.trainable for la in bn_layers)
    trainable = {v.path for v in model.trainable_weights}
    assert any("block8_5_conv" in p for p in trainable)
    assert not any("conv_1a" in p or "moving" in p for p in trainable)
    # Inference mode: the features are the same whether the model trains or not.
    x = next(iter(ds))[0][:4]
    feats = keras.Model(model.input, model.get_layer("head_dropout").input)
    assert np.allclose(np.asarray(feats(x, training=True)), np.asarray(feats(x, training=False)),
                       atol=1e-6)
    after = _bn_stats(model)
    assert all(np.array_equal(after[k], bn_before[k]) for k in bn_before)


def test_paper_recipe_configuration():
    config = training.TrainConfig(out="unused", model=MODEL, recipe="paper", image_size=SIZE,
                                  epochs=100)
    assert config.resolved_weights() is None
    model, stages, note = training.plan(config, 5)
    assert [s.name for s in stages] == ["paper"] and note == "from scratch"
    assert model.get_layer("dropout").rate == pytest.approx(0.2)
    args = stages[0].compile_args(1000)
    opt, loss = args["optimizer"], args["loss"]
    assert isinstance(opt, keras.optimizers.RMSprop)
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 1.0)
    assert opt.global_clipnorm == 2.0 and opt.clipnorm is None
    assert opt.weight_decay == pytest.approx(4e-5)
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.9999)
    schedule = opt._learning_rate
    lr = {e: float(schedule(e * 1000)) for e in (0, 1, 2, 3, 4)}
    assert lr[0] == pytest.approx(0.045) and lr[1] == pytest.approx(0.045)
    assert lr[2] == pytest.approx(0.045 * 0.94) and lr[3] == pytest.approx(0.045 * 0.94)
    assert lr[4] == pytest.approx(0.045 * 0.94**2)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.label_smoothing == pytest.approx(0.1)
    # Label smoothing in action: a perfect one-hot prediction still has a loss.
    y = np.eye(5, dtype="float32")[:2]
    assert float(loss(y, np.clip(y, 1e-7, 1.0))) > 0.1
    # EMA weights are swapped in before validation and saving, i.e. first.
    model.compile(**args)
    callbacks = training.stage_callbacks(model, "paper", "/nonexistent")
    assert isinstance(callbacks[0], keras.callbacks.SwapEMAWeights)
    assert callbacks[0].swap_on_epoch
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds.index("HistoryCSV") < kinds.index("BestModel") < kinds.index("BackupAndRestore")
    # Short runs: the average spans about the last tenth of the steps.
    assert training.paper_optimizer(10, 5).ema_momentum == pytest.approx(1 - 10 / 50)
    with pytest.raises(ValueError, match="paper.*from scratch.*imagenet"):
        training.TrainConfig(out="x", model=MODEL, recipe="paper", weights="imagenet").validate()


def test_config_errors():
    with pytest.raises(ValueError, match="recipe.*'fancy'"):
        training.TrainConfig(out="x", recipe="fancy").validate()
    with pytest.raises(ValueError, match="mixed_precision.*'float8'"):
        training.TrainConfig(out="x", mixed_precision="float8").validate()
    with pytest.raises(ValueError, match="image_size"):
        training.TrainConfig(out="x", image_size=32).validate()
    with pytest.raises(ValueError, match="Unknown model 'resnet'"):
        training.TrainConfig(out="x", model="resnet").validate()


def test_cli_train_end_to_end(tmp_path, base_weights, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", MODEL, "--image-size", str(SIZE), "--batch-size", "10",
                 "--epochs", "2", "--stage1-epochs", "1", "--weights", base_weights,
                 "--max-per-class", "4", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Epoch 2/2" in printed and "validation accuracy" in printed
    for name in ("best.keras", "history.csv", "report.json", "curves.png", "confusion.png",
                 "class_names.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("curves.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert not (out / "backup").exists()
    rows = training.read_history(str(out / "history.csv"))
    assert [(r["epoch"], r["stage"]) for r in rows] == [(1, "head"), (2, "fine_tune")]
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == 20 and report["image_size"] == SIZE
    assert report["class_names"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert "top5_accuracy" not in report  # 5 classes
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (5, 5) and confusion.sum() == 20
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 20)
    assert report["best_epoch"] in (1, 2)
    assert report["accuracy"] == pytest.approx(
        max(r["val_accuracy"] for r in rows), abs=1e-6)

    # The saved model reloads and evaluates to the reported accuracy.
    again = training.evaluate(str(out / "best.keras"), "flowers_sample", max_per_class=4)
    assert again["accuracy"] == pytest.approx(report["accuracy"], abs=1e-6)
    assert again["confusion_matrix"] == report["confusion_matrix"]
    assert main(["evaluate", str(out / "best.keras"), "--max-per-class", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == \
        pytest.approx(report["accuracy"], abs=1e-6)
    # `predict` on the trained model prints the dataset's class names.
    from keras_inception.images import sample_image_path

    assert main(["predict", str(out / "best.keras"), sample_image_path()]) == 0
    ranked = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:6]]
    assert sorted(ranked) == report["class_names"]
    # End to end, the base's BatchNorm statistics are those of the loaded weights.
    import keras_inception  # noqa: F401

    trained = keras.saving.load_model(str(out / "best.keras"))
    start = training.build_transfer_model(MODEL, 5, SIZE, base_weights)
    before, after = _bn_stats(start), _bn_stats(trained)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # ... while the top blocks moved only if the best epoch is stage 2's.
    top = "block8_5_conv"
    moved = np.max(np.abs(training.base_of(trained).get_layer(top).kernel.numpy()
                          - training.base_of(start).get_layer(top).kernel.numpy()))
    assert (moved > 0) == (report["best_epoch"] == 2)


def test_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    def refuse(self, address, *args, **kwargs):
        raise OSError("network access blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    code = main(["train", "--model", "inception_resnet_v2", "--image-size", str(SIZE),
                 "--weights", "imagenet", "--max-per-class", "2", "--epochs", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Could not download pretrained weights" in err and "weights=PATH" in err
    code = main(["train", "--model", MODEL, "--weights", "imagenet", "--out", str(tmp_path)])
    assert code == 2
    assert "No public ImageNet weights exist for Inception-ResNet-v1" in capsys.readouterr().err


def test_resume_after_sigkill(tmp_path, base_weights):
    """Kill the process after epoch 1 of 3, restart: history.csv has epochs 1, 2, 3."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "keras_inception.cli", "train", "--model", MODEL,
           "--image-size", str(SIZE), "--batch-size", "10", "--epochs", "3",
           "--stage1-epochs", "3", "--weights", base_weights, "--max-per-class", "4",
           "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    backup = out / "backup" / "head" / "training_metadata.json"
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    try:
        # Wait until epoch 1 is logged and backed up.
        while time.monotonic() < deadline and first.poll() is None:
            if backup.is_file() and json.loads(backup.read_text() or "{}").get("epoch") == 1:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1]
    assert not (out / "report.json").exists()

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert json.loads((out / "report.json").read_text())["epochs"] == 3
