"""Report thumbnails: small JPEGs packed 25 to an atlas file, made on a worker thread as batches finish.

A thumbnail is made from the model's own input when that is large enough (no second decode of the file): a
model input of at most 128 px is stored as it is and the page scales it back to the photo's aspect ratio (a
96 px input resized to 128 px would hold no more detail); a larger one is resized; a small one (a 32 px
model) is not enough, and the file is decoded again, at a reduced JPEG scale, by the same decoder as
inference. Thumbnails are pasted into 5 x 5 atlases (640 x 640 JPEGs), so that a 20,000-image report writes
800 files, not 20,000 (creating a file costs more than encoding a thumbnail); the page shows each one through
a window onto its atlas. An index (key -> placement) lets ``--resume`` reuse the thumbnails of an earlier run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.core.errors import EdgecnnError

#: The longer side of a thumbnail as shown, in pixels (an atlas cell is this square).
THUMB_SIDE = 128
#: Cells per atlas side: 5 x 5 thumbnails in one 640 x 640 JPEG.
ATLAS_SIDE = 5
ATLAS_PIXELS = THUMB_SIDE * ATLAS_SIDE
#: A model input at least this big (both sides) becomes the thumbnail; a smaller one is too blurry.
REUSE_SIDE = 96
#: JPEGs are decoded at the largest reduced scale that keeps both sides at least this big.
DRAFT_SIDE = 80
QUALITY = 75
#: Batches waiting for the worker at most: memory stays bounded however fast rows come.
MAX_PENDING = 16
INDEX = "index.json"
ATLAS_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9]{4,}\.jpg$")
_ORIENTATION = 0x0112  # the EXIF tag; 5-8 turn the image by a quarter

#: Where a thumbnail is and how it is shown: (atlas file name, x, y, width, height, shown width, shown height).
Placement = tuple[str, int, int, int, int, int, int]
Job = tuple[str, "str | os.PathLike[str]", "np.ndarray | None"]


def upright_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) of the photo as shown (EXIF rotation applied), from its header; None if unreadable."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = "exif" in img.info and img.getexif().get(_ORIENTATION) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
    except (OSError, ValueError, SyntaxError, EdgecnnError):
        return None


def make_thumbnail(
    path: str | os.PathLike[str], image: np.ndarray | None = None, side: int = THUMB_SIDE
) -> tuple[Image.Image, tuple[int, int]]:
    """A thumbnail of one photo, and the size to show it at (at most ``side`` pixels on its longer side).

    Args:
        path: The photo.
        image: The model's input for it (uint8, H x W x C), used instead of decoding the file when both its
            sides are at least ``REUSE_SIDE``: kept as it is up to ``side`` pixels (the page scales it),
            resized when larger.

    Returns:
        (RGB or grey thumbnail, (width, height) to show it at, with the photo's aspect ratio).

    Raises:
        ImageError: The file cannot be decoded (and no usable model input was given).
    """
    reuse = image is not None and image.ndim == 3 and min(image.shape[:2]) >= REUSE_SIDE
    if image is not None and reuse:
        pic = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        width, height = upright_size(path) or pic.size
    else:
        from edgecnn.core.imaging import decode_image

        pixels = decode_image(path, draft_size=(DRAFT_SIDE, DRAFT_SIDE))
        pic = Image.fromarray(pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
        width, height = pic.size
    scale = min(1.0, side / max(width, height))
    shown = (max(1, round(width * scale)), max(1, round(height * scale)))
    if reuse and max(pic.size) <= side:
        return pic, shown  # the model input, stretched as the model saw it: the page restores the aspect
    return (pic.resize(shown, Image.Resampling.BILINEAR) if shown != pic.size else pic), shown


def read_index(folder: Path) -> dict[str, Placement]:
    """The placements an earlier report left in ``folder`` whose atlas files are still there."""
    try:
        raw = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        found: dict[str, Placement] = {
            str(k): (str(v[0]), *(int(n) for n in v[1:7]))  # type: ignore[misc]
            for k, v in raw.items()
            if len(v) == 7
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    # Only the atlas names this module writes: an entry such as "../secret.txt" must not reach the page.
    found = {k: p for k, p in found.items() if ATLAS_PATTERN.match(p[0])}
    present = {name for name in {p[0] for p in found.values()} if (folder / name).is_file()}
    return {k: p for k, p in found.items() if p[0] in present}


def clear_thumbnails(folder: Path, keep: str | None = None) -> None:
    """Remove the atlases and index an earlier report left in ``folder`` (only files named like ours).

    Args:
        keep: The token of a ``Thumbnailer`` whose atlases stay (the run's own).
    """
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        mine = keep is not None and entry.name.startswith(keep + "-")
        if ((ATLAS_PATTERN.match(entry.name) and not mine) or entry.name == INDEX) and entry.is_file():
            entry.unlink(missing_ok=True)


class Thumbnailer:
    """Makes thumbnails on one worker thread and packs them into atlases in ``folder``.

    ``add_batch`` returns at once; after ``close`` (which waits), ``placed`` maps each key (the path as the
    page shows it) to its placement. Nothing is written (the folder is not even created) before the first
    atlas is full or ``close``: a run refused before it starts leaves the folder as it was.

    Args:
        folder: Where the atlases go (created with the first one).
        placed: Placements of an earlier run to keep (``read_index``).
    """

    def __init__(self, folder: Path, placed: dict[str, Placement] | None = None) -> None:
        self.folder = Path(folder)
        self.placed: dict[str, Placement] = dict(placed or {})
        self.written = 0
        self.failed = 0
        self.error: str | None = None
        self.token = secrets.token_hex(4)  # this run's atlases: <token>-NNNN.jpg
        self._atlases = 0
        self._canvas: Image.Image | None = None
        self._cells: list[tuple[str, int, int, int, int, int, int]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecnn-thumb")
        self._pending: deque[Future[None]] = deque()
        self._closed = False

    def has(self, key: str) -> bool:
        return key in self.placed

    def add(self, key: str, path: str | os.PathLike[str], image: np.ndarray | None = None) -> None:
        """Queue the thumbnail of ``path`` under ``key`` (made from ``image`` when it is big enough)."""
        self.add_batch([(key, path, image)])

    def add_batch(self, jobs: Sequence[Job]) -> None:
        """Queue the thumbnails of one batch: (key, path, model input or None) each."""
        while len(self._pending) >= MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._make, jobs))

    def _make(self, jobs: Sequence[Job]) -> None:
        for key, path, image in jobs:
            try:
                thumb, (shown_w, shown_h) = make_thumbnail(path, image)
            except (OSError, ValueError, EdgecnnError):
                self.failed += 1  # the page shows a placeholder: a thumbnail is never worth failing a run for
                continue
            if self._canvas is None:
                self._canvas = Image.new("RGB", (ATLAS_PIXELS, ATLAS_PIXELS))
            cell = len(self._cells)
            x, y = (cell % ATLAS_SIDE) * THUMB_SIDE, (cell // ATLAS_SIDE) * THUMB_SIDE
            self._canvas.paste(thumb.convert("RGB") if thumb.mode != "RGB" else thumb, (x, y))
            self._cells.append((key, x, y, thumb.width, thumb.height, shown_w, shown_h))
            if len(self._cells) == ATLAS_SIDE * ATLAS_SIDE:
                self._flush()

    def _flush(self) -> None:
        if self._canvas is None or not self._cells:
            return
        name = f"{self.token}-{self._atlases:04d}.jpg"
        tmp = self.folder / f".{name}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._canvas.save(tmp, "JPEG", quality=QUALITY)  # always 640 x 640: the page knows the size
            os.replace(tmp, self.folder / name)
            for key, *where in self._cells:
                self.placed[key] = (name, *where)  # type: ignore[assignment]
            self.written += len(self._cells)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.failed += len(self._cells)
            self.error = f"cannot write thumbnails to {self.folder}: {exc.strerror or exc}"
        self._atlases += 1
        self._cells = []
        self._canvas = None

    def close(self) -> None:
        """Wait for every queued thumbnail and write the last atlas; ``placed`` is complete afterwards."""
        if self._closed:
            return
        self._closed = True
        while self._pending:
            self._pending.popleft().result()
        self._pool.submit(self._flush).result()
        self._pool.shutdown(wait=True)

    def save_index(self, keys: set[str] | None = None) -> None:
        """Write the index (key -> placement) beside the atlases, for a later ``--resume``."""
        from edgecnn.core.atomic import write_atomic

        index = {k: list(p) for k, p in self.placed.items() if keys is None or k in keys}
        write_atomic(self.folder / INDEX, json.dumps(index))

    def __enter__(self) -> Thumbnailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
