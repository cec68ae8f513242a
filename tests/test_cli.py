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


@pytest.mark.slow
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


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"keras-inception {command}: error: "), err
    assert "Traceback" not in err and "Errno" not in err
    return lines[0]


def test_predict_with_an_embedding_model_points_to_embed_and_verify(capsys):
    """FaceNet has no classes: one line naming `embed` and `verify`, before any download."""
    assert main(["predict", "--model", "facenet", "--weights", "ms_celeb_1m",
                 sample_image_path()]) == 2
    line = _one_error_line(capsys.readouterr().err, "predict")
    assert "--model facenet" in line and "keras-inception embed" in line
    assert "keras-inception verify" in line


def test_convert_of_a_file_that_is_not_the_source_format_is_one_line(tmp_path, capsys):
    """A random .safetensors (--from timm) and a random file (--from slim): one line naming
    SRC, the format and what was expected, exit 2, nothing written."""
    junk = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "random.safetensors").write_bytes(junk)
    (tmp_path / "random.ckpt").write_bytes(junk)
    out = tmp_path / "out.weights.h5"
    for source, src, expected in (("timm", "random.safetensors", "timm state dict"),
                                  ("slim", "random.ckpt", "TF-slim checkpoint")):
        assert main(["convert", "--from", source, str(tmp_path / src), "--model", "inception_v4",
                     "--no-top", "--out", str(out)]) == 2
        line = _one_error_line(capsys.readouterr().err, "convert")
        assert f"Cannot read SRC {str(tmp_path / src)!r} as --from {source}" in line
        assert expected in line
    assert not out.exists()


@pytest.mark.slow
def test_convert_refuses_an_existing_out_unless_overwrite(tmp_path, capsys):
    """Like `export` and `embed`: an existing --out is kept (refused before any work) unless
    --overwrite is given; an --out inside a file names --out."""
    source = ki.InceptionResNetV1(weights=None, include_top=False)
    randomize_weights(source, seed=3)
    src = tmp_path / "src.weights.h5"
    source.save_weights(src)
    out = tmp_path / "out.weights.h5"
    out.write_bytes(b"previous")
    argv = ["convert", "--from", "keras", str(src), "--model", "inception_resnet_v1", "--no-top",
            "--out", str(out)]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "convert")
    assert "`--out` already exists" in line and "Pass --overwrite" in line
    assert "overwrite=True" not in line
    assert out.read_bytes() == b"previous"
    assert main([*argv[:-1], str(src / "x.weights.h5")]) == 2
    line = _one_error_line(capsys.readouterr().err, "convert")
    assert "`--out` is inside" in line and "which is a file" in line
    assert main([*argv, "--overwrite"]) == 0
    assert f"-> {out}" in capsys.readouterr().out  # written and verified by reloading
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
