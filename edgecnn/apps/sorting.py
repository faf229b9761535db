"""``classify --sort-into``: copy or move files into one folder per predicted label, never overwriting.

Label names come from the model file, so they are made safe before they become folder names (pathvalidate:
no path separators or reserved names, at most 255 bytes; no ``..``, hidden or empty names); the final path is
checked to be inside the target folder. A name clash gets a numeric suffix; a move removes the source only
after its copy is complete on disk, and a move that cannot remove its source is undone. A failed copy leaves
no partial file behind.
"""

from __future__ import annotations

import errno
import filecmp
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
        root: The target folder (created with the first file placed; checked now).
        move: Move instead of copy.
        min_confidence: Files below this confidence go to ``root/_uncertain/``.
    """

    def __init__(self, root: str | Path, move: bool = False, min_confidence: float = 0.0) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise OutputError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
        self.root = Path(root).resolve()
        self.move = move
        self.min_confidence = min_confidence
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"--sort-into {root} is a file; give a folder")
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create or write {root}: permission denied")

    def folder_for(self, label: str, confidence: float, index: int = 0) -> Path:
        name = UNCERTAIN if confidence < self.min_confidence else safe_folder_name(label, index)
        folder = (self.root / name).resolve()
        if folder.parent != self.root:  # defence in depth: safe_folder_name already forbids this
            raise OutputError(f"label {label!r} would write outside {self.root}")
        return folder

    def plan(
        self, source: Path, label: str, confidence: float, index: int = 0, taken: set[Path] | None = None
    ) -> Path:
        """Where ``source`` will go: the first free name in its label folder (not in ``taken`` either, the
        names already planned for the same batch; updated). Nothing is written."""
        folder = self.folder_for(label, confidence, index)
        taken = taken if taken is not None else set()
        for target in _candidates(folder, source.stem, source.suffix):
            if target not in taken and not os.path.lexists(target):
                taken.add(target)
                return target
        raise AssertionError("unreachable")

    def place_at(self, source: Path, target: Path) -> Path:
        """Copy or move ``source`` to ``target`` (planned), or the next free name if it was taken meanwhile;
        returns where it landed."""
        return place_file(source, target, self.move)

    def place(self, source: Path, label: str, confidence: float, index: int = 0) -> Path:
        """Copy or move ``source`` into its label folder; returns where it landed."""
        return self.place_at(source, self.plan(source, label, confidence, index))


def place_file(source: Path, target: Path, move: bool) -> Path:
    """Copy or move ``source`` to ``target``, or to the next free name beside it; never replaces a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        return _move_no_clobber(source, target)
    return _copy_no_clobber(source, target)


def complete_placement(source: Path, target: Path, move: bool) -> Path:
    """Finish a move or copy of ``source`` to ``target`` that was recorded and then interrupted; returns
    where the file is in the sorted tree (``target``, or the next free name if another file holds it).

    Raises:
        OSError: Neither the source nor its copy is there, or the copy or move fails.
    """
    source_there, target_there = os.path.lexists(source), os.path.lexists(target)
    if target_there and source_there and _is_reservation(target, source):
        target.unlink()  # a name reserved (no hard links here) and never filled: place the file again
        target_there = False
    if target_there and not source_there:
        return target  # done before the interruption
    if target_there and not move:
        return target  # a copy gets its name only when complete (a link of a synced temporary file)
    if target_there and (os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False)):
        _remove_source(source, target)  # the move's last step
        return target
    if not source_there:
        raise OSError(errno.ENOENT, "the file is gone (neither at its path nor in the sorted folder)")
    return place_file(source, target, move)


def _is_reservation(target: Path, source: Path) -> bool:
    """An empty ``target`` for a non-empty ``source``: the placeholder ``_link_into_place`` creates where hard
    links are not supported, left by a run killed before the copy was renamed onto it."""
    try:
        return os.lstat(target).st_size == 0 and os.stat(source).st_size > 0
    except OSError:
        return False


def _stem_suffix(target: Path) -> tuple[str, str]:
    return target.stem, target.suffix


def _candidates(folder: Path, stem: str, suffix: str) -> Iterator[Path]:
    yield folder / (_fit(stem, suffix) + suffix)
    n = 1
    while True:
        tail = f"_{n}{suffix}"
        yield folder / (_fit(stem, tail) + tail)
        n += 1


def _targets(target: Path) -> Iterator[Path]:
    """``target``, then the names after it (``stem_1``, ``stem_2``...)."""
    yield target
    stem, suffix = _stem_suffix(target)
    for candidate in _candidates(target.parent, stem, suffix):
        if candidate != target:
            yield candidate


def partial_path(target: Path, pid: int) -> Path:
    """Where process ``pid`` writes its copy to ``target`` before the copy gets its name (hidden, beside it)."""
    tail = f".partial-{pid}"
    stem, suffix = _stem_suffix(target)
    return target.parent / ("." + _fit(stem, suffix + tail + ".") + suffix + tail)


def _copy_no_clobber(source: Path, target: Path) -> Path:
    tmp = partial_path(target, os.getpid())
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        return _link_into_place(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _link_into_place(tmp: Path, first: Path) -> Path:
    """Give ``tmp`` its final name without ever replacing an existing file (link fails if the name is taken)."""
    for target in _targets(first):
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


def _move_no_clobber(source: Path, first: Path) -> Path:
    for target in _targets(first):
        try:
            os.link(source, target)  # same file system: an atomic, non-clobbering rename in two steps
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            landed = _copy_no_clobber(source, first)  # copy complete and synced first; its partial is named
            # after the planned target (the journal's), and it takes the next free name as the link did
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
