"""Download path of pretrained weights, against a loopback HTTP server."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import numpy as np
import pytest
from support.helpers import LoopbackServer, randomize_weights

import keras_inception as ki
from keras_inception import _compat, registry
from keras_inception.presets import fetch as weights_lib

SHAPE = (96, 96, 3)


@pytest.fixture(scope="module")
def release_file(module_tmp_path):
    """A generated no-top IR-v2 weights file in the keras.applications release layout."""
    directory = module_tmp_path
    source = ki.InceptionResNetV2(weights=None, include_top=False, input_shape=SHAPE)
    randomize_weights(source, seed=11)
    fname = "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _compat.save_legacy_h5_weights(source, directory / fname)
    md5 = hashlib.md5((directory / fname).read_bytes()).hexdigest()
    x = np.random.default_rng(2).uniform(-1, 1, (1, *SHAPE)).astype("float32")
    return directory, fname, md5, x, np.asarray(source(x))


@pytest.fixture(scope="module")
def cache_seen_by_module_fixtures() -> str:
    return weights_lib.cache_dir()


def test_module_fixtures_do_not_use_the_users_cache(cache_seen_by_module_fixtures,
                                                     tmp_path_factory):
    """Module fixtures are set up before any test's own cache: the session's cache keeps
    what they download, convert or time out of the user's ~/.keras (a fixture that trained
    a model wrote compile times there)."""
    users = os.path.join(os.path.expanduser("~"), ".keras", "models")
    assert cache_seen_by_module_fixtures != users
    basetemp = str(tmp_path_factory.getbasetemp())
    assert os.path.commonpath([cache_seen_by_module_fixtures, basetemp]) == basetemp
    assert weights_lib.cache_dir() != cache_seen_by_module_fixtures  # the test's own


def _point_preset_at(monkeypatch, url: str, fname: str, md5: str) -> None:
    spec = registry.get_spec("inception_resnet_v2")
    remote = registry.RemoteFile(url, fname, md5)
    presets = tuple(
        dataclasses.replace(p, notop=remote) if p.name == "imagenet" else p for p in spec.presets
    )
    monkeypatch.setitem(registry.MODELS, spec.name, dataclasses.replace(spec, presets=presets))


def _cache_listing() -> list[str]:
    return sorted(os.listdir(weights_lib.cache_dir())) if os.path.isdir(weights_lib.cache_dir()) else []


def test_download_verify_cache_then_offline(monkeypatch, release_file, capsys):
    """Also (issue 20, 20): one line announces the download before it starts, and the
    preset's origin says downloaded, then from the local cache (the command line's
    `weights:` line)."""
    from keras_inception.cli.core import print_weights_origin
    from keras_inception.presets.loader import preset_origin

    directory, fname, md5, x, expected = release_file
    server = LoopbackServer(str(directory))
    url = server.url(fname)
    try:
        _point_preset_at(monkeypatch, url, fname, md5)
        first = ki.InceptionResNetV2(weights="imagenet", include_top=False, input_shape=SHAPE)
        assert server.requests == 1
    finally:
        server.close()
    np.testing.assert_allclose(np.asarray(first(x)), expected, atol=1e-5)
    assert _cache_listing() == [fname]  # verified file in place, no staging leftovers
    cached = os.path.join(weights_lib.cache_dir(), fname)
    assert weights_lib.file_hash(cached) == md5
    assert capsys.readouterr().err.splitlines() == [
        f"[weights] downloading {fname} from {url} into {weights_lib.cache_dir()} (once; later "
        "uses read the cached file)"]
    assert preset_origin("inception_resnet_v2", "imagenet") == f"downloaded now from {url}"

    # Second call: the server is gone, the cache is enough.
    second = ki.InceptionResNetV2(weights="imagenet", include_top=False, input_shape=SHAPE)
    np.testing.assert_allclose(np.asarray(second(x)), expected, atol=1e-5)
    assert capsys.readouterr().err == ""  # nothing to announce
    assert preset_origin("inception_resnet_v2", "imagenet") == f"from the local cache ({cached})"
    print_weights_origin("inception_resnet_v2", "imagenet")
    assert capsys.readouterr().err == (
        f"weights: inception_resnet_v2 imagenet, from the local cache ({cached})\n")


def test_wrong_hash_is_refused_and_nothing_cached(monkeypatch, release_file):
    directory, fname, _, _, _ = release_file
    server = LoopbackServer(str(directory))
    try:
        _point_preset_at(monkeypatch, server.url(fname), fname, "0" * 32)
        with pytest.raises(ValueError, match="hash"):
            ki.InceptionResNetV2(weights="imagenet", include_top=False, input_shape=SHAPE)
        assert server.requests == 1
    finally:
        server.close()
    assert _cache_listing() == []


def test_corrupt_cached_file_is_replaced(monkeypatch, tmp_path):
    payload = b"weights" * 1000
    (tmp_path / "w.bin").write_bytes(payload)
    remote = registry.RemoteFile("", "w.bin", hashlib.md5(payload).hexdigest())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w.bin").write_bytes(payload[:100])  # a truncated earlier download
    server = LoopbackServer(str(tmp_path))
    try:
        remote = dataclasses.replace(remote, url=server.url("w.bin"))
        path = weights_lib.download(remote, str(cache))
    finally:
        server.close()
    assert open(path, "rb").read() == payload
    assert sorted(os.listdir(cache)) == ["w.bin"]


def test_offline_fails_fast_with_url_and_cache_path(monkeypatch, release_file):
    _, fname, md5, _, _ = release_file
    # A port that was just free: nothing listens there.
    server = LoopbackServer(".")
    url = server.url(fname)
    server.close()
    _point_preset_at(monkeypatch, url, fname, md5)
    start = time.monotonic()
    with pytest.raises(weights_lib.WeightsDownloadError) as info:
        ki.InceptionResNetV2(weights="imagenet", include_top=False, input_shape=SHAPE)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert url in message
    assert os.path.join(weights_lib.cache_dir(), fname) in message
    assert "weights=PATH" in message
    assert "--weights PATH on the command line" in message  # the option, for the CLI's users
    assert _cache_listing() == []


def test_a_weights_cache_that_is_a_file_is_named_not_an_errno(monkeypatch, tmp_path):
    """$KERAS_INCEPTION_CACHE pointing at a file: one message naming the variable and the
    path (it was `[Errno 17] File exists`)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(blocker))
    remote = registry.RemoteFile("http://127.0.0.1:9/w.bin", "w.bin", "0" * 32)
    with pytest.raises(NotADirectoryError) as info:
        weights_lib.download(remote)
    message = str(info.value)
    assert "$KERAS_INCEPTION_CACHE" in message and repr(str(blocker)) in message
    assert "it is a file" in message and "Errno" not in message
    # Conversions (timm and FaceNet presets) check the cache the same way first.
    with pytest.raises(NotADirectoryError, match=r"\$KERAS_INCEPTION_CACHE"):
        weights_lib.ensure_cache_dir()
    assert blocker.read_text() == "a file"


def test_messages_show_the_home_folder_as_a_tilde():
    """Where weights came from is said with `~/` for the home folder: shorter, and the
    committed notebooks' outputs name no folder of the machine that ran them."""
    home = os.path.expanduser("~")
    assert weights_lib.display_path(os.path.join(home, ".keras", "models", "w.h5")) == \
        os.path.join("~", ".keras", "models", "w.h5")
    assert weights_lib.display_path(home + "x/w.h5") == home + "x/w.h5"  # another folder
    origin = weights_lib.Origin(weights_lib.CACHE, "", os.path.join(home, "w.h5"))
    assert origin.describe() == f"from the local cache ({os.path.join('~', 'w.h5')})"


def test_the_offline_message_shows_the_home_folder_as_a_tilde(monkeypatch, tmp_path):
    """Where to place the file, in the message of a failed download, is said with `~/`
    too (a notebook's committed output named the folder of the machine that ran it)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(tmp_path / ".keras" / "models"))
    remote = registry.RemoteFile("http://127.0.0.1:9/w.bin", "w.bin", "0" * 32)
    with pytest.raises(weights_lib.WeightsDownloadError) as info:
        weights_lib.download(remote)
    message = str(info.value)
    assert f"place it at {os.path.join('~', '.keras', 'models', 'w.bin')} (" in message
    assert str(tmp_path) not in message
