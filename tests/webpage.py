"""Helpers for the web bundle's browser tests and benchmark: a fake-camera video, a static server for the
bundle (its own serve.py, on 127.0.0.1) and headless Chromium with the fake camera."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def write_y4m(video: Path, out: Path, frames: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    """The first ``frames`` frames of ``video`` as a YUV4MPEG2 file (4:2:0), Chromium's fake camera format."""
    capture = cv2.VideoCapture(str(video))
    width, height = size
    with open(out, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        written = 0
        while written < frames:
            ok, frame = capture.read()
            if not ok:
                break
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            fh.write(b"FRAME\n" + np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420)).tobytes())
            written += 1
    capture.release()
    if written == 0:
        raise RuntimeError(f"no frames read from {video}")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_bundle(bundle: Path, isolated: bool = True) -> Iterator[str]:
    """Serve ``bundle`` on 127.0.0.1: with its serve.py (isolation headers) or Python's plain http.server."""
    port = free_port()
    if isolated:
        command = [sys.executable, str(bundle / "serve.py"), "--port", str(port)]
    else:
        command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(bundle)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def chromium_path() -> str | None:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


def launch(playwright, y4m: Path | None = None):
    """Headless Chromium with the fake camera playing ``y4m`` (permission granted without a prompt)."""
    args = ["--no-sandbox", "--enable-unsafe-swiftshader"]
    if y4m is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}",
        ]
    return playwright.chromium.launch(executable_path=chromium_path(), args=args, timeout=60_000)


def open_page(browser, url: str, errors: list[str]):
    page = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    origin = url.split("?")[0]  # every request stays on the bundle's own server
    page.on(
        "request",
        lambda r: not r.url.startswith(origin) and r.url.startswith("http") and errors.append(r.url),
    )
    page.goto(url)
    page.wait_for_selector("body:not([data-ready=false])", timeout=60_000)
    return page


def wait_until(page, expression: str, timeout: float = 60.0) -> object:
    """Poll ``expression`` in the page until it is truthy (the page's CSP forbids Playwright's own polling,
    which evaluates strings inside the page)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
