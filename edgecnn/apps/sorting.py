"""``classify --sort-into``: copy or move files into one folder per predicted label, never overwriting.

Label names come from the model file, so they are made safe before they become folder names (pathvalidate:
no path separators or reserved names, at most 255 bytes; no ``..``, hidden or empty names); the final path is
checked to be inside the target folder. A name clash gets a numeric suffix; a move removes the source only
after its copy is complete on disk, and a move that cannot remove its source is undone. A failed copy leaves
no partial file behind.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pathvalidate import sanitize_filename

from edgecnn.core.errors import OutputError

UNCERTAIN = "_uncertain"
#: Most bytes in one file name on the common file systems (ext4, APFS, NTFS in UTF-16 units, FAT long names).
MAX_NAME_BYTES = 255


def safe_folder_name(label: str, index: int = 0) -> str:
    """A folder name for a label that cannot escape its parent, hide itself, or be reserved on any platform."""
    name = sanitize_filename(label, replacement_text="_", platform="universal", max_len=MAX_NAME_BYTES)
    name = name.strip().lstrip(".")
    if not name:
        name = f"_label{index}"
    return name


def _fit(stem: str, tail: str) -> str:
    """``stem`` cut (on a character boundary) so that ``stem + tail`` is at most MAX_NAME_BYTES in UTF-8."""
    room = MAX_NAME_BYTES - len(os.fsencode(tail))
    data = os.fsencode(stem)
    if len(data) <= room:
        return stem
    return os.fsdecode(data[:room]).encode("utf-8", "ignore").decode("utf-8", "ignore") or "_"


class Sorter:
    """Places classified files under ``root/<label>/``.

    Args:
        root: The target folder (created).
        move: Move instead of copy.
        min_confidence: Files below this confidence go to ``root/_uncertain/``.
    """

    def __init__(self, root: str | Path, move: bool = False, min_confidence: float = 0.0) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise OutputError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
        self.root = Path(root).resolve()
        self.move = move
        self.min_confidence = min_confidence
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {root}: {exc.strerror or exc}") from None

    def folder_for(self, label: str, confidence: float, index: int = 0) -> Path:
        name = UNCERTAIN if confidence < self.min_confidence else safe_folder_name(label, index)
        folder = (self.root / name).resolve()
        if folder.parent != self.root:  # defence in depth: safe_folder_name already forbids this
            raise OutputError(f"label {label!r} would write outside {self.root}")
        return folder

    def place(self, source: Path, label: str, confidence: float, index: int = 0) -> Path:
        """Copy or move ``source`` into its label folder; returns where it landed."""
        folder = self.folder_for(label, confidence, index)
        folder.mkdir(exist_ok=True)
        stem, suffix = source.stem, source.suffix
        if self.move:
            return _move_no_clobber(source, folder, stem, suffix)
        return _copy_no_clobber(source, folder, stem, suffix)


def _candidates(folder: Path, stem: str, suffix: str) -> Iterator[Path]:
    yield folder / (_fit(stem, suffix) + suffix)
    n = 1
    while True:
        tail = f"_{n}{suffix}"
        yield folder / (_fit(stem, tail) + tail)
        n += 1


def _copy_no_clobber(source: Path, folder: Path, stem: str, suffix: str) -> Path:
    tail = f".partial-{os.getpid()}"
    tmp = folder / ("." + _fit(stem, suffix + tail + ".") + suffix + tail)
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        return _link_into_place(tmp, folder, stem, suffix)
    finally:
        tmp.unlink(missing_ok=True)


def _link_into_place(tmp: Path, folder: Path, stem: str, suffix: str) -> Path:
    """Give ``tmp`` its final name without ever replacing an existing file (link fails if the name is taken)."""
    for target in _candidates(folder, stem, suffix):
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here (some network and FAT file systems): reserve the name exclusively instead.
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(tmp, target)
            return target
    raise AssertionError("unreachable")


def _move_no_clobber(source: Path, folder: Path, stem: str, suffix: str) -> Path:
    for target in _candidates(folder, stem, suffix):
        try:
            os.link(source, target)  # same file system: an atomic, non-clobbering rename in two steps
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            landed = _copy_no_clobber(source, folder, stem, suffix)  # copy complete and synced first
            _remove_source(source, landed)
            return landed
        _remove_source(source, target)
        return target
    raise AssertionError("unreachable")


def _remove_source(source: Path, landed: Path) -> None:
    """The last step of a move; when the source cannot be removed, the copy is taken back (one place only)."""
    try:
        source.unlink()
    except OSError as exc:
        landed.unlink(missing_ok=True)
        raise OSError(
            exc.errno, f"cannot move (the source cannot be removed: {exc.strerror or exc})"
        ) from None
