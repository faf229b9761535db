"""One definition of how a file or a camera frame becomes a model input.

Training, evaluation, int8 calibration, ``classify`` and ``webcam`` all call these functions, so a model sees
the same pixels in deployment as it saw in training. Normalisation is not done here: it lives inside the model
graph, and the input is raw pixel values (uint8 here, float32 when batched for the model).

Files are decoded with Pillow (it reads every common format, handles palettes, transparency and 16-bit data),
turned upright from their EXIF orientation, refused from the header when they declare too many pixels, then
resized by area (``resizing.shrink_area``: INTER_AREA's mean, computed exactly). Large JPEGs are decoded at a reduced DCT scale first (``Image.draft``), never
below the model's input size: several times faster, and identical on both sides because both sides call this
module. AVIF is read when this Pillow can (11.3 and later wheels); HEIC/HEIF when pillow-heif is installed.

Nothing here changes process-wide settings (Pillow's pixel limit, OpenCV's thread count, the warnings filters),
so a program that embeds edgecnn keeps its own, and decoding runs safely in many threads at once. The pixel
limit is checked from the header here; what Pillow itself warns about (a damaged EXIF block) goes to the
program's warnings filters like any library's warning. The one addition is pillow-heif's opener, registered
with Pillow the first time a HEIC/HEIF file is met.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ImageError
from edgecnn.core.resizing import INTERPOLATIONS as INTERPOLATIONS  # importable from here, as before
from edgecnn.core.resizing import center_crop, decode_size, resize

#: File name suffixes that are listed as images when walking folders. HEIC/HEIF and AVIF files are listed
#: even where they cannot be decoded, so that a phone's photos are reported (with what to install), never lost.
IMAGE_SUFFIXES = tuple(".jpg .jpeg .png .bmp .gif .webp .tif .tiff .heic .heif .avif".split())
#: Formats Pillow may decode for us (MPO is the multi-picture JPEG many phones write; AVIF and HEIF only
#: open where a plugin reads them).
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP", "TIFF", "AVIF", "HEIF"})
#: Images with more pixels than this are refused from their header, before any pixel is decoded.
MAX_PIXELS = 64_000_000
#: Files larger than this are refused before reading.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Why a HEIC/HEIF file is skipped where pillow-heif is not installed.
HEIF_MISSING = 'HEIC/HEIF image: install pillow-heif to read it (pip install "edgecnn[heif]")'
#: Why an AVIF file is skipped where this Pillow cannot read AVIF.
AVIF_MISSING = (
    "AVIF image: this Pillow cannot read AVIF; install Pillow 11.3 or later (pip install -U pillow)"
)

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"msf1"})
_HEIF_LOCK = threading.Lock()

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"<!DOCTYPE html", 0, "an HTML page"),
    (b"<html", 0, "an HTML page"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
)


def describe_bytes(head: bytes) -> str | None:
    """Name a common non-image file from its first bytes, for a clearer error message."""
    stripped = head.lstrip()
    for magic, offset, what in _SIGNATURES:
        sample = stripped if offset == 0 else head
        if sample[offset : offset + len(magic)].lower() == magic.lower():
            return what
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        return "a text file"
    return None


def iso_image_kind(head: bytes) -> str | None:
    """The kind of an ISO-BMFF image file ("AVIF" or "HEIF") from its ``ftyp`` brands; None for others."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack(">I", head[:4])
    end = min(len(head), size) if size >= 16 else 12
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


@functools.cache
def can_read_avif() -> bool:
    """Whether this Pillow reads AVIF (11.3 and later wheels do; older ones and builds without libavif not)."""
    try:
        return "avif" in features.modules and bool(features.check_module("avif"))
    except ValueError:
        return False


def can_read_heif() -> bool:
    """Whether Pillow opens HEIC/HEIF files, registering pillow-heif's opener the first time one is met.

    pillow-heif is optional and registered only on demand, so a program that never meets a HEIC file keeps
    Pillow's registry as it was.
    """
    if "HEIF" in Image.OPEN:  # already registered (by us, or by the program that embeds edgecnn)
        return True
    with _HEIF_LOCK:
        if "HEIF" not in Image.OPEN:
            try:
                import pillow_heif
            except ImportError:
                return False
            pillow_heif.register_heif_opener()
    return "HEIF" in Image.OPEN


def failure_reason(exc: BaseException) -> str:
    """Why a file cannot be used: an ``ImageError``'s own message, or any other decoder error (Pillow, OpenCV,
    a plugin) named with its type, e.g. ``cannot decode image (OverflowError: ...)``."""
    if isinstance(exc, ImageError):
        return str(exc)
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    message = " ".join(str(exc).split())
    return f"cannot decode image ({name}: {message[:160]})" if message else f"cannot decode image ({name})"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _image_errors_only(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """The one rule for a file that cannot be used: whatever the decoders raise (a fuzzed TIFF makes Pillow
    raise OverflowError) leaves as an ``ImageError`` with ``failure_reason``, so every caller that catches
    ``ImageError`` skips that file and goes on. Interrupts (not ``Exception``) pass through untouched."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(failure_reason(exc)) from exc

    return wrapper


@_image_errors_only
def load_image(source: str | os.PathLike[str] | bytes, spec: InputSpec) -> np.ndarray:
    """Decode an image file and turn it into one model input.

    Args:
        source: A path, or the file's bytes.
        spec: The model's input spec (size, channels, resize rule).

    Returns:
        uint8 array of shape (spec.height, spec.width, spec.channels), RGB or grey.

    Raises:
        ImageError: The file cannot be read or is not a supported image; the message says why. Nothing else
            is raised for a bad file, whatever the decoders do with it.
    """
    image = decode_image(source, draft_size=decode_size(spec))
    return image_to_input(image, spec)


@_image_errors_only
def decode_image(
    source: str | os.PathLike[str] | bytes, draft_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode a file to an upright uint8 RGB or grey array (alpha composited over white).

    Args:
        source: A path, or the file's bytes.
        draft_size: (width, height) the caller will resize to; lets large JPEGs decode at a reduced scale
            that is still at least this big.

    Raises:
        ImageError: The reason the file cannot be used.
    """
    stream: BinaryIO
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        if not data:
            raise ImageError("empty file (0 bytes)")
        stream = io.BytesIO(data)
    else:
        path = Path(source)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ImageError("file not found (it may have been moved or deleted)") from None
        except PermissionError:
            raise ImageError("permission denied") from None
        except OSError as exc:
            raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
        if path.is_dir():
            raise ImageError("is a directory, not an image file")
        if stat.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        if stat.st_size > MAX_FILE_BYTES:
            raise ImageError(
                f"file is {stat.st_size / 2**20:.0f} MiB; images over {MAX_FILE_BYTES // 2**20} MiB are refused"
            )
        try:
            data = path.read_bytes()
        except PermissionError:
            raise ImageError("permission denied") from None
        except OSError as exc:
            raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
        if not data:
            raise ImageError("empty file (0 bytes)")
        stream = io.BytesIO(data)
    return _decode_stream(stream, draft_size)


def _decode_stream(stream: BinaryIO, draft_size: tuple[int, int] | None) -> np.ndarray:
    head = stream.read(256)
    stream.seek(0)
    kind = iso_image_kind(head)
    if kind == "HEIF" and not can_read_heif():
        raise ImageError(HEIF_MISSING)
    if kind == "AVIF" and not can_read_avif():
        raise ImageError(AVIF_MISSING)
    try:
        img = Image.open(stream)
        fmt = img.format or "unknown"
        if fmt not in ALLOWED_FORMATS:
            raise ImageError(
                f"unsupported image format {fmt} (supported: {', '.join(sorted(ALLOWED_FORMATS))})"
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageError(f"image has no pixels ({width}x{height})")
        if width * height > MAX_PIXELS:  # from the header, before any pixel is decoded
            raise ImageError(
                f"image declares {width}x{height} pixels, over the {MAX_PIXELS // 1_000_000} MP limit "
                "(possible decompression bomb)"
            )
        if draft_size is not None and fmt in ("JPEG", "MPO") and img.mode in ("RGB", "L"):
            side = max(draft_size)  # EXIF rotation may swap the axes: keep both sides at least this big
            img.draft(img.mode, (side, side))
        img.load()
        return _to_array(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except UnidentifiedImageError:
        if kind is not None:
            raise ImageError(
                f"cannot decode image (a damaged {kind} file, or one its decoder cannot read)"
            ) from None
        what = describe_bytes(head[:64])
        raise ImageError(f"not an image file ({what})" if what else "not a recognised image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard, at whatever limit the program set (a warning counts where it made warnings errors).
        pillow = Image.MAX_IMAGE_PIXELS or MAX_PIXELS
        limit = min(MAX_PIXELS, pillow if isinstance(exc, Image.DecompressionBombWarning) else 2 * pillow)
        raise ImageError(
            f"image is over the {limit // 1_000_000} MP limit (possible decompression bomb)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        # Pillow reports truncated and corrupt data with these; the message is the useful part.
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            message = "truncated or corrupt image data"
        raise ImageError(f"cannot decode image ({message[:120]})") from None
    except MemoryError:
        raise ImageError("image too large to decode in memory") from None


@_image_errors_only
def pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as the decoder would give it: upright (EXIF), uint8 RGB or grey, alpha over white."""
    try:
        return _to_array(ImageOps.exif_transpose(img))
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the PIL image ({exc})") from None


def _to_array(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to uint8 RGB (H, W, 3) or grey (H, W, 1), compositing alpha over white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit data maps 0..65535 onto 0..255 whatever its content: a dark image stays dark.
        arr16 = np.asarray(img).astype(np.float64) / 257.0
        return np.round(np.clip(arr16, 0, 255)).astype(np.uint8)[:, :, None]
    if mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            arr = np.clip(np.nan_to_num(arr), 0, 255)
        elif arr.max(initial=0) > 255:
            arr = arr.astype(np.float64) / 257.0  # 32-bit integers have no fixed range; 16-bit data is common
        return np.round(np.clip(arr, 0, 255)).astype(np.uint8)[:, :, None]
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)[:, :, None]
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "RGBa", "RGBA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        return composite_on_white(rgba)
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite an (H, W, 4) uint8 RGBA image over white; fully opaque images pass through unchanged."""
    alpha = rgba[:, :, 3:4]
    rgb = rgba[:, :, :3]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.round(out).astype(np.uint8)


def image_to_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Bring a decoded uint8 RGB or grey image to the model's channels and size.

    Args:
        image: (H, W, 3) RGB or (H, W, 1)/(H, W) grey uint8.
        spec: The model's input spec.

    Returns:
        uint8 (spec.height, spec.width, spec.channels).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ImageError(f"expected a uint8 image with 1 or 3 channels, got {image.dtype} {image.shape}")
    if image.size == 0:
        raise ImageError(f"image has no pixels ({image.shape[1]}x{image.shape[0]})")
    if spec.channels == 1 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif spec.channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return resize(image, spec)


def frame_to_input(frame: np.ndarray, spec: InputSpec, crop: str = "none") -> np.ndarray:
    """Turn an OpenCV frame (BGR, BGRA or grey uint8) into one model input.

    The frame is converted to RGB exactly once here; the model's graph does any further colour work itself
    (VGG16's BGR flip lives in the graph).

    Args:
        frame: (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) grey uint8 frame as OpenCV delivers it.
        spec: The model's input spec.
        crop: "center" takes the largest centred region with the model's aspect ratio; "none" stretches.
    """
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ImageError("empty frame")
    if frame.ndim not in (2, 3):  # checked before cropping, which needs a height and a width
        raise ImageError(f"unsupported frame shape {frame.shape}")
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame.astype(np.float32) / 257.0).round().astype(np.uint8)
        else:
            raise ImageError(f"unsupported frame dtype {frame.dtype}")
    if crop == "center":
        frame = center_crop(frame, spec.width / spec.height)
    elif crop != "none":
        raise ImageError(f"unknown crop mode {crop!r}; choose center or none")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        rgb = frame.reshape(frame.shape[0], frame.shape[1], 1)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        if spec.channels == 3:
            # Resize first, then swap channels on the small image: the same values (both are per-channel),
            # several times cheaper on a full-size frame.
            return np.ascontiguousarray(resize(frame, spec)[:, :, ::-1])
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        rgb = composite_on_white(cv2.cvtColor(frame, cv2.COLOR_BGRA2RGBA))
    else:
        raise ImageError(f"unsupported frame shape {frame.shape}")
    return image_to_input(rgb, spec)


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """Stack uint8 model inputs into the float32 NHWC batch the model takes (raw 0-255 values)."""
    return np.stack(images).astype(np.float32)
