"""Opening sources: one way to open a camera or stream (first open and every reopen), bad stream URLs,
and options that cannot apply to the chosen source."""

import socket
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import wait_for
from onnxmodels import mean_colour_model
from typer.testing import CliRunner

from edgecnn.apps import capture
from edgecnn.apps.capture import open_source
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError, SourceError
from edgecnn.training.synthetic import write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mean_colour_model(tmp_path_factory.mktemp("m") / "colour.onnx")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, seconds_per_class=0.2, fps=10, width=64, height=48)
    return path


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1:99999/x",  # port out of range: urllib raises ValueError
        "rtsp://127.0.0.1:notaport/x",
        "http://[::1/x",  # unbalanced IPv6 bracket: urllib raises ValueError
        "rtsp://" + "a" * 70 + "/x",  # a host label IDNA cannot encode (UnicodeError)
    ],
)
def test_malformed_stream_url_is_a_source_error(url):
    started = time.monotonic()
    with pytest.raises(SourceError, match="stream URL"):
        open_source(source=url)
    assert time.monotonic() - started < 5.0


def test_unanswered_local_port_is_a_source_error_quickly():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}"):
        open_source(source=f"rtsp://127.0.0.1:{port}/x")
    assert time.monotonic() - started < 5.0


def test_cli_bad_stream_url_is_one_line_exit_2(model):
    result = runner.invoke(
        app, ["webcam", "--model", str(model), "--source", "rtsp://127.0.0.1:99999/x", "--no-display"]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a handled error, not an escaped exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "99999" in errors[0] and "stream URL" in errors[0]


class RecordingVideoCapture:
    """Stands in for cv2.VideoCapture: logs every open and property set; only the V4L2 backend opens, and only
    the very first opened capture gives a frame (so the source keeps reconnecting until it gives up)."""

    log: list = []
    frames_left = 1

    def __init__(self, *args):
        self.args = args
        self.log.append(("open", args))

    def isOpened(self):
        return len(self.args) == 2 and self.args[1] == cv2.CAP_V4L2

    def set(self, prop, value):
        self.log.append(("set", prop, value))
        return True

    def get(self, prop):
        return 0.0

    def read(self):
        if RecordingVideoCapture.frames_left > 0:
            RecordingVideoCapture.frames_left -= 1
            return True, np.zeros((48, 64, 3), np.uint8)
        return False, None

    def release(self):
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the V4L2 fallback is tried on Linux only")
def test_camera_reopen_tries_exactly_what_the_first_open_tried(monkeypatch):
    RecordingVideoCapture.log = []
    RecordingVideoCapture.frames_left = 1
    monkeypatch.setattr(cv2, "VideoCapture", RecordingVideoCapture)
    source = open_source(camera=3, width=64, height=48, max_retries=2, backoff=0.01)
    first_open = list(RecordingVideoCapture.log)
    try:
        assert source.read(timeout=2.0) is not None
        assert wait_for(lambda: source.end_reason is not None)
    finally:
        source.close()
    assert first_open == [
        ("open", (3,)),
        ("open", (3, cv2.CAP_V4L2)),
        ("set", cv2.CAP_PROP_FRAME_WIDTH, 64),
        ("set", cv2.CAP_PROP_FRAME_HEIGHT, 48),
    ]
    reopens = RecordingVideoCapture.log[len(first_open) :]
    assert reopens == first_open * 2  # two reconnection attempts, each the same as the first open


def test_stream_reopen_opens_the_same_url(monkeypatch):
    RecordingVideoCapture.log = []
    RecordingVideoCapture.frames_left = 1

    class AnyBackend(RecordingVideoCapture):
        def isOpened(self):
            return True

    monkeypatch.setattr(cv2, "VideoCapture", AnyBackend)
    source = open_source(source="udp://fake-host/stream", max_retries=1, backoff=0.01)
    first_open = list(AnyBackend.log)
    try:
        assert source.read(timeout=2.0) is not None
        assert wait_for(lambda: source.end_reason is not None)
    finally:
        source.close()
    assert first_open == [("open", ("udp://fake-host/stream",))]
    assert AnyBackend.log[len(first_open) :] == first_open


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("clip.mp4", {"width": 640}, "--width/--height"),
        ("clip.mp4", {"height": 480}, "--width/--height"),
        ("rtsp://127.0.0.1/x", {"width": 640, "height": 480}, "--width/--height"),
        ("img_%04d.png", {"height": 480}, "--width/--height"),
        (None, {"realtime": True}, "--realtime"),
        (None, {"realtime": False}, "--no-realtime"),
        ("rtsp://127.0.0.1/x", {"realtime": True}, "--realtime"),
        ("udp://127.0.0.1/x", {"realtime": False}, "--no-realtime"),
        (None, {"width": 0}, "--width must be"),
        (None, {"height": -1}, "--height must be"),
    ],
)
def test_options_that_cannot_apply_to_the_source_are_refused(source, options, message):
    with pytest.raises(ConfigError, match=message):
        capture.check_source_options(source=source, **options)


@pytest.mark.parametrize(
    ("source", "options"),
    [
        (None, {"width": 640, "height": 480}),
        ("clip.mp4", {"realtime": True}),
        ("clip.mp4", {"realtime": False}),
        ("file://clip.mp4", {"realtime": True}),
        ("img_%04d.png", {"realtime": True}),
        ("rtsp://127.0.0.1/x", {}),
        (None, {}),
    ],
)
def test_options_that_apply_are_accepted(source, options):
    capture.check_source_options(source=source, **options)


def test_open_source_refuses_before_opening_anything(monkeypatch, video):
    opened = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda *args: opened.append(args))
    with pytest.raises(ConfigError, match="--width/--height"):
        open_source(source=str(video), width=320)
    with pytest.raises(ConfigError, match="--realtime"):
        open_source(camera=0, realtime=True)
    assert opened == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--width", "320"], "--width/--height"),
        (["--realtime"], "--realtime"),
    ],
)
def test_cli_refuses_options_that_cannot_apply(model, video, extra, message):
    source = str(video) if "--width" in extra else "rtsp://127.0.0.1:9/x"
    result = runner.invoke(app, ["webcam", "--model", str(model), "--source", source, "--no-display", *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and message in errors[0]


def test_cli_realtime_still_paces_a_file(model, video):
    result = runner.invoke(
        app, ["webcam", "--model", str(model), "--source", str(video), "--no-display", "--realtime", "--json"]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(bool(capture.camera_devices()), reason="a camera is attached: it would open")
@pytest.mark.parametrize("log_level", [None, "WARNING"])
def test_an_absent_camera_is_one_error_line_without_opencvs_own(model, log_level):
    """OpenCV logs a dozen lines per absent camera to the process's stderr; edgecnn's message is enough,
    unless OPENCV_LOG_LEVEL asks for OpenCV's."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    if log_level:
        env["OPENCV_LOG_LEVEL"] = log_level
    code = (
        "import edgecnn, sys\n"
        "try:\n"
        f"    edgecnn.webcam({str(model)!r}, camera=0, display=False)\n"
        "except edgecnn.EdgecnnError as e:\n"
        "    print('error:', e, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: camera 0 did not open (tried camera index 0")
    assert any("WARN" in line for line in lines) == (log_level is not None), lines


def test_opencv_logging_comes_back_after_captures_open_in_several_threads(monkeypatch):
    import threading

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    before = cv2.utils.logging.getLogLevel()
    inside = []
    gate = threading.Barrier(4)

    def opening():
        with capture._quiet_opencv():
            gate.wait(5)  # all four inside at once
            inside.append(cv2.utils.logging.getLogLevel())
            gate.wait(5)

    threads = [threading.Thread(target=opening) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert inside == [cv2.utils.logging.LOG_LEVEL_SILENT] * 4
    assert cv2.utils.logging.getLogLevel() == before
