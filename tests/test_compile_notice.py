"""keras_inception.train.compile_notice: the notice around the first training step, the
compile-time estimate and the default of `--jit`."""

from __future__ import annotations

import json
import re
import statistics

import keras
import numpy as np
import pytest

from keras_inception import train as training
from keras_inception.train import compile_notice

ESTIMATE = re.compile(r"^compiling the training step \(about (\d+(?:\.\d+)?) s on this machine\)$")
TOOK = re.compile(r"^first step took (\d+(?:\.\d+)?) s$")


def _tiny_model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=False)
    return model


class _Order(keras.callbacks.Callback):
    """Appends the first batch's begin / end to the same list as the notice."""

    def __init__(self, lines: list) -> None:
        super().__init__()
        self.lines = lines

    def on_train_batch_begin(self, batch, logs=None):
        self.lines.append(f"<batch {batch} begins>")

    def on_train_batch_end(self, batch, logs=None):
        self.lines.append(f"<batch {batch} ends>")


def test_notice_before_the_first_step_and_the_measured_time_after(tmp_path):
    lines: list[str] = []
    notice = compile_notice.CompileNotice("inception_resnet_v2", 299, 4, cache_dir=str(tmp_path),
                                          print_fn=lines.append)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    _tiny_model().fit(x, y, batch_size=4, epochs=2, verbose=0,
                      callbacks=[_Order(lines), notice])
    # Printed once per fit: the estimate before batch 0, the measurement after it.
    assert ESTIMATE.match(lines[0]) and float(ESTIMATE.match(lines[0])[1]) > 0
    assert lines[1:4] == ["<batch 0 begins>", "<batch 0 ends>", lines[3]]
    assert TOOK.match(lines[3]) and float(TOOK.match(lines[3])[1]) > 0
    assert sum(bool(ESTIMATE.match(line)) for line in lines) == 1
    assert sum(bool(TOOK.match(line)) for line in lines) == 1
    assert notice.first_step_s > 0
    # The measurement is recorded in the cache and is the next estimate of that step.
    recorded = json.loads((tmp_path / compile_notice.CACHE_FILE).read_text())
    assert list(recorded.values()) == [round(notice.first_step_s, 2)]
    again = compile_notice.estimate_compile_seconds(
        "inception_resnet_v2", 299, keras.backend.backend(), False, batch_size=4,
        device=compile_notice.current_device(), cache_dir=str(tmp_path))
    assert again == pytest.approx(round(notice.first_step_s, 2))


def test_default_print_goes_to_stdout(capsys):
    notice = compile_notice.CompileNotice("inception_v4", 160, 2, stage="head_cached")
    _tiny_model().fit(np.zeros((2, 4), "float32"), np.eye(3, dtype="float32")[[0, 1]],
                      epochs=1, verbose=0, callbacks=[notice])
    out = capsys.readouterr().out.splitlines()
    assert ESTIMATE.match(out[0]) and TOOK.match(out[1])


@pytest.mark.parametrize("backend,jit", [("tensorflow", False), ("tensorflow", True),
                                         ("jax", True)])
@pytest.mark.parametrize("model_name", ["inception_v4", "inception_resnet_v1",
                                        "inception_resnet_v2"])
def test_estimate_is_affine_in_image_area(model_name, backend, jit):
    def estimate(size, batch=None):
        return compile_notice.estimate_compile_seconds(model_name, size, backend, jit,
                                                       batch_size=batch)

    # The measured first steps (batch 8) come back at the measured sizes; where the
    # compile part (first step - step) measured less at the larger size (noise), it is
    # their mean.
    table = compile_notice.MEASURED[(model_name, backend, jit)]
    compiles = {size: first - step for size, (first, step) in table.items()}
    grows = compiles[max(compiles)] >= compiles[min(compiles)]
    for size, (first, step) in table.items():
        expected = first if grows else statistics.mean(compiles.values()) + step
        assert estimate(size, compile_notice.MEASURED_BATCH) == pytest.approx(expected, abs=0.01)
    # Between the measured sizes it grows with the image area, along one line in the area.
    for batch in (None, 32):
        values = [estimate(size, batch) for size in (180, 220, 280)]
        assert all(v > 0 for v in values) and values == sorted(values)
        slope = (values[1] - values[0]) / (220**2 - 180**2)
        assert values[2] == pytest.approx(values[1] + slope * (280**2 - 220**2), rel=1e-6)
    # Beyond them the step time is proportional to the area; the compile part stays.
    assert estimate(75) == estimate(160) and estimate(400) == estimate(299)
    steps = [estimate(size, 32) - estimate(size) for size in (75, 160, 299, 400)]
    assert 0 < steps[0] < steps[1] < steps[2] < steps[3]
    assert steps[3] / steps[2] == pytest.approx(400**2 / 299**2, rel=1e-6)
    assert steps[0] / steps[1] == pytest.approx(75**2 / 160**2, rel=1e-6)
    # A bigger batch adds step time, not compile time.
    assert estimate(299, 32) > estimate(299, 8) > estimate(299)


def test_estimate_for_other_networks_stages_and_devices():
    v1 = compile_notice.estimate_compile_seconds("inception_resnet_v1", 160, "tensorflow", False)
    assert compile_notice.estimate_compile_seconds("facenet", 160, "tensorflow", False) == v1
    head = compile_notice.estimate_compile_seconds("inception_resnet_v2", 299, "tensorflow",
                                                   False, batch_size=32, stage="head_cached")
    full = compile_notice.estimate_compile_seconds("inception_resnet_v2", 299, "tensorflow",
                                                   False, batch_size=32)
    top = compile_notice.estimate_compile_seconds("inception_resnet_v2", 299, "tensorflow",
                                                  False, batch_size=32, stage="fine_tune_cached")
    assert 0 < head < top < full
    # Stage 2 on cached activations: from its own measurements, not the whole network's.
    assert ("inception_resnet_v2", "tensorflow", False) in compile_notice.TOP_MEASURED
    # On a GPU the CPU step time is left out (only the host's trace + compile counts).
    gpu = compile_notice.estimate_compile_seconds("inception_resnet_v2", 299, "tensorflow",
                                                  False, batch_size=32, device="gpu")
    assert 0 < gpu < full


def test_default_jit_is_the_documented_choice(monkeypatch):
    assert compile_notice.default_jit("tensorflow", "cpu") is False
    assert compile_notice.default_jit("jax", "cpu") is True
    assert compile_notice.default_jit("jax", "gpu") is True
    assert compile_notice.default_jit("tensorflow", "gpu") == "auto"
    assert compile_notice.default_jit("tensorflow", "tpu") == "auto"
    assert compile_notice.default_jit("torch", "cpu") == "auto"
    assert compile_notice.default_jit("torch", "gpu") == "auto"
    # TrainConfig.jit=None resolves through it; an explicit choice is kept.
    assert compile_notice.resolve_jit(None) == compile_notice.default_jit(
        keras.backend.backend(), compile_notice.current_device())
    assert compile_notice.resolve_jit(True) is True
    assert compile_notice.resolve_jit(False) is False
    assert training.TrainConfig(out="x").jit is None


def test_train_prints_the_notice_for_each_stage(tmp_path, base_weights, capsys):
    training.train(training.TrainConfig(
        out=str(tmp_path / "run"), model="inception_resnet_v1", image_size=75, batch_size=8,
        epochs=2, stage1_epochs=1, weights=base_weights, max_per_class=2, verbose=0))
    printed = capsys.readouterr().out.splitlines()
    estimates = [i for i, line in enumerate(printed) if ESTIMATE.match(line)]
    took = [i for i, line in enumerate(printed) if TOOK.match(line)]
    # Stage 1 (head on cached features), stage 2 (top blocks on cached activations).
    assert len(estimates) == len(took) == 2
    assert all(e < t for e, t in zip(estimates, took, strict=True))
    assert all(float(TOOK.match(printed[t])[1]) > 0 for t in took)
    recorded = json.loads((tmp_path / "run" / "cache" / compile_notice.CACHE_FILE).read_text())
    assert sorted(key.split("|")[0] for key in recorded) == ["fine_tune_cached",
                                                                  "head_cached"]
