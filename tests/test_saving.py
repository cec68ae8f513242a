"""`.keras` files reload in a fresh process with safe mode on; configs round-trip."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np

RELOAD_SCRIPT = """
import json, sys
import numpy as np
import keras
import keras_inception.layers  # registers ScaledResidual
out = {}
x = np.load(sys.argv[1])
for path in sys.argv[2:]:
    model = keras.saving.load_model(path, safe_mode=True)
    out[path] = np.asarray(model.predict(x, verbose=0)).tolist()
print(json.dumps(out))
"""


def test_keras_files_reload_in_fresh_process(tmp_path, small_models):
    x = np.random.default_rng(5).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    paths, expected = [], {}
    for name, model in small_models.items():
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        paths.append(path)
        expected[path] = model.predict(x, verbose=0)
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "x.npy"), *paths],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    for path in paths:
        np.testing.assert_array_equal(np.asarray(outputs[path], np.float32), expected[path])


def test_config_round_trip(small_models):
    x = np.random.default_rng(6).uniform(-1, 1, (1, 96, 96, 3)).astype("float32")
    for model in small_models.values():
        clone = keras.Model.from_config(model.get_config())
        assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
        clone.set_weights(model.get_weights())
        np.testing.assert_allclose(clone(x), model(x), atol=1e-6)
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in clone.layers)
