"""``classify --sort-into`` interrupted (SIGKILL, SIGTERM, Ctrl-C) at random moments, then ``--resume``d: every
input file ends up exactly once in the results and exactly once in the sorted tree (move and copy)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.core.resultfile import iter_records
from edgecnn.core.shipped import SHAPES_MODEL_NAME, shipped_model

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
MODEL = shipped_model(SHAPES_MODEL_NAME)


def make_inputs(folder: Path, count: int, seed: int) -> dict[str, str]:
    """``count`` distinct small PNGs; returns {sha256: name}."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    hashes = {}
    for i in range(count):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        hashes[digest(path)] = path.name
    assert len(hashes) == count
    return hashes


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


def command(folder: Path, out: Path, sort: Path, copy: bool, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "edgecnn", "classify", str(folder), "--model", str(MODEL), "-o", str(out)]
    cmd += ["--sort-into", str(sort), "--batch-size", "2", "--workers", "1", "-q"]
    return cmd + (["--copy"] if copy else ["--move"]) + (["--resume"] if resume else [])


def rows_written(out: Path) -> int:
    try:
        return out.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def interrupt_at_random(cmd: list[str], out: Path, sig: int, after_rows: int, delay: float) -> int:
    """Run ``cmd``; once ``after_rows`` rows are in ``out`` (a random point of the run, whatever the machine's
    speed), wait ``delay`` seconds and send ``sig``. Returns the exit code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while rows_written(out) < after_rows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(timeout=120)
        assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_once(folder: Path, out: Path, sort: Path, inputs: dict[str, str], copy: bool) -> None:
    rows = list(iter_records(out))
    paths = Counter(Path(r["path"]).name for r in rows)
    assert sorted(paths) == sorted(inputs.values()) and set(paths.values()) == {1}, paths
    assert all(r["status"] == "ok" for r in rows)
    in_tree = Counter(digest(p) for p in visible_files(sort))
    assert in_tree == Counter(list(inputs)), "every input exactly once in the sorted tree"
    left = {digest(p) for p in visible_files(folder)}
    assert left == (set(inputs) if copy else set())
    for r in rows:
        if "sorted_to" in r:  # JSON Lines rows say where each file went
            assert inputs[digest(Path(r["sorted_to"]))] == Path(r["path"]).name
    assert not Path(str(out) + ".sorting").exists()


def run_trials(tmp_path: Path, trials: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
    codes = []
    for trial in range(trials):
        work = tmp_path / f"t{trial}"
        folder, sort, out = work / "in", work / "sorted", work / "results.jsonl"
        inputs = make_inputs(folder, count, seed=trial)
        copy = trial % 2 == 1
        sig = signals[trial % len(signals)]
        after_rows, delay = rng.randint(1, count // 2), rng.uniform(0.0, 0.003)
        codes.append(interrupt_at_random(command(folder, out, sort, copy), out, sig, after_rows, delay))
        resumed = subprocess.run(
            command(folder, out, sort, copy, resume=True),
            capture_output=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr.decode()
        check_once(folder, out, sort, inputs, copy)
    return codes


@pytest.mark.skipif(MODEL is None, reason="the shipped shapes model is not built (make models)")
def test_sort_into_interrupted_at_random_then_resumed_keeps_every_file_once(tmp_path):
    codes = run_trials(tmp_path, trials=6, count=80, seed=5)
    # the interrupts land mid-run: SIGKILL, or a clean stop after the current batch (130)
    assert sum(code in (-signal.SIGKILL, 130) for code in codes) >= 5, codes


@pytest.mark.stress
@pytest.mark.skipif(MODEL is None, reason="the shipped shapes model is not built (make models)")
def test_stress_sort_into_interrupted_many_times(tmp_path):
    codes = run_trials(tmp_path, trials=30, count=120, seed=17)
    assert sum(code in (-signal.SIGKILL, 130) for code in codes) >= 15, codes
