"""The transfer recipe on cached outputs of the frozen base: stage 1 (head on pooled
features) and stage 2 (top blocks + head on the activations below them) give the same
weights and validation predictions as the uncached stages, one backbone pass per split,
and a resumed run reuses the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support import crash

from keras_inception import train as training
from keras_inception.registry import model_names
from keras_inception.saving import load_model
from keras_inception.train import callbacks as train_callbacks
from keras_inception.train import feature_cache, recipes

MODEL, SIZE = "inception_resnet_v1", 75
TESTS = os.path.dirname(os.path.abspath(__file__))


def _config(out, base_weights, **changes) -> training.TrainConfig:
    values = dict(out=str(out), model=MODEL, image_size=SIZE, batch_size=8, epochs=3,
                  stage1_epochs=3, weights=base_weights, max_per_class=4, augment=False,
                  verbose=0)
    values.update(changes)
    return training.TrainConfig(**values)


def _head(path) -> list[np.ndarray]:
    return [np.asarray(w) for w in load_model(path).get_layer("predictions").get_weights()]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.slow
def test_cached_features_train_the_same_head(tmp_path, base_weights):
    uncached = training.train(_config(tmp_path / "uncached", base_weights, feature_views=0))
    cached = training.train(_config(tmp_path / "cached", base_weights, feature_views=1))
    assert {k: uncached["stage1"][k] for k in ("features", "views")} == {
        "features": "computed every epoch", "views": 0}
    assert cached["stage1"]["seconds"] > 0
    assert cached["stage1"]["features"] == "cached" and cached["stage1"]["backbone_passes"] == 2
    assert (tmp_path / "cached" / cached["stage1"]["cache"]).is_file()
    rows_u = training.read_history(str(tmp_path / "uncached" / "history.csv"))
    rows_c = training.read_history(str(tmp_path / "cached" / "history.csv"))
    assert [r["epoch"] for r in rows_c] == [1, 2, 3]
    for ru, rc in zip(rows_u, rows_c, strict=True):
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            assert rc[key] == pytest.approx(ru[key], rel=1e-3, abs=1e-6), (ru["epoch"], key)
    assert uncached["best_epoch"] == cached["best_epoch"]
    for a, b in zip(_head(tmp_path / "cached" / "best.keras"),
                    _head(tmp_path / "uncached" / "best.keras"), strict=True):
        assert _rel(a, b) <= 1e-3
    # The same validation predictions, from the saved full models.
    assert cached["confusion_matrix"] == uncached["confusion_matrix"]
    assert cached["accuracy"] == pytest.approx(uncached["accuracy"], abs=1e-9)


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[5])
    from support import crash
    from keras_inception import train as training
    crash.install_from_env()
    report = training.train(training.TrainConfig(
        out=sys.argv[1], model="inception_resnet_v1", image_size=75, batch_size=8,
        epochs=int(sys.argv[3]), stage1_epochs=int(sys.argv[4]), weights=sys.argv[2],
        max_per_class=4, verbose=0))
    print("REPORT " + json.dumps({"stage1": report["stage1"], "stage2": report.get("stage2")}))
""")


def _run_resume_script(out, base_weights, epochs: int, stage1_epochs: int, crash_after=None):
    env = {k: v for k, v in os.environ.items() if k != crash.CRASH_AFTER_EPOCH_ENV}
    if crash_after is not None:
        env[crash.CRASH_AFTER_EPOCH_ENV] = str(crash_after)
    return subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(out), base_weights,
                           str(epochs), str(stage1_epochs), TESTS], capture_output=True,
                          text=True, timeout=600, env=env)


def _reported(proc) -> dict:
    return json.loads(next(line[7:] for line in proc.stdout.splitlines()
                           if line.startswith("REPORT ")))


@pytest.mark.subprocess
@pytest.mark.slow
def test_resumed_stage1_reuses_the_cache(tmp_path, base_weights):
    """Also: the best epoch's model is on disk from the epoch it happened, in the stage on
    cached features too, and survives the interruption: best.keras evaluates to the
    reported accuracy, which is the history's at `best_epoch`."""
    out = tmp_path / "run"
    crashed = _run_resume_script(out, base_weights, 3, 3, crash_after=1)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    caches = list((out / "cache").glob("features-*.npz"))
    assert len(caches) == 1
    mtime = caches[0].stat().st_mtime_ns
    # Killed at the end of epoch 1 of the head stage on cached features: its model is there.
    first_best = training.evaluate(str(out / "best.keras"), "flowers_sample", batch_size=8,
                                   max_per_class=4)
    (row,) = training.read_history(str(out / "history.csv"))
    assert first_best["accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-6)
    resumed = _run_resume_script(out, base_weights, 3, 3)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stage1 = _reported(resumed)["stage1"]
    assert stage1["features"] == "cached" and stage1["backbone_passes"] == 0  # no second pass
    assert caches[0].stat().st_mtime_ns == mtime
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    report = json.loads((out / "report.json").read_text())
    best_row = next(r for r in rows if r["epoch"] == report["best_epoch"])
    assert report["accuracy"] == pytest.approx(best_row["val_accuracy"], abs=1e-6)
    again = training.evaluate(str(out / "best.keras"), "flowers_sample", batch_size=8,
                              max_per_class=4)
    assert again["accuracy"] == pytest.approx(report["accuracy"], abs=1e-6)


def test_an_unreadable_cache_is_computed_again_with_one_warning(tmp_path):
    """A truncated cache file (a zip cut short), random bytes or wrong arrays: computed
    again, with one warning naming the file, never a traceback."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((4, 4, 3))
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    images = np.random.default_rng(0).uniform(-1, 1, (6, 4, 4, 3)).astype("float32")
    labels = np.eye(2, dtype="float32")[[0, 1, 0, 1, 0, 1]]
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    cache = feature_cache.FeatureCache(str(tmp_path), "key")
    whole = cache.load_or_compute(base, [ds], ds)
    assert cache.backbone_passes == 2
    content = open(cache.path, "rb").read()
    for damaged in (content[: len(content) // 2], b"\x00" * 100 + os.urandom(1000)):
        with open(cache.path, "wb") as f:
            f.write(damaged)
        again = feature_cache.FeatureCache(str(tmp_path), "key")
        with pytest.warns(feature_cache.CacheWarning) as caught:
            arrays = again.load_or_compute(base, [ds], ds)
        record = [w for w in caught if issubclass(w.category, feature_cache.CacheWarning)]
        assert len(record) == 1 and cache.path in str(record[0].message), [
            str(w.message) for w in caught]
        assert "\n" not in str(record[0].message) and "computing it again" in str(
            record[0].message)
        assert again.backbone_passes == 2
        np.testing.assert_allclose(arrays["train"], whole["train"])
        # Written whole again: the next run reads it.
        reread = feature_cache.FeatureCache(str(tmp_path), "key")
        reread.load_or_compute(base, [ds], ds)
        assert reread.backbone_passes == 0


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [(name, 96) for name in model_names()])
def test_split_base_composes_to_the_base(name, size):
    """bottom then top is the base, and the top holds exactly the fine-tuned layers."""
    import keras
    from support.helpers import randomize_weights

    model = recipes.build_transfer_model(name, 5, size, None)
    randomize_weights(model, seed=3)
    split = feature_cache.split_base(model, name)
    assert split is not None
    network, first = recipes.fine_tune_network(recipes.base_of(model), name)
    assert split.at == network.layers[first].name
    assert split.at.startswith(recipes.get_spec(name).fine_tune_from)
    # The top's layers are the network's from the cut on (plus its new input).
    top_layers = {id(layer) for layer in split.top.layers[1:]}
    assert top_layers == {id(layer) for layer in network.layers[first:]}
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    whole = keras.ops.convert_to_numpy(recipes.base_of(model)(x, training=False))
    cut = split.bottom(x, training=False)
    assert tuple(cut.shape[1:]) == split.cut_shape
    parts = keras.ops.convert_to_numpy(split.top(cut, training=False))
    assert _rel(parts, whole) <= 1e-5
    assert split.bytes_for(10) == 40 * int(np.prod(split.cut_shape))


def _keep_last_epoch(monkeypatch):
    """best.keras holds every run's last epoch (each epoch counts as better), so two
    runs' end states can be compared."""
    original = train_callbacks.BestModel.on_epoch_end

    def always(self, epoch, logs=None):
        self.best = -np.inf
        original(self, epoch, logs)

    monkeypatch.setattr(train_callbacks.BestModel, "on_epoch_end", always)


def _fine_tuned(path) -> list[np.ndarray]:
    """The weights of the last Inception-ResNet block and of the head."""
    model = load_model(path)
    base = recipes.base_of(model)
    layers = [layer for layer in base.layers if layer.name.startswith("block8_")]
    assert any(layer.trainable_weights for layer in layers)
    return [np.asarray(w) for layer in layers for w in layer.get_weights()] + _head(path)


@pytest.mark.slow
def test_cached_activations_fine_tune_the_same_model(tmp_path, base_weights, monkeypatch):
    _keep_last_epoch(monkeypatch)
    runs = {}
    for name, views in (("uncached", 0), ("cached", 1)):
        runs[name] = training.train(_config(tmp_path / name, base_weights, epochs=5,
                                            feature_views=views))
    uncached, cached = runs["uncached"], runs["cached"]
    assert uncached["stage2"] == {"activations": "computed every epoch", "views": 0,
                                  "reason": "feature cache off",
                                  "seconds": uncached["stage2"]["seconds"]}
    stage2 = cached["stage2"]
    assert stage2["activations"] == "cached" and stage2["views"] == 1
    assert stage2["from_layer"].startswith("block8_")
    # One pass over train and val, shared by both stages.
    assert cached["stage1"]["backbone_passes"] == 2 and stage2["backbone_passes"] == 2
    assert stage2["cache"] == cached["stage1"]["cache"]
    with np.load(tmp_path / "cached" / stage2["cache"]) as arrays:
        assert arrays["train_cut"].shape == (1, 20, *stage2["activation_shape"])
        assert arrays["val_cut"].shape == (20, *stage2["activation_shape"])
    rows_u = training.read_history(str(tmp_path / "uncached" / "history.csv"))
    rows_c = training.read_history(str(tmp_path / "cached" / "history.csv"))
    assert [r["stage"] for r in rows_c] == ["head"] * 3 + ["fine_tune"] * 2
    for ru, rc in zip(rows_u, rows_c, strict=True):
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            assert rc[key] == pytest.approx(ru[key], rel=1e-3, abs=1e-6), (ru["epoch"], key)
    # Fine-tuning moved the top blocks, the same way in both runs.
    start = recipes.build_transfer_model(MODEL, 5, SIZE, base_weights)
    moved = [np.asarray(w) for layer in recipes.base_of(start).layers
             if layer.name.startswith("block8_") for w in layer.get_weights()]
    tuned_c = _fine_tuned(tmp_path / "cached" / "best.keras")
    tuned_u = _fine_tuned(tmp_path / "uncached" / "best.keras")
    assert max(_rel(a, b) for a, b in zip(tuned_c, moved, strict=False)) > 1e-4
    for a, b in zip(tuned_c, tuned_u, strict=True):
        assert _rel(a, b) <= 1e-3
    # The same validation predictions: the report of the cached run evaluates the
    # model in memory on the cached activations, the uncached one on the images.
    assert cached["confusion_matrix"] == uncached["confusion_matrix"]
    assert cached["accuracy"] == pytest.approx(uncached["accuracy"], abs=1e-9)
    reloaded = training.evaluate(str(tmp_path / "cached" / "best.keras"), "flowers_sample",
                                 batch_size=8, max_per_class=4)
    assert reloaded["confusion_matrix"] == cached["confusion_matrix"]


@pytest.mark.slow
def test_fine_tune_cache_off_runs_the_backbone(tmp_path, base_weights):
    report = training.train(_config(tmp_path / "run", base_weights, epochs=4, stage1_epochs=3,
                                    fine_tune_cache=False))
    assert report["stage1"]["features"] == "cached"
    assert report["stage2"]["activations"] == "computed every epoch"
    assert report["stage2"]["reason"] == "fine_tune_cache off"
    # Stage 1's cache holds pooled features only.
    with np.load(tmp_path / "run" / report["stage1"]["cache"]) as arrays:
        assert "train_cut" not in arrays.files


@pytest.mark.slow
def test_activations_over_the_memory_budget_fall_back(tmp_path, base_weights, monkeypatch,
                                                      capsys):
    monkeypatch.setattr(feature_cache, "activation_budget", lambda: 1000)
    report = training.train(_config(tmp_path / "run", base_weights, epochs=4, stage1_epochs=3))
    assert report["stage2"]["activations"] == "computed every epoch"
    assert "more than 0.0 GiB" in report["stage2"]["reason"]
    assert "stage fine_tune: the backbone runs every epoch (its activations would take" in (
        capsys.readouterr().out)


@pytest.mark.subprocess
@pytest.mark.slow
def test_resumed_stage2_reuses_the_cache(tmp_path, base_weights):
    out = tmp_path / "run"
    crashed = _run_resume_script(out, base_weights, 4, 2, crash_after=3)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert "fine-tuning the top blocks (from block8_" in crashed.stdout
    caches = list((out / "cache").glob("features-*.npz"))
    assert len(caches) == 1
    mtime = caches[0].stat().st_mtime_ns
    resumed = _run_resume_script(out, base_weights, 4, 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "stage head: already finished" in resumed.stdout
    stage2 = _reported(resumed)["stage2"]
    assert stage2["activations"] == "cached"
    assert stage2["backbone_passes"] == 0  # no second pass
    assert caches[0].stat().st_mtime_ns == mtime
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
