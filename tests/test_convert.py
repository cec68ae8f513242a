"""Weight converters against the timm parity fixtures (../shared/fixtures/timm_parity).

Each fixture holds a timm state dict recipe (spec + seed, rebuilt by make_state.py),
an input batch and timm's outputs. The full-size models are built once per session
and reloaded from the fixture state by every test that changes them.
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.helpers import rel_l2, timm_parity_recipes

import keras_inception as ki
from keras_inception.cli import main as cli_main
from keras_inception.convert import (
    load_slim_checkpoint,
    load_timm_weights,
    read_state_dict,
    timm_key_map,
)
from keras_inception.convert.naming import SLIM, TIMM, naming_table
from keras_inception.features import feature_extractor
from keras_inception.models import get_builder
from keras_inception.presets import file_hash
from keras_inception.registry import classifier_names

# The networks that timm has (a parity fixture each in ../shared/fixtures/timm_parity).
BUILDERS = {name: get_builder(name) for name in classifier_names() if naming_table(TIMM, name)}
TOLERANCE = 1e-4


class Parity:
    """Lazily built fixture models, one per family, with their fixture data."""

    def __init__(self, shared_dir) -> None:
        self.folder, self.make_state = timm_parity_recipes(shared_dir)
        self._cache: dict[str, dict] = {}

    def __getitem__(self, name: str) -> dict:
        if name not in self._cache:
            spec = json.loads((self.folder / f"{name}.spec.json").read_text())
            size = spec["input_size"]
            model = BUILDERS[name](
                weights=None, input_shape=(size, size, 3), classes=spec["num_classes"],
                classifier_activation=None,
            )
            features = feature_extractor(model)
            self._cache[name] = {
                "spec": spec,
                "state": self.make_state.make_state(spec["params"], spec["seed"]),
                "expected": dict(np.load(self.folder / f"{name}.expected.npz")),
                "x": self.make_state.make_input(spec["seed"], spec["batch"], size),
                "model": model,
                "features": features,
                # One pass gives the logits and the five feature maps.
                "runner": keras.Model(model.input, [model.output, *features.outputs]),
            }
        return self._cache[name]

    def run(self, name: str) -> list[np.ndarray]:
        item = self[name]
        return [np.asarray(y) for y in item["runner"](item["x"], training=False)]


@pytest.fixture(scope="session")
def parity(shared_dir):
    return Parity(shared_dir)


def snapshot(model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


# --------------------------------------------------------------------------- timm parity


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_timm_parity_logits_and_features(parity, name):
    item = parity[name]
    load_timm_weights(item["model"], item["state"])
    logits, *features = parity.run(name)
    expected = item["expected"]
    assert rel_l2(logits, expected["logits"]) <= TOLERANCE

    assert len(features) == 5
    for i, (fmap, info) in enumerate(zip(features, item["spec"]["feature_info"], strict=True)):
        assert fmap.shape == tuple(expected[f"feature{i}_shape"])
        assert rel_l2(fmap.mean(axis=(1, 2)), expected[f"feature{i}_mean"]) <= TOLERANCE
        ours = item["features"].feature_info[i]
        assert (ours.num_chs, ours.reduction) == (info["num_chs"], info["reduction"])


def test_key_map_uses_every_fixture_key_once(parity):
    for name in BUILDERS:
        item = parity[name]
        mapping = timm_key_map(item["model"])
        assert set(mapping) == set(item["state"])
        targets = [path for path in mapping.values() if "gamma" not in path]
        assert len(targets) == len(set(targets)) == len(item["model"].weights)


def test_no_top_model_ignores_the_classifier(parity):
    item = parity["inception_v4"]
    model = ki.InceptionV4(include_top=False, weights=None)
    load_timm_weights(model, item["state"])  # last_linear.* present but not needed
    last = feature_extractor(model, out_indices=(4,))
    fmap = np.asarray(last(item["x"], training=False))
    assert rel_l2(fmap.mean(axis=(1, 2)), item["expected"]["feature4_mean"]) <= TOLERANCE


# --------------------------------------------------------------------------- gamma folding


def test_gamma_is_folded_exactly(parity):
    """gamma != 1 (negative and zero included) matches a model with BN(scale=True)."""
    name = "inception_v4"
    item = parity[name]
    model = item["model"]
    load_timm_weights(model, item["state"])
    reference_weights = {layer.name: layer.get_weights() for layer in model.layers}

    rng = np.random.default_rng(0)
    state = dict(item["state"])
    gammas = {}
    for key, value in item["state"].items():
        if key.endswith(".bn.weight"):
            sign = rng.choice([-1.0, 1.0], value.shape, p=[0.25, 0.75])
            g = rng.uniform(0.5, 1.5, value.shape) * sign
            g[0] = 0.0
            state[key] = g.astype(np.float32)
            gammas[key] = state[key]

    def scaled_bn(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["scale"] = True
        return layer.__class__.from_config(config)

    reference = keras.models.clone_model(model, clone_function=scaled_bn)
    key_map = timm_key_map(model)
    bn_gamma = {
        key_map[key[: -len("weight")] + "bias"].split("/")[0]: g for key, g in gammas.items()
    }
    assert len(bn_gamma) == len(gammas)
    for layer in reference.layers:
        if layer.weights:
            own = reference_weights[layer.name]
            layer.set_weights([bn_gamma[layer.name], *own] if layer.name in bn_gamma else own)

    load_timm_weights(model, state)
    folded = np.asarray(model(item["x"], training=False))
    unfolded = np.asarray(reference(item["x"], training=False))
    assert rel_l2(folded, unfolded) <= TOLERANCE
    # The gammas matter: the output is far from the gamma == 1 one.
    assert rel_l2(folded, item["expected"]["logits"]) > 0.1


# --------------------------------------------------------------------------- errors


def _broken(item, defect):
    state = {k: v * 2 + 1 for k, v in item["state"].items()}  # differs from any prior load
    key = defect(state)
    return state, key


def _drop(key):
    def defect(state):
        del state[key]
        return key
    return defect


def _extra(state):
    state["features.22.conv.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    return "features.22.conv.weight"


def _wrong_shape(state):
    key = "features.7.branch1.1.conv.weight"
    state[key] = state[key][:, :, :2, :]
    return key


def _few_classes(state):
    state["last_linear.weight"] = state["last_linear.weight"][:5]
    state["last_linear.bias"] = state["last_linear.bias"][:5]
    return "last_linear.weight"


@pytest.mark.parametrize(
    "defect, message",
    [
        (_drop("features.6.branch0.conv.weight"), "missing timm keys"),
        (_drop("features.12.branch2.3.bn.running_var"), "missing timm keys"),
        (_extra, "unexpected timm keys"),
        (_wrong_shape, "wrong shapes"),
        (_few_classes, "include_top=False"),
    ],
    ids=["missing-conv", "missing-bn", "extra", "wrong-shape", "classifier-size"],
)
def test_bad_state_dict_is_refused_without_partial_load(parity, defect, message):
    item = parity["inception_v4"]
    state, key = _broken(item, defect)
    before = snapshot(item["model"])
    with pytest.raises(ValueError, match=message) as info:
        load_timm_weights(item["model"], state)
    assert key in str(info.value)
    assert "nothing was changed" in str(info.value)
    after = snapshot(item["model"])
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_wrong_family_is_refused_without_partial_load(parity):
    model = parity["inception_v4"]["model"]
    state = parity.make_state.make_state(
        parity["inception_resnet_v2"]["spec"]["params"], seed=3
    )
    before = snapshot(model)
    with pytest.raises(ValueError, match="Wrong model family.*inception_resnet_v2.*inception_v4"):
        load_timm_weights(model, state)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model), strict=True))


def test_inception_resnet_v1_has_no_reference_weights(small_models, tmp_path):
    model = small_models["inception_resnet_v1"]
    with pytest.raises(ValueError, match="Inception-ResNet-v1 has no timm counterpart"):
        load_timm_weights(model, {"conv2d_1a.conv.weight": np.zeros((32, 3, 3, 3))})
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_slim_checkpoint(model, tmp_path / "missing.ckpt")


# --------------------------------------------------------------------------- TF-slim

# timm module -> TF-slim scope, written out from TF-slim's nets/inception_v4.py and
# nets/inception_resnet_v2.py (independent of the converter's own naming rules).
_A = {"branch0": "Branch_0/Conv2d_0a_1x1", "branch1.0": "Branch_1/Conv2d_0a_1x1",
      "branch1.1": "Branch_1/Conv2d_0b_3x3", "branch2.0": "Branch_2/Conv2d_0a_1x1",
      "branch2.1": "Branch_2/Conv2d_0b_3x3", "branch2.2": "Branch_2/Conv2d_0c_3x3",
      "branch3.1": "Branch_3/Conv2d_0b_1x1"}
_RED_A = {"branch0": "Branch_0/Conv2d_1a_3x3", "branch1.0": "Branch_1/Conv2d_0a_1x1",
          "branch1.1": "Branch_1/Conv2d_0b_3x3", "branch1.2": "Branch_1/Conv2d_1a_3x3"}
_B = {"branch0": "Branch_0/Conv2d_0a_1x1", "branch1.0": "Branch_1/Conv2d_0a_1x1",
      "branch1.1": "Branch_1/Conv2d_0b_1x7", "branch1.2": "Branch_1/Conv2d_0c_7x1",
      "branch2.0": "Branch_2/Conv2d_0a_1x1", "branch2.1": "Branch_2/Conv2d_0b_7x1",
      "branch2.2": "Branch_2/Conv2d_0c_1x7", "branch2.3": "Branch_2/Conv2d_0d_7x1",
      "branch2.4": "Branch_2/Conv2d_0e_1x7", "branch3.1": "Branch_3/Conv2d_0b_1x1"}
_RED_B = {"branch0.0": "Branch_0/Conv2d_0a_1x1", "branch0.1": "Branch_0/Conv2d_1a_3x3",
          "branch1.0": "Branch_1/Conv2d_0a_1x1", "branch1.1": "Branch_1/Conv2d_0b_1x7",
          "branch1.2": "Branch_1/Conv2d_0c_7x1", "branch1.3": "Branch_1/Conv2d_1a_3x3"}
_C = {"branch0": "Branch_0/Conv2d_0a_1x1", "branch1_0": "Branch_1/Conv2d_0a_1x1",
      "branch1_1a": "Branch_1/Conv2d_0b_1x3", "branch1_1b": "Branch_1/Conv2d_0c_3x1",
      "branch2_0": "Branch_2/Conv2d_0a_1x1", "branch2_1": "Branch_2/Conv2d_0b_3x1",
      "branch2_2": "Branch_2/Conv2d_0c_1x3", "branch2_3a": "Branch_2/Conv2d_0d_1x3",
      "branch2_3b": "Branch_2/Conv2d_0e_3x1", "branch3.1": "Branch_3/Conv2d_0b_1x1"}
_V4 = {
    "features.0": "Conv2d_1a_3x3", "features.1": "Conv2d_2a_3x3", "features.2": "Conv2d_2b_3x3",
    "features.3.conv": "Mixed_3a/Branch_1/Conv2d_0a_3x3",
    **{f"features.4.{k}": f"Mixed_4a/{v}" for k, v in {
        "branch0.0": "Branch_0/Conv2d_0a_1x1", "branch0.1": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1", "branch1.1": "Branch_1/Conv2d_0b_1x7",
        "branch1.2": "Branch_1/Conv2d_0c_7x1", "branch1.3": "Branch_1/Conv2d_1a_3x3"}.items()},
    "features.5.conv": "Mixed_5a/Branch_0/Conv2d_1a_3x3",
}
for _i, (_block, _table) in enumerate(
    [(f"Mixed_5{c}", _A) for c in "bcde"] + [("Mixed_6a", _RED_A)]
    + [(f"Mixed_6{c}", _B) for c in "bcdefgh"] + [("Mixed_7a", _RED_B)]
    + [(f"Mixed_7{c}", _C) for c in "bcd"]
):
    _V4.update({f"features.{6 + _i}.{k}": f"{_block}/{v}" for k, v in _table.items()})

_RES = {"branch0": "Branch_0/Conv2d_1x1", "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch2.0": "Branch_2/Conv2d_0a_1x1", "conv2d": "Conv2d_1x1"}
_IRV2 = {
    **{f"conv2d_{s}": f"Conv2d_{s}_{k}" for s, k in
       [("1a", "3x3"), ("2a", "3x3"), ("2b", "3x3"), ("3b", "1x1"), ("4a", "3x3"), ("7b", "1x1")]},
    **{f"mixed_5b.{k}": f"Mixed_5b/{v}" for k, v in {
        "branch0": "Branch_0/Conv2d_1x1", "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_5x5", "branch2.0": "Branch_2/Conv2d_0a_1x1",
        "branch2.1": "Branch_2/Conv2d_0b_3x3", "branch2.2": "Branch_2/Conv2d_0c_3x3",
        "branch3.1": "Branch_3/Conv2d_0b_1x1"}.items()},
    **{f"mixed_6a.{k}": f"Mixed_6a/{v}" for k, v in _RED_A.items()},
    **{f"mixed_7a.{k}": f"Mixed_7a/{v}" for k, v in {
        "branch0.0": "Branch_0/Conv2d_0a_1x1", "branch0.1": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1", "branch1.1": "Branch_1/Conv2d_1a_3x3",
        "branch2.0": "Branch_2/Conv2d_0a_1x1", "branch2.1": "Branch_2/Conv2d_0b_3x3",
        "branch2.2": "Branch_2/Conv2d_1a_3x3"}.items()},
}
_BLOCKS = [
    ("repeat.{}", "Repeat/block35_{}", 10,
     {"branch1.1": "Branch_1/Conv2d_0b_3x3", "branch2.1": "Branch_2/Conv2d_0b_3x3",
      "branch2.2": "Branch_2/Conv2d_0c_3x3"}),
    ("repeat_1.{}", "Repeat_1/block17_{}", 20,
     {"branch1.1": "Branch_1/Conv2d_0b_1x7", "branch1.2": "Branch_1/Conv2d_0c_7x1"}),
    ("repeat_2.{}", "Repeat_2/block8_{}", 9,
     {"branch1.1": "Branch_1/Conv2d_0b_1x3", "branch1.2": "Branch_1/Conv2d_0c_3x1"}),
]
for _timm, _slim, _n, _table in _BLOCKS:
    for _j in range(_n):
        _IRV2.update({f"{_timm.format(_j)}.{k}": f"{_slim.format(_j + 1)}/{v}"
                      for k, v in {**_RES, **_table}.items()})
_IRV2.update({f"block8.{k}": f"Block8/{v}" for k, v in {**_RES, **_BLOCKS[2][3]}.items()})

SLIM_NAMES = {
    "inception_v4": ("InceptionV4", _V4),
    "inception_resnet_v2": ("InceptionResnetV2", _IRV2),
}
_PARAM = re.compile(
    r"^(?P<module>.+?)\.(?:(?P<conv>conv)\.weight|bn\.(?P<bn>\w+)|(?P<plain>weight|bias))$"
)


def test_each_timm_network_has_its_fixture_and_slim_names(shared_dir):
    """A network with a timm naming table is checked against timm: its parity fixture
    and its TF-slim names (when it has a TF-slim naming table) are its tests."""
    assert {"inception_v4", "inception_resnet_v2"} <= set(BUILDERS)
    for name in BUILDERS:
        assert (shared_dir / "fixtures" / "timm_parity" / f"{name}.spec.json").is_file(), name
        slim = naming_table(SLIM, name)
        assert slim is None or SLIM_NAMES[name][0] == slim.scope


def slim_variables(name: str, state: dict, rng) -> dict[str, np.ndarray]:
    """The fixture state under TF-slim names, with a background class and AuxLogits."""
    scope, table = SLIM_NAMES[name]
    # The timm classifier's module: its keys are checked by the timm key map test.
    classifier = naming_table(TIMM, name).names["predictions"]
    out = {}
    for key, value in state.items():
        m = _PARAM.match(key)
        module = m["module"]
        if module == classifier:
            background = rng.normal(0, 0.1, (1, *value.shape[1:])).astype(np.float32)
            full = np.concatenate([background, value])  # class 0 = background
            out[f"{scope}/Logits/Logits/{'weights' if m['plain'] == 'weight' else 'biases'}"] = (
                full.T if m["plain"] == "weight" else full
            )
        elif m["bn"]:
            if m["bn"] != "weight":  # slim BN has scale=False: no gamma (all ones here)
                slot = {"bias": "beta", "running_mean": "moving_mean",
                        "running_var": "moving_variance"}[m["bn"]]
                out[f"{scope}/{table[module]}/BatchNorm/{slot}"] = value
        elif m["conv"] or m["plain"] == "weight":
            out[f"{scope}/{table[module]}/weights"] = value.transpose(2, 3, 1, 0)
        else:
            out[f"{scope}/{table[module]}/biases"] = value
    aux = {"AuxLogits/Conv2d_1b_1x1/weights": (1, 1, 1088, 128),
           "AuxLogits/Conv2d_1b_1x1/BatchNorm/beta": (128,),
           "AuxLogits/Logits/weights": (768, 1001), "AuxLogits/Logits/biases": (1001,)}
    for key, shape in aux.items():
        out[f"{scope}/{key}"] = rng.normal(0, 0.1, shape).astype(np.float32)
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_slim_checkpoint_parity(parity, name, tmp_path):
    item = parity[name]
    arrays = slim_variables(name, item["state"], np.random.default_rng(0))
    # tf.compat.v1 Saver with a {name: variable} dict stores exactly those names.
    variables = {key: tf.Variable(value) for key, value in arrays.items()}
    variables["global_step"] = tf.Variable(np.int64(1000))
    prefix = tf.compat.v1.train.Saver(var_list=variables).save(None, str(tmp_path / "model.ckpt"))
    del variables
    assert set(tf.train.load_checkpoint(prefix).get_variable_to_shape_map()) == {
        *arrays, "global_step"
    }

    model = item["model"]
    for v in model.weights:  # start from zeros so that nothing stale can pass
        v.assign(np.zeros(v.shape, v.dtype))
    load_slim_checkpoint(model, prefix)
    logits, *_ = parity.run(name)
    assert rel_l2(logits, item["expected"]["logits"]) <= TOLERANCE


def test_slim_missing_variable_is_reported(parity, tmp_path):
    item = parity["inception_v4"]
    arrays = slim_variables("inception_v4", item["state"], np.random.default_rng(0))
    missing = "InceptionV4/Mixed_6c/Branch_2/Conv2d_0d_7x1/weights"
    del arrays[missing]
    variables = {key: tf.Variable(value) for key, value in arrays.items()}
    prefix = tf.compat.v1.train.Saver(var_list=variables).save(None, str(tmp_path / "m.ckpt"))
    before = snapshot(item["model"])
    with pytest.raises(ValueError, match="missing TF-slim keys") as info:
        load_slim_checkpoint(item["model"], prefix)
    assert missing in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(item["model"]), strict=True))


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_convert_cli_round_trip(parity, tmp_path, capsys):
    item = parity["inception_v4"]
    src = tmp_path / "inception_v4.npz"
    np.savez(src, **item["state"])
    assert read_state_dict(src).keys() == item["state"].keys()
    out = tmp_path / "out" / "inception_v4_timm.weights.h5"

    code = cli_main(["convert", "--from", "timm", str(src), "--model", "inception_v4",
                     "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp left
    digest = re.search(r"sha256: ([0-9a-f]{64})", printed).group(1)
    assert digest == file_hash(out, "sha256")
    assert "timm state dict (747 tensors)" in printed

    model = ki.InceptionV4(weights=str(out), classifier_activation=None)
    logits = np.asarray(model(item["x"], training=False))
    assert rel_l2(logits, item["expected"]["logits"]) <= TOLERANCE


def test_convert_cli_errors(tmp_path, capsys):
    code = cli_main(["convert", "--from", "timm", str(tmp_path / "nope.npz"), "--model",
                     "inception_v4", "--out", str(tmp_path / "x.weights.h5")])
    assert code == 2
    assert "SRC not found" in capsys.readouterr().err
    code = cli_main(["convert", "--from", "timm", str(tmp_path), "--model", "inception_v4",
                     "--out", str(tmp_path / "x.h5")])
    assert code == 2
    assert "--out` must end with .weights.h5" in capsys.readouterr().err


def _tiny_model() -> keras.Model:
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.parametrize("defect", ["changed", "missing"])
def test_verified_save_refuses_a_file_that_does_not_reload(tmp_path, monkeypatch, defect):
    """`save_weights_verified` reloads what it wrote: a weight that comes back different
    (or not at all) is an error naming it, nothing is written, and the model keeps its
    weights (the check overwrites them with a sentinel before reloading)."""
    import h5py

    from keras_inception.convert import save_weights_verified

    model = _tiny_model()
    for i, weight in enumerate(model.weights):  # values no initializer gives
        weight.assign(np.full(weight.shape, 0.5 + i, weight.dtype))
    before = [np.array(w.numpy()) for w in model.weights]
    good = save_weights_verified(model, tmp_path / "good.weights.h5")
    check = _tiny_model()
    check.load_weights(good)
    for value, saved, kept in zip(before, check.weights, model.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), value)
        np.testing.assert_array_equal(kept.numpy(), value)

    real_save, real_load = keras.Model.save_weights, keras.Model.load_weights

    def damaging_save(self, filepath, *args, **kwargs):
        real_save(self, filepath, *args, **kwargs)
        if defect == "changed":
            with h5py.File(filepath, "r+") as f:
                gamma = f["layers/batch_normalization/vars/0"]
                gamma[...] = gamma[...] + 1.0

    def skipping_load(self, filepath, *args, **kwargs):
        """A reload that leaves gamma as it found it."""
        gamma = self.get_layer("bn").gamma
        kept = np.array(gamma.numpy())
        real_load(self, filepath, *args, **kwargs)
        gamma.assign(kept)

    monkeypatch.setattr(keras.Model, "save_weights", damaging_save)
    if defect == "missing":
        monkeypatch.setattr(keras.Model, "load_weights", skipping_load)
    with pytest.raises(RuntimeError, match=r"bad\.weights\.h5.* failed: bn/gamma differs"):
        save_weights_verified(model, tmp_path / "bad.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.weights.h5"]  # nothing else
    for value, weight in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)


class _NotTensors:
    """A custom class: torch's tensors-only loader refuses a file that pickles one."""

    def __init__(self) -> None:
        self.value = 1


@pytest.mark.torch
def test_convert_facenet_pytorch_refuses_a_pickled_object_in_one_sentence(tmp_path):
    """A .pt file holding a Python object (not only tensors) is refused in one line that names
    the file and what is accepted, without torch's advice to load it with weights_only=False
    (arbitrary code execution for a file from elsewhere)."""
    import torch
    from support.runners import assert_one_line_error, run_cli

    path = tmp_path / "rand.pt"
    torch.save({"conv2d_1a.conv.weight": torch.zeros(2), "extra": _NotTensors()}, path)
    proc = run_cli("convert", "--from", "facenet-pytorch", str(path), "--model", "facenet",
                   "--out", str(tmp_path / "x.weights.h5"))
    line = assert_one_line_error(proc, str(path), "_NotTensors", "state dict of tensors")
    assert "weights_only" not in line and "trust" not in line, line
    assert line.endswith("(facenet-pytorch's release .pt files)."), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rand.pt"]  # nothing written
