"""Frame sources read by a background thread: every frame of a file in order, or the newest frame of a live one.

A source says why it stopped through ``end_reason``: None while it may still deliver (a slow camera, a stream
that is reconnecting), then ``"end of source"`` (the file is finished), ``"source lost"`` (a live source gave
up after its reconnection attempts) or ``"error: <message>"`` (the backend raised). A ``read`` that times out
is not an end: callers wait on while ``end_reason`` is None.

The reader thread owns its capture: it alone reads, reopens and finally releases it, so a capture is never
released while a read or a reopen is in flight, and one created by a reopen during ``close`` is released too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgecnn.core.errors import SourceError

logger = logging.getLogger(__name__)

END_OF_SOURCE = "end of source"
SOURCE_LOST = "source lost"
CLOSED = "closed"
#: Longest wait between two reconnection attempts.
MAX_BACKOFF = 5.0


@dataclass
class Frame:
    """One frame and when and where it was captured."""

    image: np.ndarray
    index: int  # 0-based position in the source (frames dropped by the latest-frame policy leave gaps)
    timestamp: float  # time.monotonic() when the frame was read
    read_ms: float = 0.0  # time the reader thread spent reading and decoding it


class FrameSource(Protocol):
    """Anything that yields frames.

    ``read`` returns the next frame, or None when none came within ``timeout``; ``end_reason`` then tells a
    pause (None: wait on) from an end.
    """

    live: bool
    description: str
    fps: float

    def read(self, timeout: float = 5.0) -> Frame | None: ...

    def close(self) -> None: ...

    @property
    def end_reason(self) -> str | None: ...

    @property
    def dropped(self) -> int: ...

    @property
    def frames_read(self) -> int: ...


class Readable(Protocol):
    """What ``SequentialSource`` needs from a capture (``capture.Capture`` or a test double)."""

    def read(self) -> np.ndarray | None: ...

    def fps(self) -> float: ...

    def release(self) -> None: ...


def error_message(exc: BaseException) -> str:
    """One line about a backend error: its message, or its type when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class _End:
    reason: str


class _Counters:
    """Frames read and frames dropped, as every source reports them."""

    _dropped: int
    _frames: int

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def frames_read(self) -> int:
        return self._frames


class SequentialSource(_Counters):
    """Every frame of a file (or image sequence) in order; optional real-time pacing at the file's frame rate.

    A reader thread decodes the next few frames while the caller works on the current one (a bounded queue:
    memory stays flat however long the file), so reading a frame costs the caller almost nothing.
    """

    live = False

    def __init__(
        self, capture: Readable, description: str, realtime: bool = False, prefetch: int = 4
    ) -> None:
        self.capture = capture
        self.description = description
        self.fps = capture.fps() or 25.0
        self.realtime = realtime
        self.error: BaseException | None = None
        self._frames = 0
        self._start: float | None = None
        self._dropped = 0
        self._queue: queue.Queue[tuple[np.ndarray, float] | _End] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._end_reason: str | None = None
        self._released = False

    def prime(self) -> None:
        """Read the first frame now so that an unreadable file fails before the run starts, then start reading ahead.

        Raises:
            SourceError: The file opened but gives no frame.
        """
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
        try:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    image = self.capture.read()
                except Exception as exc:  # the backend failed: an error, not the end of the file
                    self.error = exc
                    self._put(_End(f"error: {error_message(exc)}"))
                    return
                if image is None:
                    self._put(_End(END_OF_SOURCE))
                    return
                self._put((image, (time.perf_counter() - t) * 1000))
        finally:
            self._release_capture()

    def _put(self, item: tuple[np.ndarray, float] | _End) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next(self, timeout: float) -> tuple[np.ndarray, float] | None:
        if self._end_reason is not None:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self._end_reason = item.reason
            return None
        return item

    def read(self, timeout: float = 30.0) -> Frame | None:
        """The next frame in order; None when none was decoded within ``timeout`` or the file has ended."""
        item = self._next(timeout)
        if item is None:
            return None
        image, read_ms = item
        index = self._frames
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
        self._frames = index + 1
        return Frame(image, index, now, read_ms)

    @property
    def end_reason(self) -> str | None:
        """None while frames may still come; then END_OF_SOURCE or ``"error: <message>"``."""
        return self._end_reason

    def close(self, wait: float = 5.0) -> None:
        """Stop the reader thread and release the capture once its last read has returned.

        Args:
            wait: Seconds to wait for the reader thread; a read still running then releases the capture itself
                when it returns.
        """
        self._stop.set()
        if self._thread is None:
            self._release_capture()
        else:
            self._thread.join(wait)

    def _release_capture(self) -> None:
        if not self._released:
            self._released = True
            self.capture.release()


class LatestFrameSource(_Counters):
    """Reads a live source in a thread and hands out only the newest frame.

    When a read fails (no frame, or the backend raises) the source reconnects up to ``max_retries`` times,
    waiting ``backoff``, then twice as long each time (at most MAX_BACKOFF); a frame resets the count. While it
    reconnects ``end_reason`` stays None; after the last attempt it is SOURCE_LOST, or ``"error: <message>"``
    when the last failure was an exception.

    Args:
        reader: Returns the next frame (or None on failure); called in the grabber thread only.
        reopen: Called in the grabber thread to reconnect; returns a new reader, or None when that failed.
        description: For messages.
        fps: The source's nominal frame rate (0 if unknown).
        max_retries: Reconnection attempts after the source stops delivering.
        backoff: First wait between attempts in seconds.
        release: Frees the capture; called once, by the grabber thread after its last read or reopen.
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
        release: Callable[[], None] | None = None,
    ) -> None:
        self.description = description
        self.fps = fps
        self.error: BaseException | None = None
        self.retries = 0
        self._reader = reader
        self._reopen = reopen
        self._max_retries = max_retries
        self._backoff = backoff
        self._release = release
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._last_given = -1
        self._frames = 0
        self._dropped = 0
        self._end_reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reason = CLOSED
        try:
            reason = self._grab()
        finally:
            try:
                if self._release is not None:
                    self._release()
            finally:
                with self._cond:
                    self._end_reason = reason
                    self._cond.notify_all()

    def _grab(self) -> str:
        """Read until stopped; returns the end reason."""
        failures = 0
        while not self._stop.is_set():
            t = time.perf_counter()
            error: Exception | None = None
            try:
                image = self._reader()
            except Exception as exc:  # a backend error is a failed read: reconnecting may cure it
                image, error = None, exc
            if self._stop.is_set():
                break
            if image is not None:
                failures = 0
                self._publish(image, (time.perf_counter() - t) * 1000)
                continue
            while True:
                failures += 1
                if failures > self._max_retries:
                    return self._give_up(error)
                self.retries += 1
                wait = min(MAX_BACKOFF, self._backoff * 2 ** (failures - 1))
                what = "no frame" if error is None else f"read failed ({error_message(error)})"
                logger.info(
                    f"{self.description}: {what}; reconnecting in {wait:.1f} s "
                    f"(attempt {failures}/{self._max_retries})"
                )
                if self._stop.wait(wait):
                    return CLOSED
                if self._reopen is None:
                    break  # read the same reader again
                try:
                    reader, error = self._reopen(), None
                except Exception as exc:
                    reader, error = None, exc
                if self._stop.is_set():
                    return CLOSED
                if reader is not None:
                    self._reader = reader
                    break
        return CLOSED

    def _give_up(self, error: Exception | None) -> str:
        attempts = f"after {self._max_retries} reconnection attempt{'s' if self._max_retries != 1 else ''}"
        if error is not None:
            self.error = error
            logger.info(f"{self.description}: {error_message(error)}; giving up {attempts}")
            return f"error: {error_message(error)}"
        logger.info(f"{self.description}: no frame; giving up {attempts}")
        return SOURCE_LOST

    def _publish(self, image: np.ndarray, read_ms: float) -> None:
        with self._cond:
            if self._fresh():
                self._dropped += 1  # the previous newest frame was never taken: it is stale now
            self._latest = Frame(image, self._frames, time.monotonic(), read_ms)
            self._frames += 1
            self._cond.notify_all()

    def _fresh(self) -> bool:
        return self._latest is not None and self._latest.index > self._last_given

    def read(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not handed out yet; waits up to ``timeout`` for one.

        Returns:
            The frame, or None when none came in time (see ``end_reason``: None means wait on).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._fresh():
                    frame = self._latest
                    self._last_given = frame.index
                    return frame
                if self._end_reason is not None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    @property
    def end_reason(self) -> str | None:
        """None while the source may still deliver (reading, waiting or reconnecting), then why it stopped."""
        with self._cond:
            return None if self._fresh() else self._end_reason

    def newest_index(self) -> int:
        with self._cond:
            return self._latest.index if self._latest is not None else -1

    def close(self, wait: float = 5.0) -> None:
        """Stop the grabber thread (a backoff wait ends at once); it releases the capture after its last read.

        Args:
            wait: Seconds to wait for the thread; a read still blocked then releases the capture itself when it
                returns.
        """
        self._stop.set()
        self._thread.join(wait)
