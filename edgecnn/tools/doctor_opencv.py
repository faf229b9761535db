"""The doctor's OpenCV and camera checks: the build's GUI and video backends, the display, which cameras open."""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

from edgecnn.tools.doctor_runtime import OPENCV_DISTRIBUTIONS, installed_version

_CAMERA_TIMEOUT_S = 3.0


def opencv_info() -> dict[str, Any]:
    """OpenCV's version, GUI backend (NONE: a headless build), display and video I/O backends."""
    import cv2

    installed = [(n, v) for n in OPENCV_DISTRIBUTIONS if (v := installed_version(n))]
    gui = build_field(cv2.getBuildInformation(), "GUI") or "unknown"
    registry = cv2.videoio_registry

    def names(backends: Any) -> list[str]:
        return list(dict.fromkeys(registry.getBackendName(b) for b in backends))

    display = {name: os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")}
    has_display = any(display.values()) or not sys.platform.startswith("linux")
    clash = None
    if len(installed) > 1:
        listing = " ".join(n for n, _ in installed)
        clash = (
            f"several OpenCV packages are installed ({listing}); they share the import name 'cv2'. "
            f"Fix: pip uninstall -y {listing} && pip install opencv-python"
        )
    return {
        "version": cv2.__version__,
        "installed": [{"name": n, "version": v} for n, v in installed],
        "clash": clash,
        "gui": gui,
        "headless": gui.upper() == "NONE",
        "display": {**display, "available": has_display},
        "can_show_windows": gui.upper() != "NONE" and has_display,
        "backends": names(registry.getBackends()),
        "camera_backends": names(registry.getCameraBackends()),
        "stream_backends": names(registry.getStreamBackends()),
        "writer_backends": names(registry.getWriterBackends()),
    }


def build_field(build_information: str, name: str) -> str | None:
    """The value of one ``name:`` line of cv2.getBuildInformation() (e.g. "GUI" -> "GTK3" or "NONE")."""
    match = re.search(rf"^\s*{re.escape(name)}:[ \t]*(.*)$", build_information, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def camera_statuses(count: int, timeout: float = _CAMERA_TIMEOUT_S) -> dict[str, Any]:
    """Try to open camera indices 0..count-1, releasing each at once; none opening is normal on servers."""
    results = [probe_camera(i, timeout) for i in range(max(0, count))]
    return {
        "probed": [r["index"] for r in results],
        "opened": [r["index"] for r in results if r["opened"]],
        "results": results,
    }


def probe_camera(index: int, timeout: float = _CAMERA_TIMEOUT_S) -> dict[str, Any]:
    """Open one camera in a worker thread, give up after ``timeout`` seconds, release it at once."""
    result: dict[str, Any] = {"index": index, "opened": False, "backend": None, "error": None}
    result["error"] = missing_camera_device(index)
    if result["error"]:
        return result
    from edgecnn.core.nativeio import capture_native_output

    def attempt() -> None:
        import cv2

        try:
            capture = cv2.VideoCapture(index)
            try:
                if capture.isOpened():
                    result.update(opened=True, backend=capture.getBackendName())
            finally:
                capture.release()
        except Exception as exc:  # OpenCV raises cv2.error for a broken backend
            result["error"] = str(exc).strip()[:200] or type(exc).__name__

    worker = threading.Thread(target=attempt, name=f"edgecnn-camera-{index}", daemon=True)
    with capture_native_output() as log:  # OpenCV logs its own warnings for a camera it cannot open
        worker.start()
        worker.join(timeout)
    if worker.is_alive():
        result["error"] = f"no answer within {timeout:g} s"
    elif not result["opened"] and not result["error"]:
        result["error"] = log[-1][:200] if log else "cannot be opened"
    return result


def missing_camera_device(index: int) -> str | None:
    """Why camera ``index`` cannot exist (Linux: no /dev/videoN), or None when it may; saves a slow open."""
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        return f"no /dev/video{index} device"
    return None
