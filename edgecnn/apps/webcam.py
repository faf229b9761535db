"""``edgecnn webcam``: the predictor on a live camera, a video file or a stream, with overlay and recording.

Each frame goes through the stages capture wait, preprocess, inference (every Nth frame), overlay, display
and write; each stage is timed so the summary can say where the time goes. The recording is released in a
``finally`` block, so it is finalised and playable after the end of the source, ``--max-frames``, ``q`` or
Ctrl-C.

The loop waits for a frame as long as the source says it may still deliver one (a slow camera, a stream that
is reconnecting) and ends only when the source says it ended, was lost or failed; the summary's
``end_reason`` says which, and ``failed`` is true for a lost source or a backend error.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.apps.display import display_available, draw_overlay
from edgecnn.apps.live import SOURCE_LOST, Frame, FrameSource
from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError, OutputError
from edgecnn.core.imaging import frame_to_input
from edgecnn.core.stats import percentile
from edgecnn.runtime.predictor import Predictor

logger = logging.getLogger(__name__)

STAGES = ("read", "capture_wait", "preprocess", "inference", "overlay", "display", "write")
WINDOW = "edgecnn"
CROPS = ("center", "none")
#: How each contract ``fit`` mode is reproduced on a frame: frame_to_input applies the contract's fit itself
#: (imaging.resize), so no crop is added before it; --crop center first cuts the frame to the model's aspect.
FIT_TO_CROP = {"stretch": "none", "crop": "none", "letterbox": "none"}
#: Longest single wait for a frame; the loop waits on while the source is alive, keeping the window responsive.
POLL_SECONDS = 0.1
QUIT_KEYS = (ord("q"), 27)


@dataclass
class WebcamConfig:
    """Options of one ``webcam`` run (the source is opened by the caller)."""

    crop: str | None = None  # None: as the model's contract says (see FIT_TO_CROP)
    top_k: int = 3
    every: int = 1
    smooth: int = 1
    display: bool = True
    record: Path | None = None
    jsonl: Path | None = None
    max_frames: int | None = None
    snapshot_dir: Path = Path(".")
    force: bool = False

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop not in CROPS:
            raise ConfigError(f"--crop must be center or none, got {self.crop!r}")
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.every < 1:
            raise ConfigError(f"--every must be at least 1, got {self.every}")
        if self.smooth < 1:
            raise ConfigError(f"--smooth must be at least 1, got {self.smooth}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1, got {self.max_frames}")
        for option, path in (("--record", self.record), ("--jsonl", self.jsonl)):
            if path is not None:
                _check_output(option, path, self.force)
        if self.record is not None and self.record.suffix.lower() not in (".mp4", ".avi", ".mkv"):
            raise ConfigError(f"--record must end in .mp4, .avi or .mkv, got {self.record}")


def _check_output(option: str, path: Path, force: bool) -> None:
    """Refuse an output file that cannot be written, before any source is opened."""
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name inside it")
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {option} {path}: no permission to write in {folder}")


def crop_for(spec: InputSpec) -> str:
    """The crop that gives a frame the fit the model was trained with (its contract's ``input.fit``).

    Raises:
        ConfigError: The contract names a fit mode this version cannot reproduce on frames.
    """
    try:
        return FIT_TO_CROP[spec.fit]
    except KeyError:
        raise ConfigError(
            f"the model's contract asks for fit {spec.fit!r}, which webcam cannot reproduce; "
            f"pass --crop {' or --crop '.join(CROPS)}"
        ) from None


@dataclass
class WebcamSummary:
    """What a run did and where its time went."""

    source: str
    provider: str
    frames_read: int = 0
    frames_shown: int = 0
    frames_classified: int = 0
    frames_dropped: int = 0
    seconds: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    overhead_ms: list[float] = field(default_factory=list)
    end_reason: str = "end of source"
    headless_reason: str | None = None
    record: str | None = None
    jsonl: str | None = None
    snapshots: list[str] = field(default_factory=list)
    last_label: str | None = None

    @property
    def fps(self) -> float:
        return self.frames_shown / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> bool:
        """The run ended because the source was lost or its backend failed."""
        return self.end_reason == SOURCE_LOST or self.end_reason.startswith("error:")

    def stage_stats(self) -> dict[str, dict[str, float | None]]:
        return {name: _stats(values) for name, values in self.stages.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "provider": self.provider,
            "frames_read": self.frames_read,
            "frames_shown": self.frames_shown,
            "frames_classified": self.frames_classified,
            "frames_dropped": self.frames_dropped,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "stages_ms": self.stage_stats(),
            "overhead_ms": _stats(self.overhead_ms),
            "end_reason": self.end_reason,
            "headless": self.headless_reason is not None,
            "headless_reason": self.headless_reason,
            "record": self.record,
            "jsonl": self.jsonl,
            "snapshots": self.snapshots,
        }


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "count": 0}
    p95 = percentile(values, 95)
    return {"median": round(statistics.median(values), 4), "p95": round(p95, 4), "count": len(values)}


class Smoother:
    """Averages the last N probability vectors (N = 1: no smoothing)."""

    def __init__(self, n: int) -> None:
        self.window: deque[np.ndarray] = deque(maxlen=n)

    def add(self, probs: np.ndarray) -> np.ndarray:
        self.window.append(probs)
        return np.mean(np.stack(self.window), axis=0)


class _Recorder:
    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter.fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.path = path
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, max(1.0, fps), size)
        if not self.writer.isOpened():
            raise OutputError(f"OpenCV cannot write the video {path}")
        self.size = size

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()  # writes the container index: the file is playable from here on
        os.replace(self.tmp, self.path)


def run_webcam(
    source: FrameSource,
    predictor: Predictor,
    config: WebcamConfig,
) -> WebcamSummary:
    """Classify frames from ``source`` until it ends, is lost or fails, ``max_frames``, a quit key or Ctrl-C.

    The source is closed on return; ``end_reason`` in the summary says why the run ended.

    Args:
        source: An opened frame source (see ``capture.open_source``).
        predictor: The model.
        config: Overlay, recording, pacing and display options.

    Raises:
        OutputError: The --jsonl file cannot be written.
        ConfigError: The model's contract asks for a fit this version cannot reproduce and no --crop was given.
    """
    say = logger.info
    summary = WebcamSummary(source=source.description, provider=predictor.provider)
    display = config.display
    if display:
        ok, reason = display_available()
        if not ok:
            display = False
            summary.headless_reason = reason
            say(f"running headless: {reason}")
    else:
        summary.headless_reason = "--no-display"
    spec = predictor.contract.input
    smoother = Smoother(config.smooth)
    recorder: _Recorder | None = None
    jsonl = None
    top: list[tuple[str, float]] = []
    latency_ms = 0.0
    paused = False
    shown_times: deque[float] = deque(maxlen=30)
    start = time.perf_counter()
    window_open = False
    try:
        crop = config.crop or crop_for(spec)
        if config.jsonl is not None:
            jsonl = _open_jsonl(config.jsonl)
            summary.jsonl = str(config.jsonl)
        while True:
            if config.max_frames is not None and summary.frames_shown >= config.max_frames:
                summary.end_reason = "max frames"
                break
            t0 = time.perf_counter()
            frame, end = _next_frame(source, window_open)
            t1 = time.perf_counter()
            if frame is None:
                summary.end_reason = end
                break
            summary.stages["capture_wait"].append((t1 - t0) * 1000)
            summary.stages["read"].append(frame.read_ms)
            image = frame.image
            classify_now = summary.frames_shown % config.every == 0 and not paused
            pre_ms = inf_ms = 0.0
            if classify_now:
                x = frame_to_input(image, spec, crop=crop)
                t2 = time.perf_counter()
                pre_ms = (t2 - t1) * 1000
                probs = predictor.predict_batch(x[None].astype(np.float32))[0]
                t3 = time.perf_counter()
                inf_ms = (t3 - t2) * 1000
                latency_ms = inf_ms
                averaged = smoother.add(probs)
                top = predictor.top_k(averaged[None], config.top_k)[0]
                summary.frames_classified += 1
                summary.stages["preprocess"].append(pre_ms)
                summary.stages["inference"].append(inf_ms)
                summary.last_label = top[0][0]
                if jsonl is not None:
                    jsonl.write(
                        json.dumps(
                            {
                                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                "frame": frame.index,
                                "label": top[0][0],
                                "confidence": round(top[0][1], 6),
                                "top_k": [{"label": lab, "confidence": round(p, 6)} for lab, p in top],
                                "latency_ms": round(inf_ms, 3),
                            }
                        )
                        + "\n"
                    )
            t4 = time.perf_counter()
            shown_times.append(t4)
            fps = (len(shown_times) - 1) / (shown_times[-1] - shown_times[0]) if len(shown_times) > 1 else 0.0
            annotated = image if image.ndim == 3 and image.shape[2] == 3 else _to_bgr(image)
            draw_overlay(annotated, top, fps, latency_ms, predictor.provider, paused)
            t5 = time.perf_counter()
            summary.stages["overlay"].append((t5 - t4) * 1000)
            key = -1
            if display:
                cv2.imshow(WINDOW, annotated)
                window_open = True
                key = cv2.waitKey(1) & 0xFF
            t6 = time.perf_counter()
            if display:
                summary.stages["display"].append((t6 - t5) * 1000)
            if config.record is not None:
                if recorder is None:
                    fps_out = source.fps or 25.0
                    recorder = _Recorder(config.record, fps_out, (annotated.shape[1], annotated.shape[0]))
                    summary.record = str(config.record)
                recorder.write(annotated)
            t7 = time.perf_counter()
            if config.record is not None:
                summary.stages["write"].append((t7 - t6) * 1000)
            # Everything but reading the frame, running the model, showing the window and encoding the video:
            # preprocessing, smoothing, top-k, the JSONL line and the overlay.
            summary.overhead_ms.append((t5 - t1) * 1000 - inf_ms)
            summary.frames_shown += 1
            if key in QUIT_KEYS:
                summary.end_reason = "quit key"
                break
            if key == ord(" "):
                paused = not paused
            if key == ord("s"):
                path = (
                    config.snapshot_dir
                    / f"snapshot-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{frame.index}.png"
                )
                cv2.imwrite(str(path), annotated)
                summary.snapshots.append(str(path))
                say(f"saved {path}")
    except KeyboardInterrupt:
        summary.end_reason = "interrupted"
    finally:
        summary.seconds = time.perf_counter() - start
        summary.frames_read = source.frames_read
        summary.frames_dropped = source.dropped
        source.close()
        if recorder is not None:
            recorder.close()
        if jsonl is not None:
            jsonl.close()
        if window_open:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
    return summary


def _next_frame(source: FrameSource, window_open: bool) -> tuple[Frame | None, str]:
    """The next frame, waiting as long as the source may still deliver one; else (None, why the run ends)."""
    while True:
        frame = source.read(POLL_SECONDS)
        if frame is not None:
            return frame, ""
        reason = source.end_reason
        if reason is not None:
            return None, reason
        if window_open and (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
            return None, "quit key"


def _open_jsonl(path: Path) -> Any:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller's finally
    except OSError as exc:
        raise OutputError(f"cannot write --jsonl {path}: {exc.strerror or exc}") from None


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)


def format_summary(summary: WebcamSummary) -> str:
    """Plain-text end-of-run summary."""
    stats = summary.stage_stats()
    lines = [
        f"source {summary.source}: {summary.end_reason}",
        f"frames read {summary.frames_read}, shown {summary.frames_shown}, classified {summary.frames_classified}, "
        f"dropped {summary.frames_dropped}; {summary.fps:.1f} FPS end to end over {summary.seconds:.1f} s; provider {summary.provider}",
        "stage            median ms   p95 ms",
    ]
    for name in STAGES:
        s = stats[name]
        if s["count"]:
            lines.append(f"{name:<16} {s['median']:9.3f} {s['p95']:8.3f}")
    o = _stats(summary.overhead_ms)
    if o["count"]:
        lines.append(
            f"{'overhead':<16} {o['median']:9.3f} {o['p95']:8.3f}   (preprocess + overlay + bookkeeping)"
        )
    if summary.headless_reason:
        lines.append(f"headless: {summary.headless_reason}")
    if summary.record:
        lines.append(f"recording: {summary.record}")
    if summary.jsonl:
        lines.append(f"per-frame results: {summary.jsonl}")
    return "\n".join(lines)
