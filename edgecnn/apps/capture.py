"""Frame sources for ``edgecnn webcam``: cameras, video files, image sequences and stream URLs.

Live sources (cameras, streams) are read by a background thread that keeps only the newest frame, so a slow
model never works on a stale picture: what is shown is at most one frame behind the source. Files are read in
order, every frame, unless pacing as a live source was asked for. A live source that stops delivering is
reopened a bounded number of times with backoff; then the run ends cleanly.
"""

from __future__ import annotations

import glob
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecnn.core.errors import SourceError


@dataclass
class Frame:
    """One frame and when and where it was captured."""

    image: np.ndarray
    index: int  # 0-based position in the source (frames dropped by the latest-frame policy leave gaps)
    timestamp: float  # time.monotonic() when the frame was read
    read_ms: float = 0.0  # time the reader thread spent reading and decoding it


class FrameSource(Protocol):
    """Anything that yields frames: ``read`` returns the next frame or None when the source has ended."""

    live: bool
    description: str
    fps: float

    def read(self, timeout: float = 5.0) -> Frame | None: ...

    def close(self) -> None: ...

    @property
    def dropped(self) -> int: ...

    @property
    def frames_read(self) -> int: ...


def is_stream_url(text: str) -> bool:
    return "://" in text and not text.lower().startswith("file://")


def is_sequence_pattern(text: str) -> bool:
    return "%" in text and "d" in text.split("%", 1)[1][:4]


class Capture:
    """A thin wrapper over cv2.VideoCapture that fails fast on open and on the first frame."""

    def __init__(
        self, target: int | str, width: int | None = None, height: int | None = None, api: int | None = None
    ) -> None:
        import cv2

        self.target = target
        self.cap = cv2.VideoCapture(target, api) if api is not None else cv2.VideoCapture(target)
        if width and self.cap.isOpened():
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height and self.cap.isOpened():
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def opened(self) -> bool:
        return bool(self.cap.isOpened())

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        return frame

    def fps(self) -> float:
        import cv2

        value = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return value if 0.5 <= value <= 1000 else 0.0

    def frame_count(self) -> int:
        import cv2

        return int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def release(self) -> None:
        self.cap.release()


def camera_devices() -> list[str]:
    """Video device nodes present on Linux (what a camera index can refer to)."""
    return sorted(glob.glob("/dev/video*")) if sys.platform.startswith("linux") else []


class SequentialSource:
    """Every frame of a file (or image sequence) in order; optional real-time pacing at the file's frame rate.

    A reader thread decodes the next few frames while the caller works on the current one (a bounded queue:
    memory stays flat however long the file), so reading a frame costs the caller almost nothing.
    """

    live = False

    def __init__(self, capture: Capture, description: str, realtime: bool = False, prefetch: int = 4) -> None:
        self.capture = capture
        self.description = description
        self.fps = capture.fps() or 25.0
        self.realtime = realtime
        self._index = 0
        self._start: float | None = None
        self._dropped = 0
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False

    def prime(self) -> None:
        """Read the first frame now so that an unreadable file fails before the run starts, then start reading ahead."""
        t = time.perf_counter()
        first = self.capture.read()
        if first is None:
            raise SourceError(
                f"{self.description} opened but gave no frame (empty, unsupported codec or not a video)"
            )
        self._queue.put((first, (time.perf_counter() - t) * 1000))
        self._thread = threading.Thread(target=self._run, name="edgecnn-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                image = self.capture.read()
            except Exception:  # a backend error ends the file like its last frame
                image = None
            item = None if image is None else (image, (time.perf_counter() - t) * 1000)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is None:
                return

    def _next(self, timeout: float) -> tuple[np.ndarray, float] | None:
        if self._ended:
            return None
        try:
            item = self._queue.get(timeout=max(timeout, 1.0))
        except queue.Empty:
            item = None
        if item is None:
            self._ended = True
        return item

    def read(self, timeout: float = 30.0) -> Frame | None:
        item = self._next(timeout)
        if item is None:
            return None
        image, read_ms = item
        index = self._index
        now = time.monotonic()
        if self.realtime:
            if self._start is None:
                self._start = now - index / self.fps
            due = self._start + index / self.fps
            if now > due + 1.0 / self.fps:  # behind: skip to the frame a live source would show now
                for _ in range(int((now - due) * self.fps)):
                    newer = self._next(timeout)
                    if newer is None:
                        break
                    image, read_ms = newer
                    index += 1
                    self._dropped += 1
            elif due > now:
                time.sleep(due - now)
                now = time.monotonic()
        self._index = index + 1
        return Frame(image, index, now, read_ms)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def frames_read(self) -> int:
        return self._index

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.capture.release()


class LatestFrameSource:
    """Reads a live source in a thread and hands out only the newest frame.

    Args:
        reader: Returns the next frame (or None on failure); called in the grabber thread.
        reopen: Called to reconnect after failures; returns a new reader or None.
        description: For messages.
        fps: The source's nominal frame rate (0 if unknown).
        max_retries: Reconnection attempts after the source stops delivering.
        backoff: First wait between attempts in seconds (doubles each time, at most 5 s).
    """

    live = True

    def __init__(
        self,
        reader: Callable[[], np.ndarray | None],
        reopen: Callable[[], Callable[[], np.ndarray | None] | None] | None,
        description: str,
        fps: float = 0.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        on_event: Callable[[str], None] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.description = description
        self.fps = fps
        self._reader = reader
        self._reopen = reopen
        self._max_retries = max_retries
        self._backoff = backoff
        self._on_event = on_event or (lambda _m: None)
        self._release = release
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._last_given = -1
        self._count = 0
        self._dropped = 0
        self._ended = False
        self._stop = False
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop:
            t = time.perf_counter()
            try:
                image = self._reader()
            except Exception:  # a backend error is a failed read
                image = None
            read_ms = (time.perf_counter() - t) * 1000
            if image is None:
                failures += 1
                if failures > self._max_retries or self._stop:
                    break
                self.retries += 1
                wait = min(5.0, self._backoff * 2 ** (failures - 1))
                self._on_event(
                    f"{self.description}: no frame; reconnecting in {wait:.1f} s (attempt {failures}/{self._max_retries})"
                )
                time.sleep(wait)
                if self._reopen is not None:
                    reader = self._reopen()
                    if reader is not None:
                        self._reader = reader
                continue
            failures = 0
            with self._cond:
                if self._latest is not None and self._latest.index > self._last_given:
                    self._dropped += 1  # the previous newest frame was never taken: it is stale now
                self._latest = Frame(image, self._count, time.monotonic(), read_ms)
                self._count += 1
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not handed out yet; waits for one. None once the source has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.index > self._last_given:
                    frame = self._latest
                    self._last_given = frame.index
                    return frame
                if self._ended:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def newest_index(self) -> int:
        with self._cond:
            return self._latest.index if self._latest is not None else -1

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def frames_read(self) -> int:
        return self._count

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5.0)
        if self._release is not None:
            self._release()


def open_source(
    camera: int = 0,
    source: str | None = None,
    width: int | None = None,
    height: int | None = None,
    realtime: bool | None = None,
    max_retries: int = 3,
    on_event: Callable[[str], None] | None = None,
) -> Any:
    """Open a camera index, a video file, an image-sequence pattern or a stream URL.

    Args:
        camera: Camera index, used when ``source`` is None.
        source: A video file, an image sequence pattern (``frames/img_%04d.png``) or a stream URL.
        width: Capture width to request from a camera.
        height: Capture height to request from a camera.
        realtime: Pace a file like a live source (default: live sources live, files every frame in order).
        max_retries: Reconnection attempts for live sources.
        on_event: Callable taking a line about reconnections.

    Raises:
        SourceError: The source cannot be opened or gives no first frame; the message says what was tried.
    """
    if source is None:
        return _open_camera(camera, width, height, max_retries, on_event)
    if is_stream_url(source):
        return _open_stream(source, max_retries, on_event)
    path = source[7:] if source.lower().startswith("file://") else source
    if not is_sequence_pattern(path):
        p = Path(path)
        if not p.exists():
            raise SourceError(f"video file not found: {path}")
        if p.is_dir():
            raise SourceError(
                f"{path} is a folder; for images use `edgecnn classify`, or give a pattern like {p / 'img_%04d.png'}"
            )
    capture = Capture(path)
    if not capture.opened():
        raise SourceError(
            f"OpenCV cannot open {path} as a video (unsupported container or codec, or not a video)"
        )
    seq = SequentialSource(capture, f"file {path}", realtime=bool(realtime))
    seq.prime()
    return seq


def _open_camera(
    index: int, width: int | None, height: int | None, max_retries: int, on_event: Any
) -> LatestFrameSource:
    tried = []
    devices = camera_devices()
    capture = Capture(index, width, height)
    tried.append(f"camera index {index} (default backend)")
    if not capture.opened() and sys.platform.startswith("linux"):
        import cv2

        capture.release()
        capture = Capture(index, width, height, api=cv2.CAP_V4L2)
        tried.append(f"camera index {index} (V4L2)")
    if not capture.opened():
        capture.release()
        found = (
            f"video devices present: {', '.join(devices)}"
            if devices
            else "no /dev/video* devices on this machine"
            if sys.platform.startswith("linux")
            else "no camera answered"
        )
        raise SourceError(
            f"camera {index} did not open (tried {'; '.join(tried)}; {found}); use --camera N or --source FILE_OR_URL"
        )
    first = capture.read()
    if first is None:
        capture.release()
        raise SourceError(
            f"camera {index} opened but gave no frame (in use by another program, or no permission)"
        )
    return _live_source(
        capture, first, lambda: Capture(index, width, height), f"camera {index}", max_retries, on_event
    )


def _open_stream(url: str, max_retries: int, on_event: Any) -> LatestFrameSource:
    _check_stream_reachable(url)
    capture = Capture(url)
    if not capture.opened():
        capture.release()
        raise SourceError(
            f"cannot open the stream {url} (wrong URL, unsupported protocol, or the server refused)"
        )
    first = capture.read()
    if first is None:
        capture.release()
        raise SourceError(f"the stream {url} opened but sent no frame")
    return _live_source(capture, first, lambda: Capture(url), f"stream {url}", max_retries, on_event)


def _live_source(
    capture: Capture,
    first: np.ndarray,
    reconnect: Callable[[], Capture],
    description: str,
    max_retries: int,
    on_event: Any,
) -> LatestFrameSource:
    """A latest-frame source over an opened capture whose first frame was already read."""
    pending = [first]
    box = {"capture": capture}

    def reader() -> np.ndarray | None:
        if pending:
            return pending.pop()
        return box["capture"].read()

    def reopen() -> Callable[[], np.ndarray | None] | None:
        box["capture"].release()
        box["capture"] = reconnect()
        return box["capture"].read if box["capture"].opened() else None

    return LatestFrameSource(
        reader,
        reopen,
        description,
        capture.fps(),
        max_retries,
        on_event=on_event,
        release=lambda: box["capture"].release(),
    )


def _check_stream_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast with a clear message when a stream's host does not answer (OpenCV may hang for long)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if not parsed.hostname:
        raise SourceError(f"not a usable stream URL: {url}")
    default_ports = {"rtsp": 554, "http": 80, "https": 443, "rtmp": 1935, "udp": None, "tcp": None}
    port = parsed.port or default_ports.get(parsed.scheme.lower())
    if port is None:
        return
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SourceError(
            f"cannot reach {parsed.hostname}:{port} for {url} ({exc.strerror or exc})"
        ) from None


def display_available() -> tuple[bool, str]:
    """Whether an OpenCV window can be opened here, decided before any window call.

    OpenCV's Qt build aborts the whole process when it cannot reach a display, so the display is checked
    first: the GUI backend compiled into OpenCV, then (on Linux and BSD) an X11 or Wayland server that answers.

    Returns:
        (available, reason when not).
    """
    import cv2

    info = cv2.getBuildInformation()
    gui = _gui_backend(info)
    if gui in ("NONE", ""):
        return False, "this OpenCV build has no GUI support (opencv-python-headless?)"
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        wayland = os.environ.get("WAYLAND_DISPLAY")
        if wayland:
            runtime = os.environ.get("XDG_RUNTIME_DIR", "")
            if runtime and Path(runtime, wayland).exists() and os.environ.get("DISPLAY"):
                return True, ""
        display = os.environ.get("DISPLAY")
        if not display:
            return False, "no display (DISPLAY is not set)"
        if not _x_server_answers(display):
            return False, f"the X display {display} does not answer"
    return True, ""


def _gui_backend(build_info: str) -> str:
    lines = build_info.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("GUI:"):
            value = line.split(":", 1)[1].strip()
            if value:
                return value.upper()
            for follow in lines[i + 1 : i + 4]:
                if ":" in follow and follow.strip():
                    return follow.split(":", 1)[0].strip().upper()
    return "UNKNOWN"


def _x_server_answers(display: str, timeout: float = 0.5) -> bool:
    host, _, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return False
    try:
        if host in ("", "unix"):
            path = f"/tmp/.X11-unix/X{number}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(path)
            return True
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False
