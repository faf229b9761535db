"""What the exact area resize costs against OpenCV's INTER_AREA, on real photos, in one run.

``resizing.shrink_area`` gives the same bytes on every CPU (docs/preprocessing.md); OpenCV's INTER_AREA is the
baseline it replaces. On the cats_dogs validation photos, one thread:
- the resize alone: each decoded photo shrunk to the model sizes, milliseconds per photo, both ways;
- a file to model input (``load_image``: decode with JPEG draft, orientation, resize), both ways;
- how many values were recomputed in integers, and how many differ from OpenCV's (by one level).

    python benchmarks/resize_area.py [--data ../shared/datasets/cats_dogs/val] [--limit 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from common import SHARED, write_result

from edgecnn.core import resizing
from edgecnn.core.contract import InputSpec
from edgecnn.core.imaging import decode_image, load_image

SIZES = (112, 224)


def opencv_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The baseline: OpenCV's INTER_AREA on the 8-bit image, as edgecnn resized before."""
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).reshape(height, width, -1)


def per_photo_ms(fn, items, repeat: int = 3) -> float:
    """Best of ``repeat`` passes over ``items``, milliseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1000


def measure(side: int, photos: list[np.ndarray], files: list[Path]) -> dict[str, float]:
    """Both resizes at one model size: alone on decoded photos, and inside ``load_image``."""
    spec = InputSpec(height=side, width=side)
    shrinkable = [p for p in photos if p.shape[0] >= side and p.shape[1] >= side]
    exact_ms = per_photo_ms(lambda p: resizing.shrink_area(p, side, side), shrinkable)
    opencv_ms = per_photo_ms(lambda p: opencv_area(p, side, side), shrinkable)
    recomputed = differs = values = 0
    for p in shrinkable:
        wide = cv2.resize(p.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
        terms = (
            resizing._overlaps(p.shape[0], side)[0].shape[1]
            + resizing._overlaps(p.shape[1], side)[0].shape[1]
        )
        recomputed += resizing.near_halves(wide, terms).size
        differs += int((resizing.shrink_area(p, side, side) != opencv_area(p, side, side)).sum())
        values += wide.size
    exact_load = per_photo_ms(lambda f: load_image(f, spec), files, repeat=2)
    real = resizing.shrink_area
    resizing.shrink_area = opencv_area  # the baseline inside the same load path
    try:
        opencv_load = per_photo_ms(lambda f: load_image(f, spec), files, repeat=2)
    finally:
        resizing.shrink_area = real
    row = {
        "side": side,
        "photos_shrunk": len(shrinkable),
        "resize_exact_ms": round(exact_ms, 4),
        "resize_opencv_ms": round(opencv_ms, 4),
        "resize_exact_over_opencv": round(exact_ms / opencv_ms, 2),
        "load_exact_ms": round(exact_load, 3),
        "load_opencv_ms": round(opencv_load, 3),
        "load_exact_over_opencv": round(exact_load / opencv_load, 3),
        "recomputed_fraction": round(recomputed / values, 4),
        "differs_from_opencv_fraction": round(differs / values, 5),
    }
    print(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cats_dogs" / "val")
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[
        : args.limit
    ]
    photos = [decode_image(p) for p in files]  # whole photos, RGB
    rows = [measure(side, photos, files) for side in SIZES]
    write_result(
        "resize_area",
        {
            "data": str(args.data),
            "photos": len(files),
            "mean_photo_pixels": int(np.mean([p.shape[0] * p.shape[1] for p in photos])),
            "sizes": rows,
        },
    )


if __name__ == "__main__":
    main()
