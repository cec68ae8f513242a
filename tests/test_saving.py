"""`.keras` files reload in a fresh process with safe mode on; configs round-trip."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_inception as ki
from keras_inception.export import fuse_batchnorm
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


@pytest.mark.subprocess
@pytest.mark.slow
def test_keras_files_reload_in_fresh_process(tmp_path, small_models):
    x = np.random.default_rng(5).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    paths, expected = [], {}
    for name, model in small_models.items():
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        paths.append(path)
        expected[path] = model.predict(x, verbose=0)  # bit-exact: the same graph as the reload's
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(tmp_path / "x.npy"), *paths],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    for path in paths:
        np.testing.assert_array_equal(np.asarray(outputs[path], np.float32), expected[path])


@pytest.mark.slow
def test_config_round_trip(small_models):
    x = np.random.default_rng(6).uniform(-1, 1, (1, 96, 96, 3)).astype("float32")
    for model in small_models.values():
        clone = keras.Model.from_config(model.get_config())
        assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
        clone.set_weights(model.get_weights())
        np.testing.assert_allclose(clone(x), model(x), atol=1e-6)
        assert not any(isinstance(layer, keras.layers.Lambda) for layer in clone.layers)


@pytest.mark.slow
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


# Loads the files with Keras' own functions, after importing keras and keras_inception in
# the order given: nothing registers the layers by hand.
KERAS_LOAD_SCRIPT = """
import json, sys
first, files = sys.argv[1], sys.argv[2:]
if first == "keras_inception":
    import keras_inception
    assert "keras" not in sys.modules and "keras_inception.layers" not in sys.modules
    import keras
else:
    import keras
    import keras_inception
import numpy as np
registered = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("keras_inception>"))
out = {}
for i, path in enumerate(files):
    load = keras.saving.load_model if i % 2 == 0 else keras.models.load_model
    model = load(path, safe_mode=True)
    x = np.load(path + ".x.npy")
    out[path] = [np.asarray(model.predict(x, verbose=0)).tolist(),
                 sorted({type(layer).__name__ for layer in model.layers})]
print(json.dumps([registered, out]))
"""


@pytest.fixture(scope="module")
def package_keras_files(module_tmp_path) -> dict[str, np.ndarray]:
    """`.keras` files holding each registered layer of the package, with their outputs:
    a FaceNet at 75 px that standardises its input (ScaledResidual, FaceStandardization,
    L2Normalize) and a model whose BatchNorm was folded (FoldedBatchNorm)."""
    folder = module_tmp_path
    rng = np.random.default_rng(11)
    facenet = ki.FaceNet(weights=None, input_shape=(75, 75, 3), embedding_dim=8,
                         include_preprocessing=True)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    folded = fuse_batchnorm(keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)))
    expected = {}
    for model, x in ((facenet, rng.uniform(0, 255, (2, 75, 75, 3))),
                     (folded, rng.uniform(-1, 1, (2, 8, 8, 3)))):
        path = str(folder / f"{model.name}.keras")
        model.save(path)
        x = x.astype("float32")
        np.save(path + ".x.npy", x)
        expected[path] = np.asarray(model(x, training=False))
    return expected


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("first", ["keras_inception", "keras"])
def test_keras_own_load_model_after_import_keras_inception(first, package_keras_files):
    """`import keras_inception` (before or after `import keras`) is enough for Keras' own
    `load_model` to read every file the package writes, in safe mode, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", KERAS_LOAD_SCRIPT, first, *package_keras_files],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    registered, outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert registered == [f"keras_inception>{name}" for name in sorted(
        ("DescribedModel", "FaceStandardization", "FoldedBatchNorm", "L2Normalize",
         "ScaledResidual"))]
    seen = set()
    for path, expected in package_keras_files.items():
        values, classes = outputs[path]
        np.testing.assert_allclose(np.asarray(values, np.float32), expected, rtol=1e-5, atol=1e-6)
        seen |= set(classes)
    assert {"FaceStandardization", "FoldedBatchNorm", "L2Normalize", "ScaledResidual"} <= seen
