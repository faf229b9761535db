"""Frame sources for ``edgecnn webcam``: cameras, video files, image sequences and stream URLs.

Live sources (cameras, streams) are read by a background thread that keeps only the newest frame, so a slow
model never works on a stale picture: what is shown is at most one frame behind the source. Files are read in
order, every frame, unless pacing as a live source was asked for. A live source that stops delivering is
reopened a bounded number of times with backoff; then it reports that it was lost (see ``live``).

This module opens sources; ``live`` holds the threaded readers and ``display`` the window check. Their names
are importable from here too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgecnn.apps.display import display_available
from edgecnn.apps.live import (
    END_OF_SOURCE,
    SOURCE_LOST,
    Frame,
    FrameSource,
    LatestFrameSource,
    SequentialSource,
)
from edgecnn.core.errors import ConfigError, SourceError

__all__ = [
    "END_OF_SOURCE",
    "SOURCE_LOST",
    "Capture",
    "Frame",
    "FrameSource",
    "LatestFrameSource",
    "SequentialSource",
    "camera_devices",
    "check_source_options",
    "display_available",
    "is_sequence_pattern",
    "is_stream_url",
    "open_capture",
    "open_source",
]


def is_stream_url(text: str) -> bool:
    return "://" in text and not text.lower().startswith("file://")


def is_sequence_pattern(text: str) -> bool:
    return "%" in text and "d" in text.split("%", 1)[1][:4]


_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "level": 0}


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own log lines while a capture opens (a dozen WARN/ERROR lines per absent camera) are left out:
    edgecnn's message says what was tried and what failed. Kept when OPENCV_LOG_LEVEL asks for them."""
    import cv2

    if os.environ.get("OPENCV_LOG_LEVEL"):
        yield
        return
    with _QUIET_LOCK:  # captures opening at once in several threads: the first saves, the last restores
        if not _QUIET["depth"]:
            _QUIET["level"] = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if not _QUIET["depth"]:
                cv2.utils.logging.setLogLevel(_QUIET["level"])


class Capture:
    """A thin wrapper over cv2.VideoCapture that fails fast on open and on the first frame."""

    def __init__(
        self, target: int | str, width: int | None = None, height: int | None = None, api: int | None = None
    ) -> None:
        import cv2

        self.target = target
        with _quiet_opencv():
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


def check_source_options(
    source: str | None = None,
    width: int | None = None,
    height: int | None = None,
    realtime: bool | None = None,
) -> None:
    """Refuse options that cannot apply to the chosen source, before anything is opened.

    A capture size can only be requested from a camera (a file or stream has its own size), and pacing applies
    only to video files and image sequences (cameras and streams are always read live, newest frame only).

    Args:
        source: The ``--source`` given, or None for a camera.
        width: The capture width asked for.
        height: The capture height asked for.
        realtime: The pacing asked for (None: not given).

    Raises:
        ConfigError: An option that would be ignored by this source, or a size below 1.
    """
    for option, value in (("--width", width), ("--height", height)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")
    if source is not None and (width is not None or height is not None):
        raise ConfigError(
            f"--width/--height request a capture size from a camera; --source {source} has its own frame size "
            "(every frame is resized to the model input anyway): drop --width/--height"
        )
    if realtime is not None and (source is None or is_stream_url(source)):
        flag = "--realtime" if realtime else "--no-realtime"
        what = "a camera" if source is None else f"the stream {source}"
        raise ConfigError(
            f"{flag} paces a video file or image sequence; {what} is always read live (newest frame only): "
            f"drop {flag}"
        )


def open_source(
    camera: int = 0,
    source: str | None = None,
    width: int | None = None,
    height: int | None = None,
    realtime: bool | None = None,
    max_retries: int = 3,
    backoff: float = 0.5,
) -> LatestFrameSource | SequentialSource:
    """Open a camera index, a video file, an image-sequence pattern or a stream URL.

    Args:
        camera: Camera index, used when ``source`` is None.
        source: A video file, an image sequence pattern (``frames/img_%04d.png``) or a stream URL.
        width: Capture width to request from a camera (refused with ``source``).
        height: Capture height to request from a camera (refused with ``source``).
        realtime: Pace a file like a live source (default: every frame in order); refused for cameras and
            streams, which are always live.
        max_retries: Reconnection attempts for live sources.
        backoff: First wait between reconnection attempts in seconds (doubles each time).

    Raises:
        ConfigError: An option that cannot apply to this source (see ``check_source_options``).
        SourceError: The source cannot be opened or gives no first frame; the message says what was tried.
    """
    check_source_options(source, width, height, realtime)
    if source is None:
        return _open_camera(camera, width, height, max_retries, backoff)
    if is_stream_url(source):
        return _open_stream(source, max_retries, backoff)
    path = source[7:] if source.lower().startswith("file://") else source
    if not is_sequence_pattern(path):
        p = Path(path)
        if not p.exists():
            raise SourceError(f"video file not found: {path}")
        if p.is_dir():
            raise SourceError(
                f"{path} is a folder; for images use `edgecnn classify`, or give a pattern like {p / 'img_%04d.png'}"
            )
    capture, _ = open_capture(path)
    if not capture.opened():
        capture.release()
        raise SourceError(
            f"OpenCV cannot open {path} as a video (unsupported container or codec, or not a video)"
        )
    seq = SequentialSource(capture, f"file {path}", realtime=bool(realtime))
    try:
        seq.prime()
    except BaseException:
        seq.close()
        raise
    return seq


def open_capture(
    target: int | str, width: int | None = None, height: int | None = None
) -> tuple[Capture, list[str]]:
    """Open a camera index, a stream URL or a file: the one way, for the first open and for every reopen.

    A camera is tried with OpenCV's default backend, then on Linux with V4L2 (the default may pick a backend
    that cannot open the device); a stream or file with the default backend only.

    Returns:
        The capture (check ``opened()``; the caller releases it) and what was tried, for messages.
    """
    capture = Capture(target, width, height)
    if not isinstance(target, int):
        return capture, [str(target)]
    tried = [f"camera index {target} (default backend)"]
    if not capture.opened() and sys.platform.startswith("linux"):
        import cv2

        capture.release()
        capture = Capture(target, width, height, api=cv2.CAP_V4L2)
        tried.append(f"camera index {target} (V4L2)")
    return capture, tried


def _open_camera(
    index: int, width: int | None, height: int | None, max_retries: int, backoff: float
) -> LatestFrameSource:
    devices = camera_devices()
    capture, tried = open_capture(index, width, height)
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
    return _live_source(capture, first, index, width, height, f"camera {index}", max_retries, backoff)


def _open_stream(url: str, max_retries: int, backoff: float) -> LatestFrameSource:
    _check_stream_reachable(url)
    capture, _ = open_capture(url)
    if not capture.opened():
        capture.release()
        raise SourceError(
            f"cannot open the stream {url} (wrong URL, unsupported protocol, or the server refused)"
        )
    first = capture.read()
    if first is None:
        capture.release()
        raise SourceError(f"the stream {url} opened but sent no frame")
    return _live_source(capture, first, url, None, None, f"stream {url}", max_retries, backoff)


def _live_source(
    capture: Capture,
    first: np.ndarray,
    target: int | str,
    width: int | None,
    height: int | None,
    description: str,
    max_retries: int,
    backoff: float,
) -> LatestFrameSource:
    """A latest-frame source over an opened capture whose first frame was already read.

    A reconnection opens ``target`` through ``open_capture``, exactly as the first open did. The source's
    grabber thread is the only caller of these closures, so the capture they share is read, replaced and
    released by one thread.
    """
    pending = [first]
    current = [capture]

    def reader() -> np.ndarray | None:
        if pending:
            return pending.pop()
        return current[0].read()

    def reopen() -> Callable[[], np.ndarray | None] | None:
        current[0].release()
        current[0] = open_capture(target, width, height)[0]
        return reader if current[0].opened() else None

    def release() -> None:
        current[0].release()

    return LatestFrameSource(
        reader,
        reopen,
        description,
        capture.fps(),
        max_retries,
        backoff,
        release=release,
    )


def _check_stream_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast with a clear message when a stream's host does not answer (OpenCV may hang for long)."""
    from urllib.parse import urlparse

    try:
        parsed = urlparse(url)
        host, port = parsed.hostname, parsed.port  # .port raises ValueError when out of range or not a number
    except ValueError as exc:
        raise SourceError(f"not a usable stream URL: {url} ({exc})") from None
    if not host:
        raise SourceError(f"not a usable stream URL: {url} (no host)")
    default_ports = {"rtsp": 554, "http": 80, "https": 443, "rtmp": 1935, "udp": None, "tcp": None}
    port = port or default_ports.get(parsed.scheme.lower())
    if port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except UnicodeError as exc:  # a host name IDNA cannot encode (an empty or over-long label)
        raise SourceError(f"not a usable stream URL: {url} (host name: {exc})") from None
    except OSError as exc:
        raise SourceError(f"cannot reach {host}:{port} for {url} ({exc.strerror or exc})") from None
