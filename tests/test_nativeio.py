"""Capturing native output swaps process-wide descriptors: threads must not undo each other's swaps."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time

from edgecnn.core.nativeio import capture_native_output


def test_concurrent_captures_leave_stderr_where_it_was(capfd):
    """Four threads capture at once (as four models loading with a GPU provider do); each one leaves the
    block in the order it entered, the interleaving that left fd 2 on a deleted temporary file."""
    before = os.fstat(2)
    streams = (sys.stdout, sys.stderr)
    order = itertools.count()
    start = threading.Barrier(4)
    captured: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def load(name: int) -> None:
        try:
            start.wait()
            with capture_native_output() as lines:
                rank = next(order)
                os.write(2, f"native line from thread {name}\n".encode())
                time.sleep(0.05 * (rank + 1))  # first in, first out
            captured[name] = lines
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    after = os.fstat(2)
    assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)
    assert (sys.stdout, sys.stderr) == streams
    for name, lines in captured.items():
        assert f"native line from thread {name}" in lines
    os.write(2, b"still visible\n")
    assert "still visible" in capfd.readouterr().err


def test_nested_capture_on_one_thread():
    with capture_native_output() as outer:
        os.write(2, b"outer\n")
        with capture_native_output() as inner:
            os.write(2, b"inner\n")
    assert inner == ["inner"]
    assert "outer" in outer
