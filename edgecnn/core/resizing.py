"""Fitting a decoded image to the model's input size: stretch, crop or letterbox, with the contract's
interpolation. ``core.imaging`` calls these for files and frames alike, so both sides resize the same way."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ImageError

#: The contract's ``input.resize`` names and the OpenCV interpolation each one is; "pil-bilinear" is Pillow's
#: BILINEAR instead (it widens its filter when shrinking, as torchvision's Resize on PIL images does).
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
    elif image.shape[:2] != (height, width):
        channels = image.shape[2]
        image = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[method])
        if image.ndim == 2:
            image = image[:, :, None]
        elif image.shape[2] != channels:  # pragma: no cover - OpenCV keeps channels for 1..4
            raise ImageError("resize changed the number of channels")
    return np.ascontiguousarray(image)


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
