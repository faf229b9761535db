"""Fitting a decoded image to the model's input size: stretch, crop or letterbox, with the contract's
interpolation. ``core.imaging`` calls these for files and frames alike, so both sides resize the same way."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from PIL import Image

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ImageError

#: The contract's ``input.resize`` names and the OpenCV interpolation each one is; "pil-bilinear" is Pillow's
#: BILINEAR instead (it widens its filter when shrinking, as torchvision's Resize on PIL images does). "area"
#: when shrinking is ``shrink_area``: INTER_AREA's rule computed exactly.
INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def resize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Bring (H, W, C) uint8 to the spec's size with its fit (stretch, crop, letterbox) and interpolation.

    ``crop`` follows torchvision's ``Resize(round(side / crop_fraction))`` + ``CenterCrop(side)``: the image is
    scaled so that it covers the input size divided by ``crop_fraction`` (the side that decides the scale gets
    exactly that length, the other is truncated as torchvision does), then the centre is cut out.
    ``letterbox`` scales the image to fit inside the input size and centres it on ``pad_value``.
    """
    if spec.fit == "crop":
        return _scale_and_crop(image, spec)
    if spec.fit == "letterbox":
        return _letterbox(image, spec)
    return _resized(image, spec.height, spec.width, spec.resize)


def decode_size(spec: InputSpec) -> tuple[int, int] | None:
    """(width, height) a file must be decoded at, at least, before ``resize`` (for JPEG draft decoding); None
    for "pil-bilinear", which reproduces a pipeline that decodes the whole file (torchvision's)."""
    if spec.resize == "pil-bilinear":
        return None
    if spec.fit == "crop" and spec.crop_fraction:
        return math.ceil(spec.width / spec.crop_fraction), math.ceil(spec.height / spec.crop_fraction)
    return spec.width, spec.height


def _resized(image: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    if image.shape[:2] != (height, width) and method == "pil-bilinear":
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        image = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR)).reshape(height, width, -1)
    elif image.shape[:2] != (height, width) and method == "area" and _shrinks(image, height, width):
        image = shrink_area(image, height, width)
    elif image.shape[:2] != (height, width):
        channels = image.shape[2]
        image = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[method])
        if image.ndim == 2:
            image = image[:, :, None]
        elif image.shape[2] != channels:  # pragma: no cover - OpenCV keeps channels for 1..4
            raise ImageError("resize changed the number of channels")
    return np.ascontiguousarray(image)


def _shrinks(image: np.ndarray, height: int, width: int) -> bool:
    return image.shape[0] >= height and image.shape[1] >= width


#: Source values gathered at once to recompute means exactly (8 bytes each).
_WINDOW_BUDGET = 1 << 22


def shrink_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The area resize when shrinking, exactly: each output pixel is the mean of the source pixels it covers,
    weighted by how much of each it covers, rounded half up. The same bytes on every CPU.

    OpenCV's INTER_AREA computes this mean in 32-bit floats whose rounding depends on the CPU (ARM compilers
    fuse multiply-adds, x86 vector code orders sums differently), so a mean that ends in exactly a half
    (common in flat regions) lands on either side: a model's answers differed by up to 1.8e-4 between an x86
    PC and an ARM board. Here OpenCV computes the mean on float32 pixels and keeps it unrounded; only the
    means within its float error of a half (``near_halves``: about 1 in 700 on photos) are recomputed from
    their source pixels in integers.

    Args:
        image: (H, W, C) uint8 with H >= height and W >= width.
        height: Output height.
        width: Output width.

    Returns:
        (height, width, C) uint8.
    """
    h, w, channels = image.shape
    wide: np.ndarray = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    wide = wide.reshape(height, width, channels)
    if h % height == 0 and w % width == 0 and 256 % ((h // height) * (w // width)) == 0:
        # Whole blocks of 2, 4, 8... pixels: OpenCV's float mean is exact (a sum times a power of two), so
        # it is rounded half up as it is (a quarter of all 2x2 means end in a half: no recomputing them).
        return np.floor(wide + 0.5).astype(np.uint8)
    rows, row_weights = _overlaps(h, height)
    cols, col_weights = _overlaps(w, width)
    out = cv2.convertScaleAbs(wide).reshape(height, width, channels)
    near = near_halves(wide, rows.shape[1] + cols.shape[1])
    sliver_rows, sliver_cols = _slivers(h, height), _slivers(w, width)
    if sliver_rows.size or sliver_cols.size:
        recompute = np.zeros(wide.shape, bool)
        recompute.reshape(-1)[near] = True
        recompute[sliver_rows] = True
        recompute[:, sliver_cols] = True
        near = np.flatnonzero(recompute)
    pixels = image.reshape(-1)
    area = h * w  # the weights of one output pixel sum to h * w
    step = max(1, _WINDOW_BUDGET // (rows.shape[1] * cols.shape[1]))  # every pixel a tie still stays small
    for start in range(0, near.size, step):
        chunk = near[start : start + step]
        ys, xs, channel = np.unravel_index(chunk, (height, width, channels))
        window = pixels[
            rows[ys][:, :, None] * (w * channels) + (cols[xs] * channels + channel[:, None])[:, None]
        ]
        total = np.einsum("nij,ni,nj->n", window, row_weights[ys], col_weights[xs]).astype(np.int64)
        out.reshape(-1)[chunk] = (2 * total + area) // (2 * area)
    return out


def near_halves(wide: np.ndarray, terms: int) -> np.ndarray:
    """Flat indexes of the means (as OpenCV computed them in float32) that may lie on either side of a half.

    OpenCV's float error on a mean of ``terms`` weighted terms is under ``terms`` float32 roundings of values
    up to 255 (about 1.5e-5 each); the band taken is four times that, plus two roundings.
    """
    band = (terms + 2) * 2.0**-22 * 255  # past 0.5 (about 8,000 terms), every mean
    return np.flatnonzero(np.abs(wide - np.floor(wide) - 0.5) <= band)


def _slivers(size: int, new_size: int) -> np.ndarray:
    """The output indexes (along one axis) whose means OpenCV computes without a sliver of a source pixel.

    OpenCV's INTER_AREA leaves out any part of a source pixel thinner than 1/1000 of it: both outputs beside
    such a boundary are wrong by more than a rounding. A boundary at j * size / new_size comes that close to
    a pixel edge (without lying on it) only when new_size > 1000; boundaries within 2/1000 are taken, a margin
    for OpenCV's own floating-point boundaries.
    """
    if new_size <= 500:
        return np.empty(0, np.int64)
    boundary = np.arange(1, new_size, dtype=np.int64)
    offset = boundary * size % new_size  # the boundary's distance past a pixel edge, in 1/new_size pixels
    thin = (offset != 0) & ((offset * 500 < new_size) | ((new_size - offset) * 500 < new_size))
    return np.unique(np.concatenate([boundary[thin] - 1, boundary[thin]]))


@functools.lru_cache(maxsize=64)
def _overlaps(size: int, new_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index along one axis: the source indexes it covers (padded to one width) and how much
    of each, in units of 1/new_size of a source pixel: whole numbers (as float64, exact), each row summing to
    ``size``. Cached (a camera or a folder of photos repeats its sizes), so read-only."""
    edges = np.arange(new_size + 1, dtype=np.int64) * size  # output j covers [edges[j], edges[j + 1])
    first = edges[:-1] // new_size
    taps = int(((edges[1:] - 1) // new_size - first).max()) + 1
    index = first[:, None] + np.arange(taps)[None, :]
    low = np.maximum(index * new_size, edges[:-1, None])
    overlap = np.maximum(np.minimum((index + 1) * new_size, edges[1:, None]) - low, 0).astype(np.float64)
    index = np.minimum(index, size - 1)
    index.flags.writeable = overlap.flags.writeable = False
    return index, overlap


def _scale_and_crop(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    aspect = spec.width / spec.height
    h, w = image.shape[:2]
    # A 1x60000 strip would be scaled to millions of pixels only to keep its centre: beyond 4 times the
    # model's aspect ratio, the centre is cut out first (photos are far from this, so they are untouched).
    if w / h > 4 * aspect:
        image = center_crop(image, 4 * aspect)
    elif h / w > 4 / aspect:
        image = center_crop(image, aspect / 4)
    h, w = image.shape[:2]
    fraction = spec.crop_fraction or 1.0
    if spec.height / h >= spec.width / w:  # the height decides the scale
        new_h = round(spec.height / fraction)
        new_w = int(w * new_h / h)
    else:
        new_w = round(spec.width / fraction)
        new_h = int(h * new_w / w)
    scaled = _resized(image, max(new_h, spec.height), max(new_w, spec.width), spec.resize)
    top = int(round((scaled.shape[0] - spec.height) / 2.0))
    left = int(round((scaled.shape[1] - spec.width) / 2.0))
    return np.ascontiguousarray(scaled[top : top + spec.height, left : left + spec.width])


def _letterbox(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(spec.height / h, spec.width / w)
    new_h = min(spec.height, max(1, round(h * scale)))
    new_w = min(spec.width, max(1, round(w * scale)))
    scaled = _resized(image, new_h, new_w, spec.resize)
    if (new_h, new_w) == (spec.height, spec.width):
        return scaled
    out = np.full((spec.height, spec.width, image.shape[2]), spec.pad_value or 0, np.uint8)
    top, left = (spec.height - new_h) // 2, (spec.width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = scaled
    return out


def center_crop(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred region of ``image`` whose width/height ratio is ``aspect``."""
    h, w = image.shape[:2]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        x0 = (w - new_w) // 2
        return image[:, x0 : x0 + new_w]
    new_h = max(1, round(w / aspect))
    y0 = (h - new_h) // 2
    return image[y0 : y0 + new_h]
