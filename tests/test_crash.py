"""Crash consistency: `edgecnn classify` and `edgecnn export` killed with SIGKILL at random moments.

classify: after each kill the results file is valid as it stands (whole CSV rows / JSON lines, at most a torn
last line that --resume drops; a .json file is always a complete document), and --resume completes it with
no result missing or duplicated. export: the output path is never a partial model; it is absent or a
complete, loadable edgecnn model. The stress variants (`-m stress`, `make stress`) run many more trials on
a 20,000-file folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from onnxmodels import mean_colour_model
from PIL import Image
from typer.testing import CliRunner

from edgecnn.apps.outputs import CSV_FIELDS
from edgecnn.cli import app
from edgecnn.core.resultfile import iter_records

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals (SIGKILL)")
runner = CliRunner()
FORMATS = (".csv", ".jsonl", ".json")
BAD_FILES = {"bad-empty.jpg": b"", "bad-text.png": b"not an image\n"}


def write_folder(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` tiny PNGs of random flat colours and two bad files; returns the paths, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (count, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        Image.fromarray(np.broadcast_to(colour, (8, 8, 3)).copy()).save(folder / f"img_{i:05d}.png")
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    return sorted(str(p) for p in folder.iterdir())


@dataclass
class FileCheck:
    """What a killed run left behind."""

    existed: bool
    rows: list[dict]
    torn_tail: bool = False
    problems: list[str] = field(default_factory=list)


def parse_results(path: Path, expected: set[str]) -> FileCheck:
    """Parse a results file strictly; a torn last line (no newline yet) is reported, not an error."""
    if not path.exists():
        return FileCheck(False, [])
    data = path.read_bytes()
    check = FileCheck(True, [])
    if path.suffix == ".json":
        try:
            check.rows = json.loads(data.decode("utf-8")) if data else []
        except ValueError as exc:
            check.problems.append(f"the .json file is not a complete document: {exc}")
    else:
        complete, _, tail = data.rpartition(b"\n")
        check.torn_tail = bool(tail)
        text = complete.decode("utf-8") + ("\n" if complete else "")
        if path.suffix == ".jsonl":
            for number, line in enumerate(text.splitlines(), 1):
                try:
                    check.rows.append(json.loads(line))
                except ValueError as exc:
                    check.problems.append(f"line {number} does not parse: {exc}")
        elif text:
            reader = csv.DictReader(io.StringIO(text))
            if tuple(reader.fieldnames or ()) != CSV_FIELDS:
                check.problems.append(f"CSV header is {reader.fieldnames}")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    check.problems.append(f"a CSV row has the wrong number of fields: {row}")
                check.rows.append(row)
    for row in check.rows:
        if row.get("path") not in expected:
            check.problems.append(f"unknown path {row.get('path')!r}")
        if row.get("status") not in ("ok", "skipped"):
            check.problems.append(f"bad status in {row}")
        elif row["status"] == "ok":
            float(row["confidence"])  # present and numeric
    return check


def final_rows(path: Path) -> list[dict]:
    check = parse_results(path, expected=set())
    assert not check.torn_tail
    return check.rows


def classify_command(folder: Path, model: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgecnn",
        "classify",
        str(folder),
        "--model",
        str(model),
        "-o",
        str(out),
        "--batch-size",
        "8",
        "-q",
    ]


def kill_after(cmd: list[str], wait_for: Path, delay: float, start_timeout: float = 120.0) -> int:
    """Start ``cmd``; once ``wait_for`` exists (or at once when delay < 0), sleep ``abs(delay)``, SIGKILL."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if delay >= 0:
            deadline = time.monotonic() + start_timeout
            while not wait_for.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        time.sleep(abs(delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class CrashReport:
    trials: int = 0
    killed: int = 0  # trials where SIGKILL landed before the run finished
    no_file_yet: int = 0
    torn_tails: int = 0
    rows_before_resume: list[int] = field(default_factory=list)
    invalid_files: int = 0
    missing: int = 0
    duplicated: int = 0
    wrong: int = 0


def crash_trials(
    folder: Path, model: Path, workdir: Path, expected: dict[str, tuple[str, str]], trials: int, seed: int
) -> CrashReport:
    """Kill classify at random moments, check the file, resume in-process, compare with the reference."""
    rng = random.Random(seed)
    report = CrashReport()
    paths = set(expected)
    reference_seconds = _reference_seconds(folder, model, workdir)
    for trial in range(trials):
        out = workdir / f"trial{trial}{FORMATS[trial % len(FORMATS)]}"
        # Mostly while results are being written; sometimes during start-up, before the file exists.
        delay = -rng.uniform(0, 1.5) if rng.random() < 0.15 else rng.uniform(0, 0.5 * reference_seconds)
        code = kill_after(classify_command(folder, model, out), out, delay)
        report.trials += 1
        report.killed += code == -signal.SIGKILL
        check = parse_results(out, paths)
        report.no_file_yet += not check.existed
        report.torn_tails += check.torn_tail
        # what --resume reads: for .json, the array and the rows waiting beside it
        report.rows_before_resume.append(len(list(iter_records(out))) if check.existed else 0)
        if check.problems:
            report.invalid_files += 1
            continue
        resumed = runner.invoke(
            app,
            [
                "classify",
                str(folder),
                "--model",
                str(model),
                "-o",
                str(out),
                "--batch-size",
                "8",
                "--resume",
                "-q",
            ],
        )
        assert resumed.exit_code in (0, 1) and "Traceback" not in resumed.output, resumed.output
        rows = final_rows(out)
        seen = [r["path"] for r in rows]
        report.duplicated += len(seen) - len(set(seen))
        report.missing += len(paths - set(seen))
        report.wrong += sum(
            (r["status"], r["label"] or "") != expected.get(r["path"], ("?", "?")) for r in rows
        )
    return report


def _reference_seconds(folder: Path, model: Path, workdir: Path) -> float:
    out = workdir / "reference-timing.csv"
    t = time.perf_counter()
    runner.invoke(
        app, ["classify", str(folder), "--model", str(model), "-o", str(out), "--batch-size", "8", "-q"]
    )
    return time.perf_counter() - t


def reference_results(folder: Path, model: Path, out: Path) -> dict[str, tuple[str, str]]:
    result = runner.invoke(app, ["classify", str(folder), "--model", str(model), "-o", str(out), "-q"])
    assert result.exit_code == 1, result.output  # the two bad files
    return {r["path"]: (r["status"], r["label"] or "") for r in final_rows(out)}


def check_report(report: CrashReport, trials: int) -> None:
    assert report.trials == trials
    assert report.invalid_files == 0, report
    assert report.missing == report.duplicated == report.wrong == 0, report
    assert report.killed >= trials // 2, f"most kills should land mid-run: {report}"


@pytest.fixture()
def stress(request):
    """Stress tests run only when selected (``-m stress``, ``make stress``), whatever the default options."""
    if "stress" not in (request.config.option.markexpr or ""):
        pytest.skip("long reliability run: select it with -m stress (make stress)")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mean_colour_model(tmp_path_factory.mktemp("model") / "m.onnx")


def test_classify_killed_at_random_moments_then_resumed(model, tmp_path):
    folder = tmp_path / "images"
    write_folder(folder, 800)
    expected = reference_results(folder, model, tmp_path / "reference.jsonl")
    assert len(expected) == 802
    report = crash_trials(folder, model, tmp_path, expected, trials=12, seed=1)
    check_report(report, 12)
    # The kills must land while results are being written, not only before or after: a file with some rows.
    mid_file = [n for n in report.rows_before_resume if 0 < n < len(expected)]
    assert len(mid_file) >= 3, report
    for leftover in tmp_path.glob(".*.partial"):  # .json rewrites leave only hidden temporary files
        assert leftover.name.startswith(".trial")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_a_write_torn_at_any_byte(model, tmp_path, suffix):
    """Where SIGKILL cannot tear a line (one write per batch), simulate every kind of torn write."""
    folder = tmp_path / "images"
    write_folder(folder, 40)
    full = tmp_path / f"full{suffix}"
    expected = reference_results(folder, model, full)
    data = full.read_bytes()
    rng = random.Random(3)
    for cut in sorted(rng.sample(range(1, len(data)), 12)):
        out = tmp_path / f"cut{cut}{suffix}"
        out.write_bytes(data[:cut])
        result = runner.invoke(
            app, ["classify", str(folder), "--model", str(model), "-o", str(out), "--resume", "-q"]
        )
        assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
        rows = final_rows(out)
        assert sorted(r["path"] for r in rows) == sorted(expected), f"cut at byte {cut}"


def export_once(run: Path, target: Path, delay: float | None, rng: random.Random) -> dict:
    """Run `edgecnn export RUN -o target --force`; SIGKILL it ``delay`` s after its temporary file appears
    (or at a random moment of the whole run when delay is None). Returns what was seen."""
    cmd = [sys.executable, "-m", "edgecnn", "export", str(run), "-o", str(target), "--force"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen_partial = False
    try:
        if delay is None:
            time.sleep(rng.uniform(0.5, 6.0))
        else:
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline:
                if any(target.parent.glob(f".{target.stem}.*.partial*")):
                    seen_partial = True
                    break
                time.sleep(0.002)
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"code": code, "seen_partial": seen_partial}


def check_export_target(target: Path, before: bytes | None) -> str:
    """The output path is the previous file, absent, or a complete edgecnn model: never a partial one."""
    from edgecnn.runtime.predictor import Predictor

    if not target.exists():
        assert before is None, "an existing model disappeared"
        return "absent"
    data = target.read_bytes()
    if before is not None and data == before:
        return "previous model"
    predictor = Predictor(target, provider="cpu")  # loads, has its contract, agrees with its graph
    probs = predictor.predict_batch(np.zeros((1, *predictor.contract.input.shape), np.float32))
    assert probs.shape == (1, len(predictor.labels))
    return "complete model"


def export_trials(run: Path, workdir: Path, trials: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    results = []
    target = workdir / "model.onnx"
    for trial in range(trials):
        before = target.read_bytes() if target.exists() else None
        # Mostly a moment while the file is being written and checked (between the temporary file appearing
        # and the rename); the last trial at a random moment of the whole run.
        delay = None if trial == trials - 1 else rng.uniform(0, 0.1)
        seen = export_once(run, target, delay, rng)
        seen["target"] = check_export_target(target, before)
        seen["partials"] = sorted(p.name for p in workdir.glob(".*.partial*"))
        results.append(seen)
    return results


def test_export_killed_at_random_moments_leaves_no_partial_model(trained_run, tmp_path):
    results = export_trials(trained_run, tmp_path, trials=4, seed=2)
    assert all(r["code"] in (0, -signal.SIGKILL) for r in results), results
    # At least two kills landed while the model was being written (its temporary file existed, no clean-up).
    mid_write = [r for r in results if r["seen_partial"] and r["code"] == -signal.SIGKILL]
    assert len(mid_write) >= 2, results
    assert all(r["target"] in ("absent", "previous model", "complete model") for r in results)
    # Temporary files never sit at the output path; a kill (no clean-up runs) may leave one beside it.
    for r in results:
        assert all(name.startswith(".model.") and ".partial" in name for name in r["partials"])
    assert (trained_run / "model.keras").is_file()


@pytest.mark.stress
def test_stress_classify_20000_files_50_kills(stress, model, tmp_path):
    folder = tmp_path / "images"
    write_folder(folder, 20_000)
    expected = reference_results(folder, model, tmp_path / "reference.jsonl")
    report = crash_trials(folder, model, tmp_path, expected, trials=50, seed=11)
    check_report(report, 50)


@pytest.mark.stress
def test_stress_export_killed_20_times(stress, trained_run, tmp_path):
    results = export_trials(trained_run, tmp_path, trials=20, seed=12)
    assert all(r["target"] in ("absent", "previous model", "complete model") for r in results)
    assert sum(r["seen_partial"] for r in results) >= 5, results
