"""Finding image files: the one folder walker, shared by training, evaluation, calibration and inference."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from edgecnn.core.imaging import IMAGE_SUFFIXES

T = TypeVar("T")


def iter_image_files(
    paths: Iterable[str | Path],
    recursive: bool = False,
    skipped: list[tuple[Path, str]] | None = None,
    exclude: str | Path | None = None,
) -> Iterator[Path]:
    """Image files named by ``paths`` (files as given; folders walked lazily in sorted order).

    Folders are read one at a time, so a folder of 100,000 images is never listed into memory as a whole
    beyond its own directory entries. Directory links are followed at most once (loops are cut), and
    problems (missing paths, unreadable folders) are appended to ``skipped`` instead of raising.

    Args:
        paths: Files and folders.
        recursive: Walk sub-folders too.
        skipped: Receives (path, reason) for what could not be listed.
        exclude: A folder not to walk into (e.g. the --sort-into target inside the input folder).
    """
    skipped = skipped if skipped is not None else []
    seen_dirs: set[tuple[int, int]] = set()
    if exclude is not None:
        try:
            st = Path(exclude).stat()
            seen_dirs.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.exists() or path.is_symlink()
        except OSError as exc:
            skipped.append((path, f"cannot read ({exc.strerror or exc})"))
            continue
        if not exists:
            skipped.append((path, "not found"))
        elif is_dir:
            yield from walk_folder(path, recursive, seen_dirs, skipped)
        else:
            yield path  # a file named explicitly is tried whatever its suffix


def walk_folder(
    folder: Path,
    recursive: bool,
    seen: set[tuple[int, int]],
    skipped: list[tuple[Path, str]],
    other_files: bool = False,
) -> Iterator[Path]:
    """The image files of one folder, lazily, in name order, then those of its sub-folders (``recursive``).

    The one walking rule of edgecnn, for training, evaluation, calibration and inference alike: hidden
    entries are ignored; directory links are followed, but every folder is walked once (``seen`` holds the
    (device, inode) of folders walked), so a link loop ends; unreadable folders and broken links are
    appended to ``skipped`` with their reason instead of raising.

    Args:
        folder: The folder.
        recursive: Walk sub-folders too.
        seen: Folders already walked; updated.
        skipped: Receives (path, reason).
        other_files: Report files without an image suffix in ``skipped`` (training wants to say what it
            left out; inference ignores other files).
    """
    try:
        st = folder.stat()
    except OSError as exc:
        skipped.append((folder, f"cannot read folder ({exc.strerror or exc})"))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return  # a link back to a folder already walked: following it again would loop
    seen.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        skipped.append((folder, f"cannot read folder ({exc.strerror or exc})"))
        return
    subdirs = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        is_image_name = Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
        if is_dir:
            if recursive:
                subdirs.append(Path(entry.path))
            elif is_image_name:
                skipped.append((Path(entry.path), "is a directory, not an image file"))
        elif is_image_name:
            yield Path(entry.path)
        elif entry.is_symlink() and not os.path.exists(entry.path):
            skipped.append((Path(entry.path), "broken link"))
        elif other_files:
            skipped.append(
                (Path(entry.path), f"not an image file name (supported: {', '.join(IMAGE_SUFFIXES)})")
            )
    for sub in subdirs:
        yield from walk_folder(sub, recursive, seen, skipped, other_files)


def unique_files(paths: Iterable[Path], seen: set[str] | None = None) -> Iterator[Path]:
    """``paths`` with each file once: the first spelling of every resolved path (``os.path.realpath``).

    The one rule for "the same file": ``photos photos/a.jpg photos/../photos/a.jpg`` names ``a.jpg`` once,
    and a link names the file it points to. ``--resume`` matches recorded rows the same way.

    Args:
        paths: Files, as a walker yields them.
        seen: Resolved paths already given (updated), to share the rule across several listings.
    """
    seen = seen if seen is not None else set()
    for path in paths:
        key = resolved(path)
        if key not in seen:
            seen.add(key)
            yield path


def resolved(path: str | Path) -> str:
    """The key that identifies a file: its absolute path with links and ``..`` resolved."""
    return os.path.realpath(path)
