"""keras_inception.explain at the edges of its inputs: a last feature map of one cell,
integrated gradients' batches and progress, and the messages for inputs it cannot
explain; the `explain` command's `--batch-size` and progress lines.

The models are small: Inception-ResNet-v1 at 75 px (its last feature map is 1x1 there)
and a hand-built network of one convolution."""

from __future__ import annotations

import argparse
import inspect
import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from support.helpers import randomize_weights

import keras_inception as ki
from keras_inception import explain
from keras_inception.preprocessing import load_image

SIZE = 75  # Inception-ResNet-v1's last map (block8_5_ac) is 1x1 here, block17_10_ac 3x3
DEEPER_TAP = "block17_10_ac"


@pytest.fixture(scope="module")
def small_v1():
    """Inception-ResNet-v1 at 75 px, 3 classes, random weights that give varied maps."""
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    randomize_weights(model, seed=5)
    return model


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


# --- a last feature map of one cell -----------------------------------------------------


def test_a_1x1_last_map_gives_way_to_the_deepest_larger_tap(small_v1):
    """At 75 px the last tap's map is 1x1 (every heatmap would be uniform): `layer=None`
    explains the deepest tap whose map is larger, as `resolve_layer` says, without a
    warning; a model of any input size is traced at the images' size."""
    x = _images(2)
    assert tuple(small_v1.get_layer("block8_5_ac").output.shape[1:3]) == (1, 1)
    assert explain.resolve_layer(small_v1, None)[0] == (DEEPER_TAP,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = explain.grad_cam(small_v1, x)
    np.testing.assert_array_equal(maps, explain.grad_cam(small_v1, x, layer=DEEPER_TAP))
    assert all(np.ptp(m) > 0.1 for m in maps)  # not uniform (a 1x1 map gives ptp 0)

    anysize = ki.InceptionResNetV1(weights=None, input_shape=(None, None, 3), classes=3)
    assert explain.resolve_layer(anysize, None, (SIZE, SIZE))[0] == (DEEPER_TAP,)
    assert explain.resolve_layer(anysize, None, (160, 160))[0] == ("block8_5_ac",)  # 3x3
    assert explain.resolve_layer(anysize, None)[0] == ("block8_5_ac",)  # size unknown
    # A network nested in the model (given `input_tensor`), by default or by its name.
    nested = ki.InceptionResNetV1(weights=None, input_tensor=keras.Input((SIZE, SIZE, 3)),
                                  classes=3)
    network = next(layer.name for layer in nested.layers if isinstance(layer, keras.Model))
    for layer in (None, network):
        assert explain.resolve_layer(nested, layer)[0] == (network, DEEPER_TAP)


def test_a_named_1x1_layer_warns_that_its_maps_are_uniform(small_v1):
    with pytest.warns(UserWarning, match="layer='block8_5_ac' gives a 1x1 map at 75x75 px: "
                                         "every heatmap is uniform.*feature taps: conv_2b_ac"):
        maps = explain.grad_cam(small_v1, _images(1), layer="block8_5_ac")
    assert np.ptp(maps) == 0


# --- integrated gradients: batches of the paths' points, progress ----------------------


class _BatchRecorder(keras.layers.Layer):
    """Identity that records the batch size of each call on concrete tensors."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen: list[int] = []

    def call(self, inputs):
        if inputs.shape[0] is not None:  # not while the model is built or cloned
            self.seen.append(int(inputs.shape[0]))
        return inputs


def _recorded_network(size: int = 12) -> tuple[keras.Model, _BatchRecorder]:
    """A convolution, its mean and a dense layer, on `size` px (a fixed size: a model
    of any size is also traced symbolically at the images' batch size)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    recorder = _BatchRecorder()
    x = keras.layers.Conv2D(6, 3, activation="tanh", name="features")(recorder(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x)), recorder


def test_integrated_gradients_batch_the_paths_points_without_changing_the_result():
    """2 images, 4 steps: 10 points of the paths. `batch_size` points go through the
    network at once (an image's steps together), the attributions the same within 1e-5;
    `progress` hears of each image as it is complete."""
    model, recorder = _recorded_network()
    x, target = _images(2, size=12), np.array([0, 2])
    results = {}
    for batch_size, expected in [(1, [1] * 10), (4, [4, 4, 2]), (10, [10])]:
        recorder.seen.clear()
        heard = []
        results[batch_size] = explain.integrated_gradients(
            model, x, target=target, steps=4, batch_size=batch_size,
            progress=lambda done, total: heard.append((done, total)))  # noqa: B023
        assert recorder.seen == expected, (batch_size, recorder.seen)
        assert heard == [(1, 2), (2, 2)]
    for batch_size in (4, 10):
        np.testing.assert_allclose(results[batch_size], results[1], atol=1e-5, rtol=0)
    # Attributions that mean something: they add up to f(x) - f(0) within the rule's error.
    difference = explain.scores(model, x, target) - explain.scores(model, 0 * x, target)
    assert np.abs(difference).min() > 1e-3
    np.testing.assert_allclose(results[1].sum(axis=(1, 2, 3)), difference, rtol=0.1)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1; received "
                                         "batch_size=0"):
        explain.integrated_gradients(model, x, target=target, batch_size=0)


def test_the_default_batch_holds_the_pixels_of_4_images_of_299_px():
    """By default a pass holds as many images (or points of the paths) as make 4 of
    299x299 px: the memory a pass holds is bounded at any size, and small images still go
    through in large batches. The command's default is the API's."""
    from keras_inception.cli.explain import register

    (model, recorder), (small_model, small_recorder) = map(_recorded_network, (299, 12))
    large = _images(1, size=299)
    explain.integrated_gradients(model, large, target=0, steps=8)
    assert recorder.seen == [4, 4, 1]
    recorder.seen.clear()
    explain.grad_cam(model, np.repeat(large, 9, axis=0), target=0, layer="features")
    assert recorder.seen == [4, 4, 1]
    explain.integrated_gradients(small_model, _images(3, size=12), target=0, steps=8)
    assert small_recorder.seen == [27]  # 2483 would fit
    for function in (explain.integrated_gradients, explain.grad_cam):
        assert inspect.signature(function).parameters["batch_size"].default is None
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["explain", "--model", "m.keras", "a.jpg", "--out", "out"])
    assert args.batch_size is None


# --- inputs that cannot be explained: one clear line ----------------------------------


def test_an_empty_batch_is_refused(small_v1):
    empty = np.zeros((0, SIZE, SIZE, 3), dtype="float32")
    match = "`images` must hold at least one image \\(N >= 1\\); received an empty batch of " \
            "shape \\(0, 75, 75, 3\\)"
    with pytest.raises(ValueError, match=match):
        explain.grad_cam(small_v1, empty)
    with pytest.raises(ValueError, match=match):
        explain.integrated_gradients(small_v1, empty)


def test_a_model_whose_output_is_a_map_is_refused():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="features")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(5, 3)(x), name="dense_head")
    match = ("`model` must output one score vector per image, \\(batch, classes\\) or "
             "\\(batch, embedding size\\); model 'dense_head' outputs shape "
             "\\(None, 12, 12, 5\\)")
    for target in (None, 1):
        with pytest.raises(ValueError, match=match):
            explain.grad_cam(model, _images(1, size=16), target=target, layer="features")
    with pytest.raises(ValueError, match=match):
        explain.integrated_gradients(model, _images(1, size=16), target=1)


def test_overlay_refuses_a_map_that_is_not_finite():
    heat = np.full((4, 6), 0.5)
    heat[1, 2], heat[3, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match="`heatmap` must hold finite values in \\[0, 1\\]; "
                                         "received a map of shape \\(4, 6\\) with 1 NaN and 1 "
                                         "infinite values"):
        explain.overlay(np.zeros((4, 6, 3)), heat)


# --- the command line ---------------------------------------------------------------------


def test_the_command_refuses_a_batch_size_below_one(tmp_path):
    from support.runners import assert_one_line_error, run_cli

    for value in ("0", "-2", "many"):
        proc = run_cli("explain", "--model", "inception_resnet_v1", "--weights", "x.h5",
                       "image.jpg", "--out", str(tmp_path / "out"), "--batch-size", value)
        assert_one_line_error(proc, "--batch-size", "expected a positive integer",
                              f"received {value!r}")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def saved_v1(small_v1, module_tmp_path) -> Path:
    path = module_tmp_path / "v1.keras"
    small_v1.save(path)
    return path


def _flower(name: str) -> str:
    from keras_inception.train.data import sample_dir

    return str(sorted((Path(sample_dir()) / "val" / name).iterdir())[0])


def _crop(image: str, out: Path) -> np.ndarray:
    """The image as the command cropped it (its crop_pct, from explanations.json)."""
    crop_pct = json.loads((out / "explanations.json").read_text())["crop_pct"]
    return load_image(image, SIZE, crop_pct=crop_pct)


@pytest.mark.slow
def test_the_command_and_the_api_choose_the_same_layer(small_v1, saved_v1, tmp_path):
    """At 75 px the command explains the layer `grad_cam`'s default explains: its record
    names it, and its peak is that of the API's map (layer=None) of the same crop."""
    from support.runners import run_cli

    daisy, out = _flower("daisy"), tmp_path / "maps"
    proc = run_cli("explain", "--model", str(saved_v1), daisy, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = json.loads((out / "explanations.json").read_text())["images"]
    assert record["layer"] == DEEPER_TAP == "/".join(explain.resolve_layer(small_v1, None)[0])
    x = ki.preprocess_input(_crop(daisy, out)[None])
    heatmap = explain.grad_cam(small_v1, x, target=record["target"]["index"])[0]
    row, col = explain.peak(heatmap)
    assert (record["peak"]["row"], record["peak"]["col"]) == (row, col)


@pytest.mark.slow
def test_integrated_gradients_in_the_command_report_progress(small_v1, saved_v1, tmp_path,
                                                             monkeypatch):
    """`--batch-size` reaches integrated gradients, whose map does not depend on it; a
    line on stderr as each image is done, with the seconds since the start. (4 steps
    instead of 32, for the test's time.)"""
    from support.runners import run_cli

    calls = []

    def integrated_gradients(*args, **kwargs):
        calls.append(kwargs)
        return integrated(*args, **kwargs, steps=4)

    integrated = explain.integrated_gradients
    monkeypatch.setattr(explain, "integrated_gradients", integrated_gradients)
    images, out = [_flower("daisy"), _flower("roses")], tmp_path / "ig"
    proc = run_cli("explain", "--model", str(saved_v1), *images, "--method",
                   "integrated_gradients", "--batch-size", "7", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [kwargs["batch_size"] for kwargs in calls] == [7]
    lines = [line for line in proc.stderr.splitlines() if "integrated gradients" in line]
    assert lines[0] == ("keras-inception explain: integrated gradients of 2 image(s), a "
                        "line as each is done")
    seconds = []
    for i, (line, image) in enumerate(zip(lines[1:], images, strict=True)):
        head = f"keras-inception explain: integrated gradients {i + 1}/2 done ({image}), "
        assert line.startswith(head) and line.endswith(" s"), line
        seconds.append(float(line[len(head):-2]))
    assert 0 < seconds[0] <= seconds[1]
    records = json.loads((out / "explanations.json").read_text())["images"]
    x = ki.preprocess_input(np.stack([_crop(image, out) for image in images]))
    targets = [r["target"]["index"] for r in records]
    attributions = integrated(small_v1, x, target=targets, steps=4, batch_size=1)
    for record, attribution in zip(records, attributions, strict=True):
        heatmap = np.abs(attribution).sum(axis=-1)
        assert (record["peak"]["row"], record["peak"]["col"]) == explain.peak(heatmap)
