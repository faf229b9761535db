"""Defects a line-by-line review found (each test failed on the reviewed revision)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from onnxmodels import mean_colour_model
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return mean_colour_model(tmp_path / "colour.onnx")


def test_benchmark_json_to_unwritable_path_fails_before_running(tmp_path, model, monkeypatch):
    import edgecnn.tools.bench as bench

    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran although its results could not be written")

    monkeypatch.setattr(bench, "run_benchmark", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for target in (blocker / "out.json", tmp_path):  # a folder that cannot exist; a folder, not a file
        result = runner.invoke(app, ["benchmark", str(model), "--json", str(target)])
        assert result.exit_code == 2, result.output
        assert (
            "Traceback" not in result.output
            and result.exception is None
            or isinstance(result.exception, SystemExit)
        )
        assert "error:" in result.stderr


def test_benchmark_json_is_written_whole(tmp_path, model):
    target = tmp_path / "deep" / "bench.json"
    result = runner.invoke(
        app,
        [
            "benchmark",
            str(model),
            "--json",
            str(target),
            "--runs",
            "1",
            "--warmup",
            "0",
            "--peak-seconds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["rows"]
    assert not list(target.parent.glob(".*partial*"))


# --- classify: nothing lost ----------------------------------------------------------------------------------

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    from imagefiles import save
    from onnxmodels import solid

    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        for name, colour in COLOURS.items():
            save(solid(colour), root / f"{name}_{i}.png")
    return root


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_force_with_a_bad_sort_folder_keeps_the_results_file(tmp_path, model, photos):
    out = tmp_path / "results.csv"
    assert (
        runner.invoke(app, ["classify", str(photos), "--model", str(model), "-o", str(out), "-q"]).exit_code
        == 0
    )
    before = out.read_bytes()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the sort folder should go")
    result = runner.invoke(
        app,
        [
            "classify",
            str(photos),
            "--model",
            str(model),
            "-o",
            str(out),
            "--force",
            "--sort-into",
            str(blocker / "x"),
        ],
    )
    assert result.exit_code == 2 and "error:" in result.stderr
    assert out.read_bytes() == before


def test_failed_sort_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    import shutil

    import edgecnn.apps.sorting as sorting

    source = tmp_path / "a.png"
    source.write_bytes(b"x" * 100)

    def half_copy(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"x" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", half_copy)
    sorter = sorting.Sorter(tmp_path / "sorted")
    with pytest.raises(OSError, match="No space"):
        sorter.place(source, "red", 0.9)
    assert [p.name for p in (tmp_path / "sorted").rglob("*") if p.is_file()] == []


def test_move_that_cannot_remove_its_source_is_undone_and_retried_by_resume(
    tmp_path, model, photos, monkeypatch
):
    out = tmp_path / "results.csv"
    target = tmp_path / "sorted"
    stuck = photos / "red_1.png"
    real_unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self == stuck:
            raise PermissionError(13, "Permission denied")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    args = [
        "classify",
        str(photos),
        "--model",
        str(model),
        "-o",
        str(out),
        "--sort-into",
        str(target),
        "--move",
    ]
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 1
    row = next(r for r in _rows(out) if r["path"].endswith("red_1.png"))
    assert row["status"] == "skipped" and "cannot move" in row["error"]
    assert stuck.exists() and not (target / "red" / "red_1.png").exists()  # in one place only
    monkeypatch.setattr(Path, "unlink", real_unlink)
    result = runner.invoke(app, [*args, "--resume", "-q"])
    assert result.exit_code == 0, result.output
    assert not stuck.exists() and (target / "red" / "red_1.png").exists()
    assert _rows(out)[-1]["path"].endswith("red_1.png") and _rows(out)[-1]["status"] == "ok"


def test_sorted_file_names_are_cut_at_255_bytes_not_120_characters(tmp_path):
    from edgecnn.apps.sorting import Sorter, safe_folder_name

    long_label = "é" * 200  # 400 bytes
    folder = safe_folder_name(long_label)
    assert len(folder.encode()) <= 255 and len(folder) > 120
    sorter = Sorter(tmp_path / "sorted")
    named = tmp_path / (("b" * 150) + ".png")
    named.write_bytes(b"png")
    second = sorter.place(named, "a", 0.9)
    again = sorter.place(named, "a", 0.9)  # a clash: numbered, still within 255 bytes
    assert second.name == named.name and len(second.name) > 120
    assert again.name != second.name and len(os.fsencode(again.name)) <= 255
    longest = tmp_path / (("ж" * 125) + ".png")  # 254 bytes: a numbered clash must be cut to fit
    longest.write_bytes(b"png")
    sorter.place(longest, "a", 0.9)
    clash = sorter.place(longest, "a", 0.9)
    assert len(os.fsencode(clash.name)) <= 255 and clash.read_bytes() == b"png"


def test_resume_matches_relative_and_absolute_spellings(tmp_path, model, photos, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results.csv"
    first = runner.invoke(app, ["classify", "photos", "--model", str(model), "-o", str(out), "-q"])
    assert first.exit_code == 0
    again = runner.invoke(
        app, ["classify", str(photos.resolve()), "--model", str(model), "-o", str(out), "--resume", "-q"]
    )
    assert again.exit_code == 0
    assert len(_rows(out)) == 9  # nothing redone
    assert "9 already in" in again.stderr


def test_resume_on_an_unreadable_results_file_is_a_one_line_error(tmp_path, model, photos):
    out = tmp_path / "results.csv"
    out.mkdir()  # unreadable as a file (root can read any file, so a folder stands in)
    result = runner.invoke(app, ["classify", str(photos), "--model", str(model), "-o", str(out), "--resume"])
    assert result.exit_code == 2 and "error: cannot resume from" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("label", ["[unsorted]", "x[/b]y", "[bold red]loud"])
def test_labels_with_rich_markup_print_as_text(tmp_path, photos, label):
    model = mean_colour_model(tmp_path / "m.onnx", labels=(label, "green", "blue"))
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "-o", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 0, result.output
    assert label in result.stderr


def test_predictor_and_model_close_as_context_managers(model):
    import edgecnn
    from edgecnn.core.errors import ModelFileError
    from edgecnn.runtime.predictor import Predictor

    with Predictor(model, provider="cpu") as predictor:
        assert predictor.predict_batch(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 3)
    with pytest.raises(ModelFileError, match="closed"):
        predictor.predict_batch(np.zeros((1, 16, 16, 3), np.float32))
    with edgecnn.load(model, provider="cpu") as m:
        assert m.predict(np.full((20, 20, 3), (200, 0, 0), np.uint8)).label == "red"
    with pytest.raises(ModelFileError):
        m.predict(np.zeros((20, 20, 3), np.uint8))


def test_doctor_exits_2_not_1_when_the_environment_is_broken(monkeypatch):
    """Exit code 1 means skipped inputs (README); a broken environment is exit code 2 like every other."""
    import edgecnn.tools.doctor as doctor

    real = doctor.run_doctor

    def no_cpu(probe_cameras: int = 2):
        report = real(probe_cameras=0)
        report["ok"] = False
        return report

    monkeypatch.setattr(doctor, "run_doctor", no_cpu)
    result = runner.invoke(app, ["doctor", "--cameras", "0"])
    assert result.exit_code == 2
    monkeypatch.setattr(doctor, "run_doctor", real)
    assert runner.invoke(app, ["doctor", "--cameras", "0"]).exit_code == 0  # CPU works here


@pytest.mark.parametrize("name", ["[unsorted].onnx", "[bold red]loud.onnx"])
def test_benchmark_table_prints_markup_in_names_as_text(tmp_path, name):
    model = mean_colour_model(tmp_path / name)
    result = runner.invoke(
        app, ["benchmark", str(model), "--runs", "1", "--warmup", "0", "--peak-seconds", "0"]
    )
    assert result.exit_code == 0, result.output
    shown = result.stderr.replace("\n", "").replace("│", "").replace(" ", "")
    assert name.replace(" ", "") in shown


def test_classify_counting_thread_ends_with_the_run(tmp_path, model, photos, monkeypatch):
    """The background count of files (for the progress bar) stops when the run stops, not after it."""
    import threading
    import time

    import edgecnn.apps.classify as classify_module
    from edgecnn.apps.classify import ClassifyConfig, classify_batches, new_summary
    from edgecnn.runtime.predictor import Predictor

    real = classify_module.iter_image_files

    def slow_off_the_main_thread(*args, **kwargs):
        for path in real(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                time.sleep(0.2)  # a slow network share, seen by the counting thread only
            yield path

    monkeypatch.setattr(classify_module, "iter_image_files", slow_off_the_main_thread)
    predictor = Predictor(model, provider="cpu")
    config = ClassifyConfig(paths=[photos], batch_size=4)
    before = set(threading.enumerate())
    batches = classify_batches(config, predictor, new_summary(config, predictor), lambda d, t: None, True)
    next(batches)
    batches.close()  # the run stops after one batch; counting the 9 files would take 1.8 s more
    time.sleep(0.5)
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_progress_rate_counts_from_the_start_of_the_run(tmp_path, model, photos, monkeypatch):
    """images/s on the progress bar divides by the time since the run began, first batch included."""
    import edgecnn.api.inference as inference
    import edgecnn.cli.render as render
    from edgecnn.api import classify

    rates = []
    real = inference.classify_batches

    def slow_first_batch(*args, **kwargs):
        import time

        time.sleep(0.5)  # a slow first batch (decoding, session warm-up) before the first progress call
        yield from real(*args, **kwargs)

    class Recorder:
        def __init__(self, *columns, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, *args, **kwargs):
            return 0

        def update(self, task, completed, total, rate):
            rates.append((completed, rate))

    monkeypatch.setattr(inference, "classify_batches", slow_first_batch)
    import rich.progress

    monkeypatch.setattr(rich.progress, "Progress", Recorder)
    with render.progress_bar() as on_progress:
        classify([photos], model=model, provider="cpu", batch_size=4, on_progress=on_progress)
    done, rate = next((d, r) for d, r in rates if d)
    assert done == 4 and rate < 4 / 0.5  # counted from before the slow first batch
