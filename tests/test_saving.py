"""`.keras` files reload in a fresh process with safe mode on; configs round-trip."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_inception.saving import load_weights

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


def test_load_weights_of_a_keras_archive_is_keras_own(tmp_path, small_models):
    """`saving.load_weights` (the member copied out of the zip, then loaded) gives
    bit-identical weights to Keras' `model.load_weights("x.keras")`; a zip that is not a
    .keras model is one clear error."""
    model = small_models["inception_resnet_v1"]
    path = tmp_path / "model.keras"
    model.save(path)
    expected = [np.array(w) for w in model.get_weights()]
    clone = keras.Model.from_config(model.get_config())
    load_weights(clone, path)
    assert all(np.array_equal(a, b) for a, b in zip(clone.get_weights(), expected, strict=True))
    keras_own = keras.Model.from_config(model.get_config())
    keras_own.load_weights(path)
    assert all(np.array_equal(a, b)
               for a, b in zip(keras_own.get_weights(), expected, strict=True))
    # A weights file (not a zip) goes to Keras unchanged.
    weights_file = tmp_path / "model.weights.h5"
    model.save_weights(weights_file)
    load_weights(clone, weights_file)
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(ValueError, match=r"other\.keras.*holds no model\.weights\.h5"):
        load_weights(clone, other)
