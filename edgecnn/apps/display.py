"""What ``edgecnn webcam`` shows: whether a window can be opened here (decided before any OpenCV window call),
and the overlay drawn on every shown or recorded frame.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np


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


def draw_overlay(
    frame: np.ndarray,
    top: list[tuple[str, float]],
    fps: float,
    latency_ms: float,
    provider: str,
    paused: bool = False,
) -> None:
    """Draw top-k labels with confidence bars, FPS, model latency and provider onto ``frame`` (in place)."""
    import cv2

    h, w = frame.shape[:2]
    scale = max(0.4, min(1.0, w / 960))
    line = int(28 * scale) + 4
    panel_h = line * (len(top) + 1) + 10
    panel_w = min(w, int(360 * scale) + 20)
    roi = frame[0:panel_h, 0:panel_w]
    roi[:] = (roi * 0.45).astype(
        np.uint8
    )  # darken under the text, cheaper than addWeighted on the whole frame
    bar_max = panel_w - int(190 * scale) - 10
    for i, (label, p) in enumerate(top):
        y = 8 + line * (i + 1)
        colour = (80, 220, 80) if i == 0 else (200, 200, 200)
        cv2.putText(
            frame, f"{label[:14]}", (8, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, 1, cv2.LINE_AA
        )
        x0 = int(140 * scale)
        cv2.rectangle(frame, (x0, y - line + 8), (x0 + max(1, int(bar_max * p)), y - 6), colour, -1)
        cv2.putText(
            frame,
            f"{p * 100:.0f}%",
            (x0 + bar_max + 6, y - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            colour,
            1,
            cv2.LINE_AA,
        )
    status = f"{fps:.1f} FPS  model {latency_ms:.1f} ms  {provider}" + ("  PAUSED" if paused else "")
    cv2.putText(
        frame,
        status,
        (8, panel_h - 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5 * scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
