"""Writing files so that a reader, a crash or Ctrl-C never sees half of one: the one atomic-write helper.

A temporary file beside the target is written, flushed to disk, given the usual permissions and renamed over
the target in one step; any failure removes it. Everything edgecnn writes whole (models, reports, JSON
results, model cards) goes through here.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgecnn.core.errors import OutputError

#: A temporary file older than this was left by a writer that was killed; a running one renews its file.
STALE_PARTIAL_SECONDS = 3600


def _file_mode() -> int:
    """0o666 less the process umask, read without changing it (os.umask would, process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


@contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` in one rename.

    A failure or an interruption inside the block removes the temporary file, so ``path`` is either the old
    file or the complete new one, never a partial file.

    Raises:
        OutputError: ``path`` exists and ``force`` is off, is a folder, or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    _remove_stale_partials(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=".partial" + path.suffix, dir=path.parent
        )
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600; the file should get the usual permissions
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: str | bytes, errors: str = "strict") -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically, replacing it.

    Raises:
        OutputError: The file or its folder cannot be written.
    """
    payload = data if isinstance(data, bytes) else data.encode("utf-8", errors)
    with atomic_output(path) as tmp:
        tmp.write_bytes(payload)


def check_writable(path: str | os.PathLike[str], force: bool = True) -> None:
    """Fail now, before any work, if ``path`` could not be written later.

    Raises:
        OutputError: ``path`` is a folder, exists without ``force``, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise OutputError(f"{path} exists; pass --force to overwrite it")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {folder}: permission denied")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")


def _remove_stale_partials(path: Path) -> None:
    """Delete hidden temporary files of earlier writes to ``path`` that were killed (older than an hour)."""
    cutoff = time.time() - STALE_PARTIAL_SECONDS
    for stale in path.parent.glob(f".{path.stem}.*.partial{path.suffix}"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass  # gone already, or not ours to remove
