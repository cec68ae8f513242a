"""Presets converted from the Hugging Face hub: registry, optional dependency, offline use.

huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE when it is imported, so the
offline scenarios run in a fresh interpreter with those variables set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from support.helpers import randomize_weights, rel_l2

import keras_inception as ki
from keras_inception.presets import WeightsDownloadError, cache_dir, converted, get_preset, hub

REPO = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex snapshot name


def test_registry_records_the_timm_presets(capsys):
    v4 = get_preset("inception_v4", "imagenet")
    ens = get_preset("inception_resnet_v2", "imagenet_ens_adv")
    assert (v4.hf_repo, v4.hf_filename) == ("timm/inception_v4.tf_in1k", "model.safetensors")
    assert ens.hf_repo == "timm/inception_resnet_v2.tf_ens_adv_in1k"
    for entry, crop in ((v4, 0.875), (ens, 0.8975)):
        assert (entry.input_size, entry.crop_pct, entry.interpolation) == (299, crop, "bicubic")
        assert entry.license == "Apache-2.0" and entry.revision
        assert "x / 127.5 - 1" in entry.preprocessing
        assert entry.top is None and entry.notop is None  # converted, not downloaded

    rows = ki.list_weights()
    printed = capsys.readouterr().out
    names = {(r["model"], r["name"]) for r in rows}
    assert {("inception_v4", "imagenet"), ("inception_resnet_v2", "imagenet_ens_adv"),
            ("inception_resnet_v2", "imagenet")} <= names
    assert "imagenet_ens_adv" in printed and "0.8975" in printed and "crop_pct" in printed


def test_builders_keep_their_validation_rules():
    with pytest.raises(ValueError, match="`classes` must be 1000"):
        ki.InceptionV4(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"input must be \(299, 299, 3\)"):
        ki.InceptionV4(weights="imagenet", input_shape=(224, 224, 3))
    with pytest.raises(ValueError, match="No public ImageNet weights exist for Inception-ResNet"):
        ki.InceptionResNetV1(weights="imagenet")
    with pytest.raises(ValueError, match="no 'imagenet_ens_adv' preset for inception_v4"):
        ki.InceptionV4(weights="imagenet_ens_adv")


@pytest.fixture(scope="module")
def small_v4_notop():
    """A cheap model to convert into: the hub errors come before any conversion."""
    return ki.InceptionV4(weights=None, include_top=False, input_shape=(75, 75, 3))


@pytest.fixture(scope="module")
def small_ir2_notop():
    model = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(75, 75, 3))
    randomize_weights(model, seed=3)
    return model


def test_missing_huggingface_hub_names_the_extra(monkeypatch, small_v4_notop):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now fails
    entry = get_preset("inception_v4", "imagenet")
    with pytest.raises(ImportError, match=r'pip install "keras_inception\[hub\]"'):
        hub.load_converted(small_v4_notop, entry, include_top=True)
    with pytest.raises(RuntimeError):  # the CLI reports RuntimeErrors as one line
        hub.load_converted(small_v4_notop, entry, include_top=False)


@pytest.mark.slow
def test_verified_cached_file_is_used_without_the_hub(monkeypatch, small_ir2_notop):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    entry = get_preset("inception_resnet_v2", "imagenet_ens_adv")
    path = Path(converted.converted_path(entry, include_top=False))
    assert path.parent == Path(cache_dir())
    # A file converted earlier, with the hash recorded when it was written.
    converted.save_converted(small_ir2_notop, entry, include_top=False)
    fresh = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(75, 75, 3))
    assert hub.load_converted(fresh, entry, include_top=False) == str(path)
    for a, b in zip(fresh.weights, small_ir2_notop.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "truncated", "no_record"])
def test_unverified_cached_file_is_not_used(monkeypatch, small_ir2_notop, damage):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    entry = get_preset("inception_resnet_v2", "imagenet_ens_adv")
    path = Path(converted.save_converted(small_ir2_notop, entry, include_top=False))
    if damage == "garbage":
        path.write_bytes(b"converted earlier")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        os.remove(path.as_posix() + ".sha256.json")
    assert not converted.cached_file_is_valid(str(path))
    fresh = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(75, 75, 3))
    # Not trusted: it must be converted again, which needs the hub (missing here).
    with pytest.raises(ImportError, match="huggingface_hub"):
        hub.load_converted(fresh, entry, include_top=False)


@pytest.mark.subprocess
def test_unreachable_hub_fails_fast_with_guidance(monkeypatch, tmp_path, small_v4_notop):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    entry = get_preset("inception_v4", "imagenet")
    with pytest.raises(WeightsDownloadError, match="127.0.0.1:9 is unreachable") as info:
        hub.load_converted(small_v4_notop, entry, include_top=True)
    assert str(tmp_path / "hf_cache" / "models--timm--inception_v4.tf_in1k") in str(info.value)
    assert "weights=PATH" in str(info.value)
    assert not os.path.exists(converted.converted_path(entry, include_top=True))


SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import numpy as np
    import keras_inception as ki
    from keras_inception.presets import converted, hub
    from keras_inception.presets import WeightsDownloadError, cache_dir, get_preset

    result = {}
    try:
        model = ki.InceptionV4(weights="imagenet", classifier_activation=None)
        spec_path, x_seed, batch, size = sys.argv[1], *map(int, sys.argv[2:5])
        loader = importlib.util.spec_from_file_location("make_state", spec_path)
        make_state = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(make_state)
        x = make_state.make_input(x_seed, batch, size)
        result["logits"] = np.asarray(model(x, training=False)).tolist()
        entry = get_preset("inception_v4", "imagenet")
        result["converted"] = converted.converted_path(entry, True)
        result["cache_files"] = sorted(os.listdir(os.path.dirname(result["converted"])))
        from keras_inception.presets.loader import preset_origin

        result["origin"] = preset_origin("inception_v4", "imagenet")
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    print("RESULT " + json.dumps(result))
    """
)


def run_offline(tmp_path: Path, hf_cache: Path, fixtures: Path, spec: dict) -> dict:
    env = dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_CACHE=str(hf_cache),
        HF_HUB_OFFLINE="1",
        KERAS_INCEPTION_CACHE=str(tmp_path / "keras_cache"),
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    args = [str(fixtures / "make_state.py"), str(spec["seed"]), str(spec["batch"]),
            str(spec["input_size"])]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def v4_fixture(shared_dir):
    from support.helpers import timm_parity_recipes

    folder, make_state = timm_parity_recipes(shared_dir)
    spec = json.loads((folder / "inception_v4.spec.json").read_text())
    return folder, spec, make_state.make_state(spec["params"], spec["seed"])


@pytest.mark.subprocess
@pytest.mark.slow
def test_imagenet_preset_from_a_seeded_offline_cache(tmp_path, v4_fixture):
    from safetensors.numpy import save_file

    folder, spec, state = v4_fixture
    # The Hugging Face cache layout: refs/main -> snapshot folder with the file.
    repo = tmp_path / "hf_cache" / "models--timm--inception_v4.tf_in1k"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    save_file(state, str(snapshot / "model.safetensors"))

    result = run_offline(tmp_path, tmp_path / "hf_cache", folder, spec)
    assert "error" not in result, result.get("error")
    expected = np.load(folder / "inception_v4.expected.npz")["logits"]
    assert rel_l2(np.asarray(result["logits"]), expected) <= 1e-4
    # Converted once into the package cache, with no temporary file left behind.
    assert Path(result["converted"]).is_file()
    # The converted file and its recorded hash, no staging leftovers.
    assert result["cache_files"] == [
        "inception_v4_imagenet.weights.h5", "inception_v4_imagenet.weights.h5.sha256.json"]
    # Where the weights came from: the Hugging Face cache, converted now (issue 20, 20).
    state_file = snapshot / "model.safetensors"
    assert result["origin"] == (f"converted now from the original file from the local cache "
                                f"({state_file}), cached as {result['converted']}")


@pytest.mark.subprocess
def test_imagenet_preset_offline_with_empty_cache_fails_clearly(tmp_path, v4_fixture):
    folder, spec, _ = v4_fixture
    (tmp_path / "hf_cache").mkdir()
    result = run_offline(tmp_path, tmp_path / "hf_cache", folder, spec)
    message = result["error"]
    assert message.startswith("WeightsDownloadError")
    assert "HF_HUB_OFFLINE" in message
    assert str(tmp_path / "hf_cache" / "models--timm--inception_v4.tf_in1k") in message
    assert "weights=PATH" in message and "keras-inception convert" in message
