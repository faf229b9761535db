"""Live and file sources under stalls, slow cameras, backend errors and shutdown, with realistic proportions.

Times are the real ones scaled by 1/10: a 0.5 s read timeout stands for the 5 s one, a 0.05 s first backoff
for 0.5 s, a 0.1 s reopen for OpenCV's reopen of a stream.
"""

import logging
import threading
import time

import numpy as np
import pytest
from conftest import LogLines, wait_for
from onnxmodels import mean_colour_model

from edgecnn.apps import capture
from edgecnn.apps.capture import LatestFrameSource, SequentialSource, open_source
from edgecnn.apps.webcam import WebcamConfig, run_webcam
from edgecnn.runtime.predictor import Predictor

READ_TIMEOUT = 0.5  # the 5 s default read timeout, scaled
BACKOFF = 0.05  # the 0.5 s default first backoff, scaled
REOPEN = 0.1  # OpenCV reopening a stream, scaled


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor(mean_colour_model(tmp_path_factory.mktemp("m") / "colour.onnx"), provider="cpu")


def image():
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[:, :, 2] = 200
    return frame


def with_read_timeout(source, limit):
    """Make every read of ``source`` give up after ``limit`` seconds, as the loop's read timeout would."""
    real = source.read
    source.read = lambda timeout=5.0: real(min(timeout, limit))
    return source


class FakeStream:
    """A stream that sends ``good`` frames, then stalls: reads time out and reopens fail ``stalled_reopens`` times.

    Each reopen takes REOPEN seconds; ``stalled_reopens=None`` never recovers.
    """

    def __init__(self, good=5, stalled_reopens=2, interval=0.01):
        self.good, self.stalled_reopens, self.interval = good, stalled_reopens, interval
        self.sent = 0
        self.reopens = 0
        self.recovered = False

    def read(self):
        if self.sent >= self.good and not self.recovered:
            time.sleep(0.02)  # the backend's own read timeout: no frame
            return None
        time.sleep(self.interval)
        self.sent += 1
        return image()

    def reopen(self):
        time.sleep(REOPEN)
        self.reopens += 1
        if self.stalled_reopens is not None and self.reopens > self.stalled_reopens:
            self.recovered = True
            return self.read
        return None


def test_stall_longer_than_the_read_timeout_does_not_end_the_run(predictor):
    stream = FakeStream(good=5, stalled_reopens=2)
    source = LatestFrameSource(stream.read, stream.reopen, "fake stream", max_retries=3, backoff=BACKOFF)
    shown = []
    with_read_timeout(source, READ_TIMEOUT)
    real = source.read

    def read(timeout=5.0):
        frame = real(timeout)
        if frame is not None:
            shown.append(frame.index)
        return frame

    source.read = read
    started = time.monotonic()
    summary = run_webcam(source, predictor, WebcamConfig(display=False, max_frames=8))
    # the stall (backoff 0.05 + 0.1 + 0.2 s and three 0.1 s reopens) outlasts the 0.5 s read timeout
    assert time.monotonic() - started > READ_TIMEOUT
    assert summary.end_reason == "max frames" and summary.frames_shown == 8, summary.end_reason
    assert stream.reopens == 3 and source.retries == 3
    assert max(shown) >= 5  # frames sent after the reconnection were shown


def test_slow_camera_below_the_read_timeout_rate_does_not_end_the_run(predictor):
    camera = FakeStream(good=10**6, interval=0.2)  # one frame per 0.2 s against a 0.05 s read timeout
    source = with_read_timeout(LatestFrameSource(camera.read, None, "slow camera"), 0.05)
    summary = run_webcam(source, predictor, WebcamConfig(display=False, max_frames=3))
    assert summary.end_reason == "max frames" and summary.frames_shown == 3
    assert not summary.failed


def test_retries_are_all_used_then_the_run_ends_with_source_lost(predictor, log_lines):
    stream = FakeStream(good=3, stalled_reopens=None)
    source = LatestFrameSource(stream.read, stream.reopen, "fake stream", max_retries=3, backoff=BACKOFF)
    summary = run_webcam(with_read_timeout(source, READ_TIMEOUT), predictor, WebcamConfig(display=False))
    assert summary.end_reason == "source lost" and summary.failed
    assert stream.reopens == 3 and source.retries == 3
    assert [e for e in log_lines if "reconnecting" in e][-1].endswith("(attempt 3/3)")
    assert "giving up" in log_lines[-1]


def test_backoff_is_injectable_through_open_source(monkeypatch, log_lines):
    made = []

    class FakeCapture:
        def __init__(self, target, *args, **kwargs):
            made.append(self)
            self.reads = 0
            self.first = len(made) == 1  # only the first opening gives a frame

        def opened(self):
            return True

        def read(self):
            self.reads += 1
            return image() if self.reads == 1 and self.first else None

        def fps(self):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(capture, "Capture", FakeCapture)
    started = time.monotonic()
    source = open_source(source="udp://fake-host/stream", max_retries=2, backoff=0.02)
    try:
        assert source.read(timeout=2.0) is not None
        assert wait_for(lambda: source.end_reason is not None, seconds=3.0)
        assert source.end_reason == "source lost"
        assert time.monotonic() - started < 1.4  # the default backoff would wait 0.5 + 1 s
        assert [e for e in log_lines if "reconnecting in 0.0 s" in e]
    finally:
        source.close()


class BlockingCapture:
    """A capture whose read after the first few blocks until ``gate`` opens; it logs reads and releases."""

    def __init__(self, free_reads=1):
        self.free_reads = free_reads
        self.reads = 0
        self.log = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def read(self):
        self.reads += 1
        if self.reads > self.free_reads:
            self.log.append("read")
            self.entered.set()
            self.gate.wait(10)
            self.log.append("read returned")
        return image()

    def fps(self):
        return 10.0

    def release(self):
        self.log.append("release")


def test_close_releases_a_live_capture_only_after_a_blocked_read_returns():
    cap = BlockingCapture(free_reads=1)
    source = LatestFrameSource(cap.read, None, "blocking camera", release=cap.release)
    assert cap.entered.wait(3)
    started = time.monotonic()
    source.close(wait=0.2)
    assert time.monotonic() - started < 2.0
    assert "release" not in cap.log  # never while read() is running
    cap.gate.set()
    assert wait_for(lambda: "release" in cap.log, seconds=3.0)
    assert cap.log == ["read", "read returned", "release"]


def test_close_releases_a_file_capture_only_after_a_blocked_read_returns():
    cap = BlockingCapture(free_reads=2)
    source = SequentialSource(cap, "file blocking.mp4")
    source.prime()
    assert source.read(timeout=2.0) is not None
    assert cap.entered.wait(3)
    source.close(wait=0.2)
    assert "release" not in cap.log
    cap.gate.set()
    assert wait_for(lambda: "release" in cap.log, seconds=3.0)
    assert cap.log == ["read", "read returned", "release"]


def test_close_returns_promptly_during_a_backoff():
    camera = FakeStream(good=1, stalled_reopens=None)
    released = threading.Event()
    reconnecting = threading.Event()
    handler = LogLines(callback=lambda _m: reconnecting.set())
    logging.getLogger("edgecnn").addHandler(handler)
    logging.getLogger("edgecnn").setLevel(logging.INFO)
    source = LatestFrameSource(
        camera.read,
        camera.reopen,
        "fake camera",
        max_retries=3,
        backoff=3.0,
        release=released.set,
    )
    assert reconnecting.wait(3)
    logging.getLogger("edgecnn").removeHandler(handler)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 1.0  # not the 3 s backoff
    assert released.is_set() and camera.reopens == 0


def test_capture_opened_by_a_reopen_in_flight_is_released(monkeypatch):
    opening = threading.Event()
    finish_open = threading.Event()
    made = []

    class SlowReopenCapture:
        def __init__(self, target, *args, **kwargs):
            self.log = []
            made.append(self)
            if len(made) > 1:  # a reconnection: OpenCV takes long to open the stream again
                opening.set()
                finish_open.wait(10)

        def opened(self):
            return True

        def read(self):
            self.log.append("read")
            return image() if len(made) == 1 and len(self.log) == 1 else None

        def fps(self):
            return 0.0

        def release(self):
            self.log.append("release")

    monkeypatch.setattr(capture, "Capture", SlowReopenCapture)
    source = open_source(source="udp://fake-host/stream", max_retries=3, backoff=0.01)
    assert opening.wait(3)
    source.close(wait=0.1)
    finish_open.set()
    assert wait_for(lambda: made[1].log.count("release") == 1, seconds=3.0)
    assert made[1].log == ["release"]  # released, and never read after close
    assert made[0].log.count("release") == 1


class FailingCapture:
    """A decoder that gives ``frames`` frames, then raises."""

    def __init__(self, frames=3):
        self.frames = frames
        self.reads = 0
        self.released = 0

    def read(self):
        self.reads += 1
        if self.reads > self.frames:
            raise RuntimeError("decoder crashed")
        return image()

    def fps(self):
        return 25.0

    def release(self):
        self.released += 1


def test_reader_error_ends_a_file_run_with_an_error(predictor):
    cap = FailingCapture(frames=3)
    source = SequentialSource(cap, "file broken.mp4")
    source.prime()
    summary = run_webcam(source, predictor, WebcamConfig(display=False))
    assert summary.end_reason == "error: decoder crashed" and summary.failed
    assert summary.frames_shown == 3 and cap.released == 1


def test_reader_error_ends_a_live_run_with_an_error_after_the_retries(predictor, log_lines):
    cap = FailingCapture(frames=2)
    source = LatestFrameSource(cap.read, lambda: cap.read, "fake camera", max_retries=2, backoff=0.01)
    summary = run_webcam(source, predictor, WebcamConfig(display=False))
    assert summary.end_reason == "error: decoder crashed" and summary.failed
    assert source.retries == 2 and "read failed (decoder crashed)" in log_lines[0]
