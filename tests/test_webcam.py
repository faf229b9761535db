"""webcam: file sources end to end, headless detection, faults, the latest-frame policy, recording."""

import json
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from onnxmodels import mean_colour_model
from typer.testing import CliRunner

from edgecnn.apps.capture import (
    Frame,
    LatestFrameSource,
    SequentialSource,
    display_available,
    open_source,
)
from edgecnn.apps.webcam import Smoother, WebcamConfig, crop_for, run_webcam
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError
from edgecnn.runtime.predictor import Predictor
from edgecnn.training.synthetic import write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    frames = write_video(path, seconds_per_class=1.0, fps=10, width=160, height=120)
    assert frames == 30
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mean_colour_model(tmp_path_factory.mktemp("m") / "colour.onnx")


def frame_count(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_file_source_end_to_end(video, model, tmp_path):
    rec, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "webcam",
            "--model",
            str(model),
            "--source",
            str(video),
            "--no-display",
            "--record",
            str(rec),
            "--jsonl",
            str(lines),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    assert summary["frames_read"] == summary["frames_shown"] == summary["frames_classified"] == 30
    assert [r["frame"] for r in rows] == list(range(30))
    assert {"time", "frame", "label", "confidence", "top_k", "latency_ms"} <= set(rows[0])
    assert frame_count(rec) == 30
    assert summary["frames_dropped"] == 0 and summary["headless"] is True
    stages = ("capture_wait", "preprocess", "inference", "overlay", "write")
    for stage in stages:
        s = summary["stages_ms"][stage]
        assert s["count"] == 30  # every frame went through every stage once
        assert 0 < s["median"] <= s["p95"]
    # The stages run one after another on the loop's thread, so together they fit in the run's wall time; at
    # least half of each stage's values are >= its median, so median * count / 2 is a lower bound of its total.
    lower_bound_ms = sum(summary["stages_ms"][st]["median"] * 30 / 2 for st in stages)
    assert lower_bound_ms <= summary["seconds"] * 1000


def test_max_frames_every_and_smooth(video, model, tmp_path):
    lines = tmp_path / "o.jsonl"
    result = runner.invoke(
        app,
        [
            "webcam",
            "--model",
            str(model),
            "--source",
            str(video),
            "--no-display",
            "--jsonl",
            str(lines),
            "--every",
            "3",
            "--max-frames",
            "10",
            "--smooth",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames_shown"] == 10 and summary["end_reason"] == "max frames"
    assert [json.loads(line)["frame"] for line in lines.read_text().splitlines()] == [0, 3, 6, 9]


def test_smoother_averages_the_last_n():
    s = Smoother(2)
    a, b, c = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])
    assert np.allclose(s.add(a), [1, 0])
    assert np.allclose(s.add(b), [0.5, 0.5])
    assert np.allclose(s.add(c), [0, 1])


def test_headless_detection(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ok, reason = display_available()
    if sys.platform.startswith("linux"):
        assert not ok and reason
    monkeypatch.setenv("DISPLAY", ":97")  # nothing listens there
    ok, reason = display_available()
    if sys.platform.startswith("linux") and not os.path.exists("/tmp/.X11-unix/X97"):
        assert not ok and ("does not answer" in reason or "GUI" in reason)


def test_no_display_falls_back_to_headless_without_crashing(video, model, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":97")
    result = runner.invoke(
        app, ["webcam", "--model", str(model), "--source", str(video), "--max-frames", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "headless" in result.stderr


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_window_path_under_xvfb(video, model, tmp_path):
    display = ":93"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp"], stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            if os.path.exists(f"/tmp/.X11-unix/X{display[1:]}"):
                break
            time.sleep(0.1)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgecnn",
                "webcam",
                "--model",
                str(model),
                "--source",
                str(video),
                "--max-frames",
                "5",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["headless"] is False and summary["frames_shown"] == 5
        assert summary["stages_ms"]["display"]["count"] == 5
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def test_camera_not_found_lists_what_was_tried(model):
    result = runner.invoke(app, ["webcam", "--model", str(model), "--camera", "7", "--no-display"])
    assert result.exit_code == 2
    assert "camera 7 did not open" in result.stderr and "tried" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the model line, then the one-line error


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.mp4", "not found"),
        ("notavideo.mp4", "cannot open|gave no frame"),
        ("rtsp://127.0.0.1:9/none", "cannot reach"),
    ],
)
def test_unreadable_sources_get_clear_messages(model, tmp_path, source, message):
    if source == "notavideo.mp4":
        (tmp_path / source).write_text("hello")
    target = source if "://" in source else str(tmp_path / source)
    result = runner.invoke(app, ["webcam", "--model", str(model), "--source", target, "--no-display"])
    assert result.exit_code == 2
    import re

    assert re.search(message, result.stderr), result.stderr


class FakeCamera:
    """A camera that makes a numbered frame every ``interval`` seconds; can stop after ``fail_after`` frames."""

    def __init__(self, interval=0.002, fail_after=None):
        self.interval = interval
        self.fail_after = fail_after
        self.n = 0

    def read(self):
        if self.fail_after is not None and self.n >= self.fail_after:
            time.sleep(0.001)
            return None
        time.sleep(self.interval)
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 200
        self.n += 1
        return frame


class SlowPredictor:
    """Wraps a predictor and sleeps in inference: a model much slower than the camera."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_batch(self, batch):
        time.sleep(self.delay)
        return self.inner.predict_batch(batch)


def test_latest_frame_policy_with_slow_model_and_fast_camera(model):
    camera = FakeCamera(interval=0.002)
    source = LatestFrameSource(camera.read, None, "fake camera", fps=500)
    staleness = []
    real_read = source.read

    def read(timeout=5.0):
        frame = real_read(timeout)
        if frame is not None:
            staleness.append(source.newest_index() - frame.index)
        return frame

    source.read = read
    predictor = SlowPredictor(Predictor(model, provider="cpu"), delay=0.03)
    summary = run_webcam(source, predictor, WebcamConfig(display=False, max_frames=15))
    assert summary.frames_classified == 15
    assert max(staleness) <= 1  # never more than one frame behind the newest available frame
    assert summary.frames_dropped > 15  # the camera made many frames the slow model never saw


def test_mid_stream_failure_retries_then_reports_the_source_lost(model, tmp_path, log_lines):
    camera = FakeCamera(interval=0.001, fail_after=5)
    source = LatestFrameSource(camera.read, lambda: None, "fake camera", max_retries=2, backoff=0.01)
    summary = run_webcam(
        source, Predictor(model, provider="cpu"), WebcamConfig(display=False, record=tmp_path / "r.mp4")
    )
    assert summary.end_reason == "source lost" and summary.failed
    assert source.retries == 2 and len(log_lines) == 3 and "reconnecting" in log_lines[0]
    assert "giving up" in log_lines[-1]
    assert 1 <= summary.frames_shown <= 5
    assert frame_count(tmp_path / "r.mp4") == summary.frames_shown


def test_reconnect_recovers(model):
    first = FakeCamera(interval=0.001, fail_after=3)
    second = FakeCamera(interval=0.001, fail_after=4)
    source = LatestFrameSource(first.read, lambda: second.read, "fake camera", max_retries=1, backoff=0.01)
    frames = []
    while (f := source.read(timeout=2)) is not None:
        frames.append(f.index)
        time.sleep(0.01)
    source.close()
    assert first.n == 3 and second.n == 4 and source.frames_read == 7


def test_ctrl_c_leaves_a_finalised_recording(video, model, tmp_path):
    source = open_source(source=str(video))
    real_read = source.read
    count = {"n": 0}

    def read(timeout=5.0):
        count["n"] += 1
        if count["n"] == 6:
            raise KeyboardInterrupt
        return real_read(timeout)

    source.read = read
    rec = tmp_path / "ctrl-c.mp4"
    summary = run_webcam(source, Predictor(model, provider="cpu"), WebcamConfig(display=False, record=rec))
    assert summary.end_reason == "interrupted" and summary.frames_shown == 5
    assert frame_count(rec) == 5
    assert not list(tmp_path.glob(".*partial*"))


def test_realtime_file_pacing_drops_frames_when_slow(video, model):
    source = open_source(source=str(video), realtime=True)
    predictor = SlowPredictor(Predictor(model, provider="cpu"), delay=0.25)
    summary = run_webcam(source, predictor, WebcamConfig(display=False))
    assert summary.frames_dropped > 0 and summary.frames_shown < 30


class StillSource:
    """A file-like source that gives the same frame ``count`` times (for options that change what is seen)."""

    live = False
    fps = 10.0
    description = "still frames"
    dropped = 0

    def __init__(self, frame, count=3):
        self.frame, self.count, self.frames_read = frame, count, 0
        self.end_reason = None

    def read(self, timeout=5.0):
        if self.frames_read >= self.count:
            self.end_reason = "end of source"
            return None
        self.frames_read += 1
        return Frame(self.frame.copy(), self.frames_read - 1, time.monotonic())

    def close(self):
        pass


def wide_frame():
    """Dim green in the centred square, bright red beside it: a centre crop says green, stretching says red."""
    frame = np.zeros((32, 96, 3), np.uint8)
    frame[:, :, 2] = 255
    frame[:, 32:64] = (0, 100, 0)
    return frame


def serve(monkeypatch, source):
    """Make the webcam command use ``source``; returns the list of open_source calls."""
    calls = []

    def fake_open_source(**kwargs):
        calls.append(kwargs)
        return source

    monkeypatch.setattr("edgecnn.apps.capture.open_source", fake_open_source)
    return calls


@pytest.mark.parametrize(("crop", "label"), [(None, "red"), ("center", "green"), ("none", "red")])
def test_crop_default_follows_the_model_contract(model, tmp_path, monkeypatch, crop, label):
    serve(monkeypatch, StillSource(wide_frame(), count=1))
    lines = tmp_path / "crop.jsonl"
    args = ["webcam", "--model", str(model), "--no-display", "--jsonl", str(lines)]
    result = runner.invoke(app, args + ([] if crop is None else ["--crop", crop]))
    assert result.exit_code == 0, result.output
    assert json.loads(lines.read_text())["label"] == label


def test_crop_default_follows_the_model_contract_in_the_library(model):
    assert WebcamConfig().crop is None  # None: as the contract says
    predictor = Predictor(model, provider="cpu")
    assert predictor.contract.input.fit == "stretch"
    stretched = run_webcam(StillSource(wide_frame()), predictor, WebcamConfig(display=False))
    cropped = run_webcam(StillSource(wide_frame()), predictor, WebcamConfig(display=False, crop="center"))
    assert (stretched.last_label, cropped.last_label) == ("red", "green")


def test_lost_live_source_exits_1(model, monkeypatch):
    camera = FakeCamera(interval=0.001, fail_after=3)
    serve(
        monkeypatch, LatestFrameSource(camera.read, lambda: None, "fake camera", max_retries=1, backoff=0.01)
    )
    result = runner.invoke(app, ["webcam", "--model", str(model), "--no-display", "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["end_reason"] == "source lost"
    assert "fake camera: source lost" in result.stderr


def test_reader_error_exits_1(model, monkeypatch):
    class Broken:
        reads = 0

        def read(self):
            self.reads += 1
            if self.reads > 2:
                raise RuntimeError("decoder crashed")
            return np.zeros((24, 32, 3), np.uint8)

        def fps(self):
            return 25.0

        def release(self):
            pass

    source = SequentialSource(Broken(), "file broken.mp4")
    source.prime()
    serve(monkeypatch, source)
    result = runner.invoke(app, ["webcam", "--model", str(model), "--no-display", "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["end_reason"] == "error: decoder crashed"
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", ["parent is a file", "folder with --force"])
def test_jsonl_into_unwritable_folder_is_an_output_error(model, tmp_path, monkeypatch, case):
    calls = serve(monkeypatch, StillSource(wide_frame()))
    if case == "parent is a file":
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        target, extra = tmp_path / "notes.txt" / "out.jsonl", []
    else:
        (tmp_path / "results").mkdir()
        target, extra = tmp_path / "results", ["--force"]
    result = runner.invoke(
        app, ["webcam", "--model", str(model), "--no-display", "--jsonl", str(target), *extra]
    )
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, OSError)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert calls == []  # refused before the source was opened


def test_record_onto_a_folder_is_an_output_error(model, tmp_path, monkeypatch):
    calls = serve(monkeypatch, StillSource(wide_frame()))
    (tmp_path / "clip.mp4").mkdir()
    result = runner.invoke(
        app,
        ["webcam", "--model", str(model), "--no-display", "--record", str(tmp_path / "clip.mp4"), "--force"],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --record {tmp_path / 'clip.mp4'} is a folder; give a file name inside it"
    ]
    assert calls == []


def test_crop_for_refuses_a_fit_it_cannot_reproduce():
    assert crop_for(SimpleNamespace(fit="stretch")) == "none"
    assert crop_for(SimpleNamespace(fit="letterbox")) == "none"  # imaging.resize letterboxes the frame
    with pytest.raises(ConfigError, match="zoom.*--crop center or --crop none"):
        crop_for(SimpleNamespace(fit="zoom"))
