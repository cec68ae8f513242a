"""Stage 1 of the transfer recipe on cached backbone features: the same head as the
uncached stage, one backbone pass, and a resumed run that reuses the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_inception import train as training
from keras_inception.saving import load_model

MODEL, SIZE = "inception_resnet_v1", 75


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


RESUME = textwrap.dedent("""
    import json, sys
    from keras_inception import train as training
    report = training.train(training.TrainConfig(
        out=sys.argv[1], model="inception_resnet_v1", image_size=75, batch_size=8, epochs=3,
        stage1_epochs=3, weights=sys.argv[2], max_per_class=4, verbose=0))
    print("REPORT " + json.dumps(report["stage1"]))
""")


def test_resumed_stage1_reuses_the_cache(tmp_path, base_weights):
    out = tmp_path / "run"
    crashed = subprocess.run(
        [sys.executable, "-c", RESUME, str(out), base_weights], capture_output=True, text=True,
        timeout=600, env={**os.environ, "KERAS_INCEPTION_CRASH_AFTER_EPOCH": "1"})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    caches = list((out / "cache").glob("features-*.npz"))
    assert len(caches) == 1
    mtime = caches[0].stat().st_mtime_ns
    resumed = subprocess.run([sys.executable, "-c", RESUME, str(out), base_weights],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stage1 = json.loads(next(line[7:] for line in resumed.stdout.splitlines()
                             if line.startswith("REPORT ")))
    assert stage1["features"] == "cached" and stage1["backbone_passes"] == 0  # no second pass
    assert caches[0].stat().st_mtime_ns == mtime
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
