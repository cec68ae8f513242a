"""The `keras-inception` command line: summary and predict."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import randomize_weights

import keras_inception as ki
from keras_inception.cli import main
from keras_inception.preprocessing import load_image, sample_image_path


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("summary", "predict", "demo", "weights"):
        assert command in out


def test_summary_prints_params_and_gmacs(capsys):
    assert main(["summary", "--model", "inception_resnet_v1"]) == 0
    out = capsys.readouterr().out
    assert "22,769,848" in out and "6.21" in out and "299x299x3" in out


def test_predict_top5_with_class_names(tmp_path, capsys):
    model = ki.InceptionResNetV1(weights=None)
    randomize_weights(model, seed=4)
    path = tmp_path / "irv1.weights.h5"
    model.save_weights(path)
    image = sample_image_path()
    assert main(["predict", "--model", "inception_resnet_v1", "--weights", str(path), image]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == image
    ranked = [line.split()[1] for line in lines[1:6]]
    expected = model.predict(ki.preprocess_input(load_image(image, 299)[None]), verbose=0)
    top5 = [name for _, name, _ in ki.decode_predictions(expected, top=5)[0]]
    assert ranked == top5
    assert np.isclose(float(lines[1].split()[-1]), expected.max(), atol=1e-4)


def test_predict_without_weights_is_a_clear_error(capsys):
    assert main(["predict", "--model", "inception_resnet_v1", sample_image_path()]) == 2
    assert "--weights" in capsys.readouterr().err


def test_predict_missing_image(tmp_path, capsys):
    code = main(["predict", "--model", "inception_resnet_v2", "--weights", str(tmp_path / "none.h5"),
                 "x.jpg"])
    assert code == 2
    assert "none.h5" in capsys.readouterr().err
