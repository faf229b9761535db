"""Defects a line-by-line review found (each test failed on the reviewed revision)."""

from __future__ import annotations

import json
from pathlib import Path

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
