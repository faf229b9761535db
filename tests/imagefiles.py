"""Writers for image files of every awkward kind, used by the imaging and bad-input tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient_rgb(h: int = 40, w: int = 60) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack(
        [xs * 255 // max(w - 1, 1), ys * 255 // max(h - 1, 1), (xs + ys) * 255 // (h + w)], axis=2
    ).astype(np.uint8)


def save(array: np.ndarray, path: Path, **params) -> Path:
    Image.fromarray(array).save(path, **params)
    return path


def png_with_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


def jpeg_with_orientation(array: np.ndarray, path: Path, orientation: int) -> Path:
    img = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path
