"""A training run's folder: a finished run is never redone or overwritten without
`overwrite`, another run's folder is refused, two runs never share one, and what a run
writes (plots, report) says what it measured. Also: memory with large photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_inception import train as training
from keras_inception.train import run_folder
from keras_inception.train.report import plot_confusion, plot_curves, split_label, summary

MODEL, SIZE = "inception_resnet_v1", 75


def _config(out, base_weights, **changes) -> training.TrainConfig:
    values = dict(out=str(out), model=MODEL, image_size=SIZE, batch_size=10, epochs=1,
                  stage1_epochs=1, weights=base_weights, max_per_class=4, verbose=0)
    values.update(changes)
    return training.TrainConfig(**values)


@pytest.fixture(scope="module")
def finished_run(module_tmp_path, base_weights):
    """A finished one-epoch run (it trains: the tests that read it are marked `slow`)."""
    out = module_tmp_path / "run"
    report = training.train(_config(out, base_weights))
    return out, report


def _mtimes(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(finished_run, base_weights, capsys):
    out, report = finished_run
    before = _mtimes(out)
    again = training.train(_config(out, base_weights))
    assert again == json.loads((out / "report.json").read_text()) == report
    assert _mtimes(out) == before
    printed = capsys.readouterr().out
    assert "already finished" in printed and "--overwrite" in printed and str(out) in printed
    run = json.loads((out / "run.json").read_text())
    assert run["finished"] is True and run["config"]["model"] == MODEL


@pytest.mark.slow
def test_another_run_in_the_same_folder_is_refused(finished_run, base_weights):
    out, _ = finished_run
    before = _mtimes(out)
    with pytest.raises(run_folder.RunFolderError, match=r"model: 'inception_resnet_v1' in the "
                                                         r"folder, 'inception_v4' now"):
        training.train(_config(out, base_weights, model="inception_v4"))
    with pytest.raises(run_folder.RunFolderError, match="epochs: 1 in the folder, 3 now"):
        training.train(_config(out, base_weights, epochs=3))
    assert _mtimes(out) == before


def test_unfinished_run_of_another_config_keeps_its_backup(tmp_path, base_weights):
    out = tmp_path / "run"
    out.mkdir()
    run_folder.record_start(str(out), _config(out, base_weights))
    (out / "backup" / "head").mkdir(parents=True)
    (out / "backup" / "head" / "progress.json").write_text("{}")
    with pytest.raises(run_folder.RunFolderError, match="recipe: 'transfer' in the folder"):
        training.train(_config(out, base_weights, recipe="paper", weights="none"))
    assert (out / "backup" / "head" / "progress.json").is_file()


def test_a_refused_run_records_nothing(tmp_path, base_weights):
    """A run refused before it starts (here: no such --data) leaves no run.json, so the
    corrected command on the same --out is not taken for another run."""
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="missing"):
        training.train(_config(out, base_weights, data=str(tmp_path / "missing")))
    assert not [name for name in run_folder.RUN_OUTPUTS if (out / name).exists()]
    assert run_folder.check(str(out), _config(out, base_weights), overwrite=False,
                            chief=True) is None


def test_the_same_data_folder_by_another_path_is_the_same_run(tmp_path, base_weights,
                                                               monkeypatch):
    """--data compares by resolved path: absolute or relative, the same folder is the same
    run; the same relative path from another working directory is another folder."""
    from keras_inception.train.data import sample_dir

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for root in (here, elsewhere):
        os.makedirs(root / "images")
    os.symlink(sample_dir(), here / "images" / "flowers")
    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.chdir(here)
    run_folder.record_start(str(out), _config(out, base_weights, data="images/flowers"))
    for same in ("images/flowers", str(here / "images" / "flowers"), "./images/flowers/"):
        assert run_folder.check(str(out), _config(out, base_weights, data=same),
                                overwrite=False, chief=True) is None
    monkeypatch.chdir(elsewhere)
    with pytest.raises(run_folder.RunFolderError, match="data: "):
        run_folder.check(str(out), _config(out, base_weights, data="images/flowers"),
                         overwrite=False, chief=True)


def test_foreign_outputs_need_overwrite(tmp_path, base_weights):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("epoch,stage\n1,head\n")
    with pytest.raises(run_folder.RunFolderError, match="no run.json.*--overwrite"):
        training.train(_config(out, base_weights))
    assert (out / "history.csv").read_text() == "epoch,stage\n1,head\n"


@pytest.mark.slow
def test_overwrite_starts_again(tmp_path, base_weights):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("epoch,stage\n7,old\n")
    (out / "notes.txt").write_text("mine")  # not a run output: kept
    report = training.train(_config(out, base_weights, overwrite=True))
    rows = training.read_history(str(out / "history.csv"))
    assert [r["epoch"] for r in rows] == [1] and report["epochs"] == 1
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.subprocess
def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, base_weights):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{holder.pid}\n")
        with pytest.raises(run_folder.RunFolderError, match=rf"in use by another training run "
                                                             rf"\(pid {holder.pid}\)"):
            training.train(_config(out, base_weights))
        assert (out / ".lock").read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now: its stale lock is taken over, and released at the end.
    with run_folder.locked(str(out)):
        assert (out / ".lock").read_text().strip() == str(os.getpid())
    assert not (out / ".lock").exists()


@pytest.mark.subprocess
def test_out_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_inception.cli", "train", "--model", MODEL, "--weights",
         "none", "--image-size", str(SIZE), "--out", str(target)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(target) in errors[0] and "is a file" in errors[0]
    assert target.read_text() == "x"


def test_stage1_epochs_zero_means_fine_tune_only(tmp_path, base_weights):
    plan = training.plan_stages(_config(tmp_path, base_weights, epochs=2, stage1_epochs=0), 5)
    model, stages = plan.model, plan.stages
    assert [(s.name, s.start, s.end) for s in stages] == [("fine_tune", 0, 2)]
    assert model.output_shape == (None, 5)
    with pytest.raises(ValueError, match="stage1_epochs"):
        _config(tmp_path, base_weights, stage1_epochs=-1).validate()
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="learning_rate"):
            _config(tmp_path, base_weights, learning_rate=bad).validate()


@pytest.mark.slow
def test_report_names_its_weights_file_by_content(finished_run, base_weights):
    _, report = finished_run
    assert report["weights"].startswith(f"file {os.path.basename(base_weights)} (sha256 ")
    assert base_weights not in report["weights"]


@pytest.mark.slow
def test_plots_have_titles_integer_epochs_and_a_unit_accuracy_axis(finished_run):
    from matplotlib import pyplot as plt

    history = [{"epoch": e, "stage": "head" if e < 3 else "fine_tune", "loss": 1.0 / e,
                "accuracy": 0.2 * e, "val_loss": 1.2 / e, "val_accuracy": 0.15 * e}
               for e in range(1, 5)]
    fig = plot_curves(history, "IR-v1 on flowers")
    try:
        assert fig._suptitle.get_text() == "IR-v1 on flowers"
        loss_ax, acc_ax = fig.axes
        assert acc_ax.get_ylim() == (0.0, 1.0)
        ticks = [t for t in acc_ax.get_xticks() if 1 <= t <= 4]
        assert ticks and all(float(t).is_integer() for t in ticks)
    finally:
        plt.close(fig)
    confusion = np.array([[9, 1], [0, 10]])
    fig = plot_confusion(confusion, ["a", "b"], "accuracy 95.0%")
    try:
        ax = fig.axes[0]
        assert ax.get_title() == "accuracy 95.0%"
        colors = {t.get_text(): t.get_color() for t in ax.texts}
        assert colors["10"] == "white" and colors["0"] == "black"
    finally:
        plt.close(fig)


def test_evaluating_the_train_split_is_not_called_validation():
    report = {"model": "m.keras", "data": "flowers_sample", "image_size": SIZE, "accuracy": 0.5,
              "num_images": 20, "per_class_accuracy": {"a": 0.5}, "split": "train"}
    assert split_label(report) == "training"
    assert "training accuracy 50.0%" in summary(report)
    assert "validation" not in summary(report)
    assert "validation accuracy" in summary({**report, "split": "val"})


# `keras-inception train` on the toy network (registered by importing its module, before the
# command line lists the networks): the memory measured is the data's. The peak is the
# process's VmHWM: its ru_maxrss starts at the RSS of the process that started it (Linux
# carries it over fork and exec), here pytest's, larger than a toy run's.
SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    import support.toy_net
    from keras_inception.cli import main
    code = main(["train", "--model", "toy_net", "--image-size", "75", "--batch-size", "8",
                 "--epochs", "1", "--weights", "none", "--data", sys.argv[1],
                 "--out", sys.argv[2]])
    with open("/proc/self/status", encoding="ascii") as f:
        print(next(line for line in f if line.startswith("VmHWM:")))
    sys.exit(code)
""")


def _peak_rss_kb(data: str, out: str) -> int:
    """The peak resident memory of a `train` run in a fresh interpreter, in KiB."""
    tests = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, data, out, tests], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(next(line.split()[1] for line in proc.stdout.splitlines()
                    if line.startswith("VmHWM:")))


def _photos(root: Path, scale: int) -> None:
    """24 photos (3 classes, 4 train + 4 val each) of 4000x3000 pixels divided by `scale`:
    a gradient with noise, one file per class linked under the other names (each file is
    decoded all the same)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:3000, 0:4000]
    base = np.stack([(xx * 255 // 4000), (yy * 255 // 3000), ((xx + yy) % 256)], -1)
    for c in range(3):
        pixels = (base + 40 * c + rng.integers(0, 24, base.shape)) % 256
        photo = Image.fromarray(pixels.astype(np.uint8))
        if scale != 1:
            photo = photo.resize((4000 // scale, 3000 // scale))
        first = root / "train" / f"class{c}" / "0.jpg"
        first.parent.mkdir(parents=True)
        photo.save(first, quality=90)
        (root / "val" / f"class{c}").mkdir(parents=True)
        for name in [f"train/class{c}/{i}.jpg" for i in range(1, 4)] + [
                f"val/class{c}/{i}.jpg" for i in range(4)]:
            os.link(first, root / name)


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_large_photos_are_resized_before_they_are_cached(tmp_path):
    """24 photos of 4000x3000 against the same 24 at 400x300: the peak memory of a
    `train` run may grow by at most 400 MB (here 120-200 MB: a few photos decoded at a
    time). Decoding them one per core, with as many buffered, and the evaluation crop on a
    float32 copy of each whole photo, took 450-490 MB more on two cores, and more with
    each core; caching them whole, 1.4 GB."""
    for name, scale in (("large", 1), ("small", 10)):
        _photos(tmp_path / name, scale)
    small = _peak_rss_kb(str(tmp_path / "small"), str(tmp_path / "out_small"))
    large = _peak_rss_kb(str(tmp_path / "large"), str(tmp_path / "out_large"))
    assert (large - small) / 1024 <= 400, (small, large)
