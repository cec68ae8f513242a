"""OpenVINO IR export (float32 and NNCF int8), its metadata, running it (`runtime.Classifier`,
`predict --openvino`), its overwrite rule and its optional extra."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

# The openvino extra is part of `make venv`: a missing package fails here, never skips.
import openvino  # noqa: F401
import pytest
from support.helpers import randomize_weights, rel_l2
from support.runners import assert_one_line_error, run_cli, run_python

import keras_inception as ki  # noqa: E402
from keras_inception.export import openvino as ov_export  # noqa: E402
from keras_inception.metadata import METADATA_KEY, MetadataError, ModelMetadata, describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FLOWERS = REPO / "keras_inception" / "assets" / "flowers_sample"
SIZE = 75
NAMES = ("daisy", "dandelion", "roses")
OV_EXTRA = 'pip install "keras_inception[openvino]"'


def val_images(count: int = 3) -> list[str]:
    return [str(p) for p in sorted((FLOWERS / "val").rglob("*.jpg"))[:count]]


@pytest.fixture(scope="module")
def small(module_tmp_path):
    """IR-v1 at 75 px, 3 classes, random non-trivial weights, carrying class names and a
    crop of 1.0 (not the 0.875 default: a reader that ignores the file's crop differs);
    saved as .keras and exported to OpenVINO float32."""
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    randomize_weights(model)
    metadata = ModelMetadata(image_size=(SIZE, SIZE), crop_pct=1.0, class_names=NAMES)
    model = describe(model, metadata)
    keras_path = module_tmp_path / "small.keras"
    model.save(keras_path)
    xml = ov_export.export_openvino(model, module_tmp_path / "small.xml")
    return model, keras_path, xml, metadata


@pytest.mark.slow
def test_float32_export_matches_keras_and_carries_the_metadata(small):
    """rel L2 <= 1e-4 against Keras, measured by the export and again here on other images;
    the metadata in the IR's rt_info, read without OpenVINO and by OpenVINO itself."""
    import openvino as ov

    model, _, xml, metadata = small
    assert isinstance(xml, ov_export.OpenVINOFile) and xml.endswith(".xml")
    assert Path(xml.weights).is_file() and xml.weights.endswith("small.bin")
    assert xml.rel_l2 is not None and xml.rel_l2 <= 1e-4 and xml.agreement is None
    images = np.random.default_rng(7).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    got = ov_export.OpenVINOImageModel(xml).run(images)
    assert rel_l2(got, model(images, training=False)) <= 1e-4
    assert ov_export.read_openvino_metadata(xml) == metadata
    stored = ov.Core().read_model(xml).get_rt_info([METADATA_KEY]).astype(str)
    assert ModelMetadata.from_json(stored) == metadata
    # Nothing left beside the two files (staging folders, converters' temporary files).
    assert sorted(p.name for p in Path(xml).parent.iterdir() if p.name.startswith((".", "small"))
                  and not p.name.endswith(".keras")) == ["small.bin", "small.xml"]


@pytest.mark.slow
def test_read_metadata_dispatches_xml(small):
    from keras_inception.metadata import read_metadata

    assert read_metadata(small[2]) == small[3]


@pytest.mark.slow
def test_bf16_precision_is_selectable_and_close(small):
    """The CPU plugin's bf16 (where the CPU has it) is chosen only when asked: f32 by default."""
    import openvino as ov

    model, _, xml, _ = small
    runner = ov_export.OpenVINOImageModel(xml)
    assert str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 instructions")
    fast = ov_export.OpenVINOImageModel(xml, inference_precision="bf16")
    images = np.random.default_rng(3).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    expected = np.asarray(model(images, training=False))
    assert 0 < rel_l2(fast.run(images), expected) < 5e-2
    assert rel_l2(runner.run(images), expected) <= 1e-4
    with pytest.raises(ValueError, match="inference_precision.*received inference_precision='fp16'"):
        ov_export.OpenVINOImageModel(xml, inference_precision="fp16")


@pytest.mark.slow
def test_classifier_opens_xml_with_the_keras_answers(small):
    """`runtime.Classifier("x.xml")`: the .keras model's top-1 and the file's class names."""
    from keras_inception.export.runtime import Classifier
    from keras_inception.preprocessing import load_image, preprocess_input

    model, _, xml, _ = small
    classifier = Classifier(xml)
    from keras_inception.export.openvino_runtime import OpenVINORunner

    assert isinstance(classifier, Classifier) and isinstance(classifier, OpenVINORunner)
    assert classifier.class_names == list(NAMES) and classifier.crop_pct == 1.0
    files = val_images()
    images = np.stack([load_image(p, SIZE, crop_pct=1.0) for p in files])
    expected = np.asarray(model(preprocess_input(images), training=False))
    got = classifier.classify_files(files, k=3)
    assert [row[0][1] for row in got] == [NAMES[i] for i in expected.argmax(-1)]
    np.testing.assert_allclose([[score for _, _, score in sorted(row)] for row in got], expected,
                               atol=1e-5)
    with pytest.raises(ValueError, match="is a classifier"):
        from keras_inception.export.runtime import Embedder

        Embedder(xml)


@pytest.mark.slow
def test_embedder_opens_xml_with_the_keras_embeddings(tmp_path):
    """`runtime.Embedder("x.xml")`: FaceNet (standardisation inside, random weights) gives
    Keras' embeddings; its metadata says raw crops and whole-crop resizing."""
    from keras_inception.export.runtime import Embedder

    model = ki.FaceNet(weights=None, include_preprocessing=True, input_shape=(SIZE, SIZE, 3))
    randomize_weights(model)
    xml = ov_export.export_openvino(model, tmp_path / "facenet.xml")
    embedder = Embedder(xml)
    crops = np.random.default_rng(5).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    expected = np.asarray(model(crops, training=False))
    np.testing.assert_allclose(embedder.embed(crops), expected, atol=1e-5)
    assert embedder.embedding_dim == 128 and embedder.input_scaling == "raw"
    assert embedder.crop_pct == 1.0


def _predictions(stdout: str) -> list[tuple[str, float]]:
    """(label, score) of every line `N. LABEL SCORE` that `predict` prints."""
    return [(m.group(1), float(m.group(2)))
            for m in re.finditer(r"^\s+\d+\. (\S+)\s+([0-9.]+)$", stdout, re.M)]


@pytest.mark.slow
def test_predict_openvino_gives_the_keras_models_answers(small):
    _, keras_path, xml, _ = small
    images = val_images()
    with_keras = run_cli("predict", "--model", str(keras_path), *images, "--top", "3")
    with_openvino = run_cli("predict", "--openvino", str(xml), *images, "--top", "3")
    assert with_keras.returncode == 0 and with_openvino.returncode == 0, with_openvino.stderr
    expected, got = _predictions(with_keras.stdout), _predictions(with_openvino.stdout)
    assert len(got) == 9 and [label for label, _ in got] == [label for label, _ in expected]
    assert {label for label, _ in got} <= set(NAMES)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=2e-4)
    assert "note:" not in with_openvino.stderr  # crop and names came from the file


@pytest.mark.slow
def test_predict_openvino_refuses_bad_files_in_one_line(small, tmp_path):
    xml = Path(small[2])
    image = val_images(1)
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(xml.read_bytes()[:2000])
    shutil.copy(xml.with_suffix(".bin"), tmp_path / "truncated.bin")
    proc = run_cli("predict", "--openvino", str(truncated), *image)
    assert_one_line_error(proc, "truncated.xml", "not an OpenVINO IR")
    foreign = tmp_path / "foreign.xml"
    foreign.write_text("<?xml version='1.0'?><config><entry name='a'/></config>\n")
    assert_one_line_error(run_cli("predict", "--openvino", str(foreign), *image),
                          "foreign.xml", "<config>")
    alone = tmp_path / "alone.xml"
    shutil.copy(xml, alone)  # without its .bin
    assert_one_line_error(run_cli("predict", "--openvino", str(alone), *image),
                          "alone.bin", "not found")
    not_xml = tmp_path / "model.tflite"
    not_xml.write_bytes(b"\0" * 64)
    assert_one_line_error(run_cli("predict", "--openvino", str(not_xml), *image), "--openvino",
                          ".xml")


@pytest.mark.slow
def test_int8_export_measures_and_prints_its_agreement(small, tmp_path):
    """The command line's int8 export (NNCF, calibrated on flowers photos) prints the top-1
    agreement it measured; the same figure comes out of the exported file here."""
    from keras_inception.export import QuantizationWarning, calibration_dataset
    from keras_inception.export.checks import keras_outputs

    model, keras_path, _, _ = small
    out = tmp_path / "int8.xml"
    with pytest.warns(QuantizationWarning, match="8 images \\(fewer than 100\\)"):
        proc = run_cli("export", "--model", str(keras_path), "--format", "openvino", "--quantize",
                       "int8", "--calibration-data", str(FLOWERS / "train"),
                       "--calibration-size", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = re.search(r"top-1 agreement with the Keras model ([0-9.]+)% on its 8 calibration "
                        r"images", proc.stdout)
    assert printed, proc.stdout
    images = np.stack(list(calibration_dataset(FLOWERS / "train", SIZE, count=8, crop_pct=1.0)
                           .as_numpy_iterator()))
    got = ov_export.OpenVINOImageModel(out).run(images).argmax(-1)
    measured = float(np.mean(got == keras_outputs(model, images).argmax(-1)))
    assert float(printed.group(1)) == pytest.approx(100 * measured, abs=0.05)
    assert ov_export.read_openvino_metadata(out).class_names == NAMES
    assert out.read_text().count('type="FakeQuantize"') > 50  # NNCF's int8 quantizers


def _facenet_classifier():
    """A 3-class head on FaceNet's pooled backbone at 75 px (takes [-1, 1], maps it to 0-255
    and standardises each image inside, as the `make demo` model does), random weights."""
    import keras

    from keras_inception.models import pooled_backbone

    base = pooled_backbone("facenet", None, (SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(base(inputs)))
    randomize_weights(model)
    return model


@pytest.mark.slow
def test_int8_keeps_the_per_image_standardisation_in_float(tmp_path):
    """In the int8 IR of a FaceNet-based classifier no FakeQuantize feeds the ops before the
    first convolution (the [-1, 1] -> 0-255 map, the per-image mean, square, variance,
    max and divide): they stay float, only the first convolution's input is int8. So, as in
    Keras, the answers do not change with an image's contrast and brightness (rounding the
    mean and the standard deviation to 8 bits of the calibration's range would)."""
    import openvino as ov

    from keras_inception.export import QuantizationWarning, calibration_dataset
    from keras_inception.export.checks import keras_outputs

    model = _facenet_classifier()
    calibration = np.stack(list(calibration_dataset(FLOWERS / "train", SIZE, count=8,
                                                    crop_pct=1.0).as_numpy_iterator()))
    with pytest.warns(QuantizationWarning):  # 8 images, random weights
        xml = ov_export.export_openvino(model, tmp_path / "int8.xml", quantization="int8",
                                        representative_data=calibration,
                                        fast_bias_correction=True)  # a shorter export
    ir = ov.Core().read_model(xml)
    front = set(ov_export.input_preprocessing_ops(ir))
    ops = [op for op in ir.get_ops() if op.get_friendly_name() in front]
    assert {"ReduceMean", "Subtract", "Power", "Maximum", "Divide"} <= {
        op.get_type_name() for op in ops}
    quantized = [op.get_type_name() for op in ops if any(
        value.get_node().get_type_name() == "FakeQuantize" for value in op.input_values())]
    assert quantized == []
    first = [op.input_value(0).get_node() for op in ir.get_ops()
             if op.get_type_name() == "Convolution"
             and op.input_value(0).get_node().get_friendly_name() in front]
    assert len(first) == 1 and first[0].get_type_name() == "FakeQuantize"  # int8 from there
    images = calibration[:4]
    dimmed = 0.25 * images + 0.3  # the same photos, 4x less contrast, brighter: still [-1, 1]
    expected = keras_outputs(model, images)
    assert rel_l2(keras_outputs(model, dimmed), expected) < 1e-4
    runner = ov_export.OpenVINOImageModel(xml)
    assert rel_l2(runner.run(dimmed), runner.run(images)) < 1e-2


@pytest.mark.slow
def test_export_refuses_what_it_did_not_write(small, tmp_path):
    """No --overwrite: an existing .xml (or .bin) is refused before any work; with it, only a
    model this package exported is replaced, never another IR or a lone .bin."""
    model, keras_path, xml, _ = small
    target = tmp_path / "m.xml"
    shutil.copy(xml, target)
    shutil.copy(Path(xml).with_suffix(".bin"), tmp_path / "m.bin")
    proc = run_cli("export", "--model", str(keras_path), "--format", "openvino", "--out",
                   str(target))
    assert_one_line_error(proc, "already exists", "m.xml", "--overwrite")
    assert "tensorflow" not in proc.stderr.lower()
    lone = tmp_path / "lone.bin"
    lone.write_bytes(b"data")
    assert_one_line_error(run_cli("export", "--model", str(keras_path), "--format", "openvino",
                                  "--out", str(tmp_path / "lone.xml"), "--overwrite"),
                          "lone.bin", "exists without")
    foreign = tmp_path / "foreign.xml"
    text = Path(xml).read_text().replace(f"<{METADATA_KEY} ", "<other_key ")
    foreign.write_text(text)
    with pytest.raises(FileExistsError, match="did not export"):
        ov_export.export_openvino(model, foreign, overwrite=True)
    assert foreign.read_text() == text and lone.read_bytes() == b"data"
    replaced = ov_export.export_openvino(model, target, overwrite=True)
    assert replaced.rel_l2 <= 1e-4 and ov_export.read_openvino_metadata(target) == small[3]


def test_bad_arguments_are_one_line(tmp_path):
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    with pytest.raises(ValueError, match="`quantization` must be one of.*'int4'"):
        ov_export.export_openvino(model, tmp_path / "m.xml", quantization="int4")
    with pytest.raises(ValueError, match="needs `representative_data`"):
        ov_export.export_openvino(model, tmp_path / "m.xml", quantization="int8")
    with pytest.raises(ValueError, match="fast_bias_correction` must be True or False.*'yes'"):
        ov_export.export_openvino(model, tmp_path / "m.xml", quantization="int8",
                                  representative_data=np.zeros((1, SIZE, SIZE, 3), np.float32),
                                  fast_bias_correction="yes")
    with pytest.raises(ValueError, match="fast_bias_correction` is only used with.*int8"):
        ov_export.export_openvino(model, tmp_path / "m.xml", fast_bias_correction=True)
    with pytest.raises(ValueError, match="must end with '.xml'"):
        ov_export.export_openvino(model, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
    with pytest.raises(MetadataError, match="not an OpenVINO IR"):
        (tmp_path / "x.xml").write_text("not xml at all <")
        ov_export.read_openvino_metadata(tmp_path / "x.xml")


def test_missing_extra_is_one_line(monkeypatch, tmp_path):
    """Without openvino (or nncf for int8): one line naming the extra, from the API and
    from the command line before TensorFlow is imported."""
    model = ki.InceptionResNetV1(weights=None, input_shape=(SIZE, SIZE, 3), classes=3)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=re.escape(OV_EXTRA)) as error:
        ov_export.export_openvino(model, tmp_path / "m.xml", quantization="int8",
                                  representative_data=np.zeros((1, SIZE, SIZE, 3), np.float32))
    assert "nncf" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=re.escape(OV_EXTRA)):
        ov_export.export_openvino(model, tmp_path / "m.xml")
    proc = run_cli("export", "--model", "inception_resnet_v1", "--weights", "none",
                   "--format", "openvino", "--out", str(tmp_path / "m.xml"))
    assert_one_line_error(proc, "openvino", OV_EXTRA)
    assert not list(tmp_path.iterdir())


@pytest.mark.subprocess
def test_the_core_never_imports_openvino():
    """`keras_inception`, its export package, the runtimes and the metadata readers load
    neither openvino nor nncf."""
    code = ("import json, sys\n"
            "import keras_inception, keras_inception.export, keras_inception.metadata\n"
            "import keras_inception.export.runtime, keras_inception.export.openvino\n"
            "from keras_inception.export import export_openvino, read_openvino_metadata\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'openvino', 'nncf'})))")
    proc = run_python(code, env={"KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []
