"""keras_inception.train and `keras-inception train/evaluate`.

Tiny scale throughout: Inception-ResNet-v1 at 75 px on 4 images per class, with a
randomized "pretrained" base saved once per session so that the transfer recipe's
stages run (a frozen base also keeps the graphs small and fast to trace).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from support import crash

from keras_inception import train as training
from keras_inception.cli import main
from keras_inception.train import resume

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


@pytest.mark.slow
def test_transfer_recipe_keeps_batchnorm_frozen(base_weights):
    from keras_inception.train import data as data_lib

    config = training.TrainConfig(out="unused", model=MODEL, image_size=SIZE, epochs=2,
                                  stage1_epochs=1, weights=base_weights)
    images = data_lib.load_data("flowers_sample", max_per_class=3)
    ds = data_lib.make_pipeline(images.train, image_size=SIZE, num_classes=5, batch_size=15,
                                training=True)
    plan = training.plan_stages(config, images.num_classes)
    model, stages = plan.model, plan.stages
    assert [(s.name, s.start, s.end) for s in stages] == [("head", 0, 1), ("fine_tune", 1, 2)]
    # The recipe hands the head over (no lookup by layer name elsewhere).
    assert plan.head.classifier is model.get_layer("predictions")
    assert plan.base is training.base_of(model)
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
    plan = training.plan_stages(config, 5)
    model, stages, note = plan.model, plan.stages, plan.weights_note
    assert [s.name for s in stages] == ["paper"] and note == "from scratch"
    assert stages[0].phase is training.Phase.PAPER
    assert model.get_layer("dropout").rate == pytest.approx(0.2)
    args = stages[0].compile_args(1000)
    opt, loss = args["optimizer"], args["loss"]
    assert isinstance(opt, keras.optimizers.RMSprop)
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 1.0)
    assert opt.global_clipnorm == 2.0 and opt.clipnorm is None
    assert opt.weight_decay == pytest.approx(4e-5)
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.9999)
    schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
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
    assert kinds.index("HistoryCSV") < kinds.index("BestModel") < kinds.index("StageBackup")
    assert kinds[-1] == "StageBackup" and "RestoreBackup" not in kinds  # nothing to restore
    # Short runs: the average spans about the last tenth of the steps.
    assert training.paper_optimizer(10, 5).ema_momentum == pytest.approx(1 - 10 / 50)
    with pytest.raises(ValueError, match="paper.*from scratch.*imagenet"):
        training.TrainConfig(out="x", model=MODEL, recipe="paper", weights="imagenet").validate()


def test_the_head_starts_from_the_seed_whatever_loading_the_base_drew():
    """Converting weights that are not cached yet builds models, which advances Keras'
    random state: the head must not depend on it (`make demo` gave 76 % on its first run
    and 68 % once the converted FaceNet was cached)."""
    from keras_inception.train import recipes

    kernels = []
    for extra_draws in (0, 3):
        keras.utils.set_random_seed(1)
        for _ in range(extra_draws):  # what loading the base may draw
            keras.random.normal((4,))
        _, _, head = recipes.transfer_parts(MODEL, 3, SIZE, None, seed=0)
        kernels.append(np.array(head.classifier.kernel))
    assert np.array_equal(*kernels)


def test_config_errors():
    with pytest.raises(ValueError, match="recipe.*'fancy'"):
        training.TrainConfig(out="x", recipe="fancy").validate()
    with pytest.raises(ValueError, match="mixed_precision.*'float8'"):
        training.TrainConfig(out="x", mixed_precision="float8").validate()
    with pytest.raises(ValueError, match="image_size"):
        training.TrainConfig(out="x", image_size=32).validate()
    with pytest.raises(ValueError, match="Unknown model 'resnet'"):
        training.TrainConfig(out="x", model="resnet").validate()


@pytest.mark.slow
def test_cli_train_end_to_end(tmp_path, base_weights, capsys, monkeypatch):
    from keras_inception.metadata import read_keras_metadata
    from keras_inception.train import loop

    def no_reload(*args, **kwargs):
        raise AssertionError("best.keras was read back although its weights are in memory")

    # The run wrote best.keras itself: the evaluation takes its weights from memory.
    monkeypatch.setattr(loop, "load_weights", no_reload)
    out = tmp_path / "run"
    code = main(["train", "--model", MODEL, "--image-size", str(SIZE), "--batch-size", "10",
                 "--epochs", "2", "--stage1-epochs", "1", "--weights", base_weights,
                 "--max-per-class", "4", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Epoch 2/2" in printed and "validation accuracy" in printed
    # Output that is not a terminal gets plain lines: no ANSI codes, no \r or \b redraws.
    assert not any(code in printed for code in ("\x1b[", "\r", "\b"))
    for name in ("best.keras", "history.csv", "report.json", "curves.png", "confusion.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # The class names, crop and size travel inside best.keras (no class_names.json beside it).
    saved = read_keras_metadata(out / "best.keras")
    assert saved.class_names == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert (saved.kind, saved.image_size, saved.input_scaling) == ("classifier", (SIZE, SIZE),
                                                                  "inception")
    assert saved.crop_pct == json.loads((out / "report.json").read_text())["crop_pct"]
    assert not (out / "class_names.json").exists()
    for name in ("curves.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every output honours the umask (no 0600 temporary files renamed into place).
    umask = os.umask(0)
    os.umask(umask)
    for path in [p for p in out.rglob("*") if p.is_file() and "logs" not in p.parts]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
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
    # A batch larger than the data is capped at it, saying so.
    capsys.readouterr()
    capped = training.evaluate(str(out / "best.keras"), "flowers_sample", max_per_class=4,
                               batch_size=100000)
    assert capped["confusion_matrix"] == report["confusion_matrix"]
    assert "--batch-size 100000 is more than the 20 images: using batches of 20" in (
        capsys.readouterr().err)
    assert main(["evaluate", "--model", str(out / "best.keras"), "--max-per-class", "4",
                 "--json"]) == 0

    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == \
        pytest.approx(report["accuracy"], abs=1e-6)
    # `predict` on the trained model prints the dataset's class names.
    from keras_inception.preprocessing import sample_image_path

    assert main(["predict", "--model", str(out / "best.keras"), sample_image_path()]) == 0
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
    _check_explanations_of_the_nested_network(out / "best.keras")


def _check_explanations_of_the_nested_network(path: Path) -> None:
    """train's best.keras holds its network as a nested layer: its Grad-CAM maps equal
    those of the same network and head built flat, with the same weights."""
    import keras_inception as ki
    from keras_inception import explain

    tuned = keras.saving.load_model(path)
    flat = ki.InceptionResNetV1(input_shape=(SIZE, SIZE, 3), classes=5)
    flat.set_weights([*training.base_of(tuned).get_weights(),
                      *tuned.get_layer("predictions").get_weights()])
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(flat(x, training=False)),
                               np.asarray(tuned(x, training=False)),
                               atol=1e-6)
    layer = "block35_5_ac"  # stride 8: 7x7 at 75 px (the last tap is 1x1)
    assert explain.resolve_layer(tuned, layer)[0] == (training.base_of(tuned).name, layer)
    for method in explain.METHODS:
        nested_maps = explain.grad_cam(tuned, x, target=[0, 3], layer=layer, method=method)
        assert nested_maps.std(axis=(1, 2)).max() > 0.01  # not only constant maps
        np.testing.assert_allclose(
            nested_maps, explain.grad_cam(flat, x, target=[0, 3], layer=layer, method=method),
            atol=1e-5)


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
    # A run that never started records nothing: the corrected command is not "another run".
    assert not (tmp_path / "run" / "run.json").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "cache"]
    code = main(["train", "--model", MODEL, "--weights", "imagenet", "--out", str(tmp_path)])
    assert code == 2
    assert "No public ImageNet weights exist for Inception-ResNet-v1" in capsys.readouterr().err


@pytest.mark.subprocess
@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, base_weights):
    """Killed at the end of epoch 1 of 3 (the crash hook), restarted: history.csv has
    epochs 1, 2, 3; the second run restores the head stage at epoch 2 and the next stage
    still starts at its own first epoch (3)."""
    out = tmp_path / "run"
    # The command line, with the test's crash hook installed (tests/support/crash.py).
    cmd = [sys.executable, crash.SCRIPT, "train", "--model", MODEL,
           "--image-size", str(SIZE), "--batch-size", "10", "--epochs", "3",
           "--stage1-epochs", "2", "--weights", base_weights, "--max-per-class", "4",
           "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != crash.CRASH_AFTER_EPOCH_ENV}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    first = subprocess.run(cmd, cwd=REPO, env={**env, crash.CRASH_AFTER_EPOCH_ENV: "1"},
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stdout[-3000:] + first.stderr[-3000:]
    # Keras numbers the epochs of each stage's fit up to the stage's end (2, then 3).
    assert "Epoch 1/2" in first.stdout and "Epoch 2/2" not in first.stdout
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1]
    assert not (out / "report.json").exists()
    assert resume.resume_point(resume.done_path(str(out / "backup"), "head"),
                               str(out / "backup" / "head")) == 1

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Epoch 1/2" not in second.stdout
    # It says so, once: the stage, the epoch it resumes from and the backup it restores.
    resumed = [line for line in second.stdout.splitlines() if "resuming" in line]
    assert resumed == [f"stage head: resuming from epoch 2, after epoch 1 (its backup: "
                       f"{out / 'backup' / 'head' / 'epoch-0001.weights.h5'})"], resumed
    assert "resuming" not in first.stdout
    assert second.stdout.count("Epoch 2/2") == 1 and second.stdout.count("Epoch 3/3") == 1
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["stage"] for r in rows] == ["head", "head", "fine_tune"]
    assert json.loads((out / "report.json").read_text())["epochs"] == 3
    assert not (out / "backup").exists()


def _tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def test_stage_backup_restores_weights_optimizer_and_epoch(tmp_path, monkeypatch):
    """The resume protocol with public Keras APIs only, on a tiny Dense model."""
    monkeypatch.delenv(crash.CRASH_AFTER_EPOCH_ENV, raising=False)
    x, y = np.arange(24, dtype="float32").reshape(8, 3) / 24, np.ones((8, 2), "float32")
    backup = tmp_path / "backup" / "stage"
    done = tmp_path / "backup" / "stage.done.weights.h5"
    assert resume.read_progress(str(backup)) is None
    assert resume.resume_point(str(done), str(backup)) == 0

    first = _tiny_model(0)
    first.fit(x, y, batch_size=4, epochs=2, verbose=0,
              callbacks=[resume.StageBackup(str(backup), "stage")])
    progress = resume.read_progress(str(backup))
    assert (progress.stage, progress.epoch) == ("stage", 2)
    # Only the latest weights file is kept, beside the record that names it.
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0002.weights.h5", "progress.json"]
    assert resume.resume_point(str(done), str(backup)) == 2
    umask = os.umask(0)
    os.umask(umask)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in backup.iterdir())

    class Seen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(w) for w in self.model.get_weights()]
            self.iterations = int(self.model.optimizer.iterations.numpy())

    second, seen = _tiny_model(1), Seen()
    history = second.fit(x, y, batch_size=4, epochs=3, initial_epoch=progress.initial_epoch,
                         verbose=0, callbacks=[resume.RestoreBackup(progress), seen])
    # Restored when fit starts: the weights and the optimizer's step count of epoch 2.
    for got, expected in zip(seen.weights, first.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert seen.iterations == int(first.optimizer.iterations.numpy()) == 4
    assert len(history.history["loss"]) == 1 and int(second.optimizer.iterations.numpy()) == 6
    # Nothing of the restore outlives that fit: the next one starts where it is told to.
    assert len(second.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]) == 2
    # A record that names a missing file is no resume point.
    (backup / "epoch-0002.weights.h5").unlink()
    assert resume.read_progress(str(backup)) is None
    done.write_bytes(b"")
    assert resume.resume_point(str(done), str(backup)) == -1


def test_crash_hook_is_off_unless_set(monkeypatch):
    monkeypatch.delenv(crash.CRASH_AFTER_EPOCH_ENV, raising=False)
    assert crash.hook_from_env() == []
    monkeypatch.setenv(crash.CRASH_AFTER_EPOCH_ENV, "2")
    (hook,) = crash.hook_from_env()
    assert isinstance(hook, crash.CrashAfterEpoch) and hook.epoch == 2
    monkeypatch.setenv(crash.CRASH_AFTER_EPOCH_ENV, "soon")
    with pytest.raises(ValueError, match="KERAS_INCEPTION_CRASH_AFTER_EPOCH.*'soon'"):
        crash.hook_from_env()


def test_the_package_has_no_crash_hook():
    """The crash hook lives in the tests: the package's callbacks know of no such thing."""
    from keras_inception.train import callbacks

    source = Path(callbacks.__file__).read_text()
    assert "SIGKILL" not in source and crash.CRASH_AFTER_EPOCH_ENV not in source
    assert not hasattr(callbacks, "CrashAfterEpoch")


@pytest.mark.slow
def test_each_stage_counts_its_own_metrics(base_weights):
    """The fine-tuning stage's first epoch counts only its training images: no metric
    object is shared with the head stage (whose validation pass it would otherwise add)."""
    config = training.TrainConfig(out="unused", model=MODEL, image_size=SIZE, epochs=2,
                                  stage1_epochs=1, weights=base_weights)
    stages = training.plan_stages(config, 2).stages
    # A model that always predicts class 0: every training label is 0 (accuracy 1), every
    # validation label is 1 (accuracy 0). Counting the validation images too gives 2/3.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(
        2, activation="softmax", kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([10.0, 0.0]))(inputs))
    x = np.ones((10, 3), "float32")
    train_y, val_y = np.eye(2, dtype="float32")[[0] * 10], np.eye(2, dtype="float32")[[1] * 5]
    accuracies = []
    for stage in stages:
        model.compile(**stage.compile_args(1))
        history = model.fit(x, train_y, batch_size=10, epochs=1, verbose=0,
                            validation_data=(x[:5], val_y))
        accuracies.append((history.history["accuracy"][0], history.history["val_accuracy"][0]))
    assert accuracies == [(1.0, 0.0), (1.0, 0.0)]


def test_batch_size_is_capped_at_the_training_images(tmp_path, capsys):
    from types import SimpleNamespace

    from keras_inception.train import loop

    config = training.TrainConfig(out=str(tmp_path), model=MODEL, image_size=SIZE,
                                  batch_size=100000, weights="none", max_per_class=4)
    dist = SimpleNamespace(num_replicas=1, check_even_split=lambda sizes: None)
    ctx = loop._context(config, dist, str(tmp_path))
    assert ctx.batch_size == ctx.data.train_count == 20
    assert "--batch-size 100000 is more than the 20 training images: using batches of 20" in (
        capsys.readouterr().out)


@pytest.mark.subprocess
def test_train_package_imports_keras_lazily():
    """The CLI's parser reads the run's choices without importing Keras or TensorFlow."""
    code = (
        "import sys\n"
        "from keras_inception.train.config import PRECISIONS, RECIPES, STRATEGIES\n"
        "from keras_inception.train.distribute import STRATEGIES as S, parse_tf_config\n"
        "import keras_inception.train as t\n"
        "assert S is STRATEGIES and sorted(t.__all__) == sorted(t._EXPORTS)\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
    # ... and the public names resolve on first use.
    assert training.train is training.loop.train
    assert training.TrainConfig is training.config.TrainConfig
