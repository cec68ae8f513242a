"""The networks behave as Keras users expect of keras.applications: the same named layers,
`input_tensor` from other layers or shared by an ensemble, `load_model` in a fresh process,
and the command line's model options."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_inception as ki


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_predict_tflite_is_a_real_option(capsys):
    from keras_inception.cli import build_parser

    args = build_parser().parse_args(["predict", "--tflite", "m.tflite", "a.jpg", "b.jpg"])
    assert (args.tflite, args.model, args.images) == ("m.tflite", None, ["a.jpg", "b.jpg"])
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["predict", "--tflite", "m.tflite", "--model", "x.keras", "a.jpg"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_every_named_keras_applications_layer_exists_in_ours():
    reference = keras.applications.InceptionResNetV2(weights=None)
    generated = re.compile(
        r"(input_layer|conv2d|batch_normalization|activation|max_pooling2d|average_pooling2d|"
        r"concatenate|custom_scale_layer|lambda)(_\d+)?")
    named = [layer.name for layer in reference.layers if not generated.fullmatch(layer.name)]
    ours = {layer.name for layer in ki.InceptionResNetV2(weights=None).layers}
    assert len(named) >= 120
    assert [name for name in named if name not in ours] == []
    for name in ("block35_1_ac", "block17_20_ac", "block8_9_ac"):
        assert isinstance(ki.InceptionResNetV2(weights=None, include_top=False, input_shape=(
            75, 75, 3)).get_layer(name), keras.layers.Activation)


def test_ensemble_of_backbones_on_one_input_tensor():
    inputs = keras.Input((96, 96, 3))
    a = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=inputs, pooling="avg")
    b = ki.InceptionV4(weights=None, include_top=False, input_tensor=inputs, pooling="avg")
    c = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=inputs, pooling="avg",
                             name="second_inception_resnet_v2")
    ensemble = keras.Model(inputs, keras.layers.Concatenate()([a.output, b.output, c.output]))
    assert ensemble.output_shape == (None, 1536 * 3)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    out = np.asarray(ensemble(x))
    np.testing.assert_allclose(out[:, :1536], np.asarray(a(x)), atol=1e-5)
    np.testing.assert_allclose(out[:, 1536:3072], np.asarray(b(x)), atol=1e-5)
    # The network is reachable as the nested layer, and the library still recognises it.
    assert a.get_layer("inception_resnet_v2").get_layer("block17_20_ac") is not None
    assert ki.feature_info(a)[3].layer == "block17_20_ac"


def test_input_tensor_after_other_layers():
    """keras.applications' own test: a custom input tensor computed by a layer."""
    inputs = keras.Input((200, 200, 4), name="custom_input")
    x = keras.layers.Conv2D(3, (2, 2), padding="valid", strides=(2, 2))(inputs)
    model = ki.InceptionResNetV2(weights=None, include_top=False, input_tensor=x)
    assert model.output_shape[-1] == 1536
    assert model.inputs[0].name == inputs.name


def test_backend_tensor_as_input_tensor_is_refused_clearly():
    tensor = keras.ops.zeros((1, 96, 96, 3))
    with pytest.raises(ValueError, match=r"symbolic Keras tensor.*input_shape=tensor.shape\[1:\]"):
        ki.InceptionResNetV1(weights=None, include_top=False, input_tensor=tensor)


@pytest.mark.subprocess
def test_load_model_registers_the_layers_in_a_fresh_process(tmp_path):
    model = ki.InceptionResNetV1(weights=None, input_shape=(75, 75, 3), classes=3)
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 75, 75, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    proc = _run(
        "import sys, numpy as np, keras_inception as ki\n"
        f"m = ki.load_model({str(path)!r})\n"
        f"print(float(np.abs(np.asarray(m(np.load({str(tmp_path / 'x.npy')!r})))).sum()))"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(float(np.abs(np.asarray(model(x))).sum()),
                                                           rel=1e-5)

