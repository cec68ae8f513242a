"""keras_inception.train.compile_notice: the notice around the first training step. It
prints no figure this machine did not measure; a later run quotes this machine's own
earlier measurement of the same step, saying so."""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np
import pytest

from keras_inception import train as training
from keras_inception.presets import cache_dir
from keras_inception.train import compile_notice

NOTICE = re.compile(r"^compiling the training step"
                    r"(?: \(took (\d+(?:\.\d+)?) s when this machine last ran it\))?$")
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


def _fit(notice, lines=None) -> None:
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    _tiny_model().fit(x, y, batch_size=4, epochs=2, verbose=0,
                      callbacks=[_Order(lines if lines is not None else []), notice])


def test_notice_before_the_first_step_and_the_measured_time_after(tmp_path):
    lines: list[str] = []
    path = str(tmp_path / compile_notice.CACHE_FILE)
    notice = compile_notice.CompileNotice("head_on_features|inception_resnet_v2|299", 4,
                                          path=path, print_fn=lines.append)
    _fit(notice, lines)
    # Printed once per fit: the notice before batch 0, the measurement after it.
    assert NOTICE.match(lines[0])
    assert lines[1:4] == ["<batch 0 begins>", "<batch 0 ends>", lines[3]]
    assert TOOK.match(lines[3]) and float(TOOK.match(lines[3])[1]) > 0
    assert sum(bool(NOTICE.match(line)) for line in lines) == 1
    assert sum(bool(TOOK.match(line)) for line in lines) == 1
    assert notice.first_step_s > 0
    # The measurement is recorded, under the step's key.
    recorded = json.loads((tmp_path / compile_notice.CACHE_FILE).read_text())
    assert list(recorded.values()) == [round(notice.first_step_s, 2)]
    assert next(iter(recorded)).startswith("head_on_features|inception_resnet_v2|299|b4|")


def test_no_figure_this_machine_did_not_measure(tmp_path):
    """A fresh machine: no estimate at all. The same step again: this machine's own
    earlier measurement, said to be one. Another step (batch): no figure again."""
    path = str(tmp_path / compile_notice.CACHE_FILE)
    step = "fine_tune_on_images|inception_v4|160"
    first: list[str] = []
    _fit(compile_notice.CompileNotice(step, 4, path=path, print_fn=first.append))
    assert first[0] == "compiling the training step"
    assert not re.search(r"\d", first[0])
    (measured,) = json.loads((tmp_path / compile_notice.CACHE_FILE).read_text()).values()
    second: list[str] = []
    _fit(compile_notice.CompileNotice(step, 4, path=path, print_fn=second.append))
    assert second[0] == ("compiling the training step (took "
                         f"{compile_notice._seconds(measured)} s when this machine last ran it)")
    other: list[str] = []
    _fit(compile_notice.CompileNotice(step, 2, path=path, print_fn=other.append))
    assert other[0] == "compiling the training step"


def test_default_print_goes_to_stdout(capsys):
    _fit(compile_notice.CompileNotice("head_on_features|inception_v4|160", 2))
    out = capsys.readouterr().out.splitlines()
    assert NOTICE.match(out[0]) and TOOK.match(out[1])


def test_keras_decides_xla_unless_told():
    assert training.TrainConfig(out="x").jit is None
    assert compile_notice.jit_compile(None) == "auto"
    assert compile_notice.jit_compile(True) is True
    assert compile_notice.jit_compile(False) is False
    assert not hasattr(compile_notice, "MEASURED") and not hasattr(compile_notice, "default_jit")


@pytest.mark.slow
def test_train_prints_the_notice_for_each_stage(tmp_path, base_weights, capsys):
    training.train(training.TrainConfig(
        out=str(tmp_path / "run"), model="inception_resnet_v1", image_size=75, batch_size=8,
        epochs=2, stage1_epochs=1, weights=base_weights, max_per_class=2, verbose=0))
    printed = capsys.readouterr().out.splitlines()
    notices = [i for i, line in enumerate(printed) if NOTICE.match(line)]
    took = [i for i, line in enumerate(printed) if TOOK.match(line)]
    # Stage 1 (head on cached features), stage 2 (top blocks on cached activations).
    assert len(notices) == len(took) == 2
    assert all(e < t for e, t in zip(notices, took, strict=True))
    assert all(float(TOOK.match(printed[t])[1]) > 0 for t in took)
    # A fresh weights cache: nothing measured before, so no figure before the first step.
    assert all(printed[i] == "compiling the training step" for i in notices)
    with open(os.path.join(cache_dir(), compile_notice.CACHE_FILE), encoding="utf-8") as f:
        recorded = json.load(f)
    assert sorted(key.split("|")[0] for key in recorded) == ["fine_tune_on_activations",
                                                              "head_on_features"]
