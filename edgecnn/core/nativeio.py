"""Capturing what native libraries (ONNX Runtime, TensorFlow) write straight to file descriptors 1 and 2.

Their logs bypass Python's streams; we capture them to turn a provider failure into a one-line reason and to
keep TensorFlow's start-up chatter out of the user's terminal.

Descriptors 1 and 2, ``sys.stdout``, ``sys.stderr`` and the warning filters belong to the whole process: two
threads swapping them at once restore each other's copies (fd 2 left on a deleted temporary file, every
later line lost). One process-wide lock makes each capture a whole unit; it is reentrant, so a capture
inside a capture (on the same thread) still works.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence

_SWAP_LOCK = threading.RLock()


@contextlib.contextmanager
def capture_native_output() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptors 1 and 2, and what Python code prints or warns.

    ONNX Runtime reports a provider that cannot start partly from C++ (to the descriptors) and partly from
    Python (``print`` and ``warnings``); all of it lands in the yielded list when the block ends. Captures
    in other threads wait for this one to end (what those threads write meanwhile is captured with it).
    """
    lines: list[str] = []
    py_out, py_err = io.StringIO(), io.StringIO()
    with (
        _SWAP_LOCK,
        contextlib.redirect_stdout(py_out),
        contextlib.redirect_stderr(py_err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        with _capture_descriptors(lines):
            yield lines
    for stream in (py_out, py_err):
        lines.extend(strip_ansi(line) for line in stream.getvalue().splitlines() if line.strip())
    lines.extend(str(w.message) for w in caught)


@contextlib.contextmanager
def _capture_descriptors(lines: list[str]) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 into a temporary file for the block; its lines go to ``lines``."""
    _flush_python_streams()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:  # no usable descriptors (embedded interpreters): capture nothing
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            yield
            return
        try:
            yield
        finally:
            _flush_python_streams()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines.extend(strip_ansi(line) for line in text.splitlines() if line.strip())


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


#: TensorFlow start-up lines that say nothing actionable on a machine without a GPU.
TF_NOISE = (
    "All log messages before absl::InitializeLog",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cu",
    "computation placer already registered",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
    "TF-TRT Warning",
)


def replay(lines: Sequence[str], drop: Sequence[str] = TF_NOISE) -> None:
    """Write captured lines back to stderr, leaving out known noise."""
    for line in lines:
        if not any(pattern in line for pattern in drop):
            print(line, file=sys.stderr)
