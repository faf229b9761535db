"""An offline image dataset generator: coloured shapes on textured, noisy backgrounds.

Tests and the demo use it instead of downloading data. Each class is a shape; colour, position, scale,
rotation, background texture, noise and lighting all vary, so a model has to learn the shape and not a
shortcut such as a colour or a corner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgecnn.core.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "star", "cross")
DEFAULT_CLASSES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``write_dataset`` wrote."""

    root: Path
    classes: tuple[str, ...]
    counts: dict[str, int]  # split name -> files written

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def render_image(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one RGB uint8 image of ``shape`` at ``size`` x ``size`` pixels."""
    if shape not in SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    canvas = _background(size, rng)
    scale = 4  # draw large, then downsample: anti-aliased edges at any size
    big = size * scale
    mask = np.zeros((big, big), np.uint8)
    radius = rng.uniform(0.18, 0.34) * big
    margin = radius * 1.05
    cx = rng.uniform(margin, big - margin)
    cy = rng.uniform(margin, big - margin)
    angle = rng.uniform(0, 2 * math.pi)
    _draw_shape(mask, shape, cx, cy, radius, angle)
    mask_small = (
        cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)[:, :, None] / 255
    )
    colour = _contrasting_colour(canvas, mask_small, rng)
    shading = _gradient(size, rng, strength=0.35)[:, :, None]
    shape_layer = np.clip(colour[None, None, :] * (0.8 + 0.4 * shading), 0, 255)
    image = canvas * (1 - mask_small) + shape_layer * mask_small
    # Lighting: global gain and offset, then sensor noise.
    gain = rng.uniform(0.6, 1.3)
    offset = rng.uniform(-30, 30)
    image = image * gain + offset
    image = image + rng.normal(0, rng.uniform(2, 12), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_dataset(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    per_class: int | dict[str, int] = 60,
    size: int = 64,
    seed: int = 0,
    fmt: str = "jpg",
) -> SyntheticSummary:
    """Write a folder-per-class dataset: ``root/<split>/<class>/<class>_<n>.<fmt>``.

    Args:
        root: Output folder (created).
        classes: Shape names, used as class folder names.
        per_class: Images per class; an int writes one flat class-folder layout (``root/<class>/``), a dict
            ``{"train": 200, "val": 50, "test": 50}`` writes one sub-folder per split.
        size: Image side in pixels.
        seed: Random seed; the same arguments give the same files.
        fmt: "jpg" or "png".

    Returns:
        What was written.
    """
    if fmt not in ("jpg", "png"):
        raise ConfigError(f"unknown image format {fmt!r}; choose jpg or png")
    if len(classes) < 2:
        raise ConfigError("a dataset needs at least two classes")
    if size < 8:
        raise ConfigError(f"image size {size} is too small; use at least 8 pixels")
    root = Path(root)
    splits = per_class if isinstance(per_class, dict) else {"": per_class}
    counts: dict[str, int] = {}
    for split_index, (split, count) in enumerate(splits.items()):
        written = 0
        for class_index, shape in enumerate(classes):
            folder = root / split / shape if split else root / shape
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, split_index, class_index])
            for n in range(count):
                rgb = render_image(shape, size, rng)
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                path = folder / f"{shape}_{n:05d}.{fmt}"
                params = [cv2.IMWRITE_JPEG_QUALITY, 92] if fmt == "jpg" else []
                if not cv2.imwrite(str(path), bgr, params):
                    raise ConfigError(f"cannot write {path}")
                written += 1
        counts[split or "all"] = written
    return SyntheticSummary(root=root, classes=tuple(classes), counts=counts)


def write_video(
    path: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    seconds_per_class: float = 2.0,
    fps: int = 15,
    width: int = 640,
    height: int = 480,
    seed: int = 0,
) -> int:
    """Write a sample video that shows each shape in turn, drifting and rotating, on a moving background.

    Returns:
        The number of frames written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise ConfigError(f"OpenCV cannot write the video {path}")
    rng = np.random.default_rng(seed)
    frames = 0
    side = min(width, height)
    try:
        for shape in classes:
            base = _background(side, rng)
            colour = _random_colour(rng)
            n = max(1, round(seconds_per_class * fps))
            for i in range(n):
                t = i / n
                big = side * 2
                mask = np.zeros((big, big), np.uint8)
                radius = big * (0.24 + 0.05 * math.sin(2 * math.pi * t))
                cx = big * (0.5 + 0.12 * math.cos(2 * math.pi * t))
                cy = big * (0.5 + 0.08 * math.sin(4 * math.pi * t))
                _draw_shape(mask, shape, cx, cy, radius, 2 * math.pi * t * 0.5)
                m = (
                    cv2.resize(mask, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)[
                        :, :, None
                    ]
                    / 255
                )
                shift = np.roll(base, int(t * side / 4), axis=1)
                img = shift * (1 - m) + colour[None, None, :] * m
                img = img + rng.normal(0, 4, img.shape)
                square = np.clip(img, 0, 255).astype(np.uint8)
                frame = np.zeros((height, width, 3), np.uint8)
                frame[:] = (40, 40, 40)
                x0 = (width - side) // 2
                y0 = (height - side) // 2
                frame[y0 : y0 + side, x0 : x0 + side] = cv2.cvtColor(square, cv2.COLOR_RGB2BGR)
                writer.write(frame)
                frames += 1
    finally:
        writer.release()
    return frames


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(40, 215, size=3)
    grad = _gradient(size, rng, strength=1.0)[:, :, None] * rng.uniform(-60, 60, size=3)[None, None, :]
    # Low-frequency texture: upsampled noise.
    cells = int(rng.integers(3, 9))
    texture = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
    texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_CUBIC) * rng.uniform(5, 30)
    img = base[None, None, :] + grad + texture
    # A few distractor strokes so that edges alone do not give the class away.
    for _ in range(int(rng.integers(0, 4))):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.line(img, p1, p2, colour, thickness=max(1, size // 48))
    return np.asarray(img, dtype=np.float32)


def _gradient(size: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    g = (xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle)
    return g * strength


def _contrasting_colour(
    canvas: np.ndarray, mask: np.ndarray, rng: np.random.Generator, min_gap: float = 60.0
) -> np.ndarray:
    """A random colour whose brightness differs from the background around the shape by at least ``min_gap``."""
    weights = mask[:, :, 0]
    if weights.sum() > 0:
        background = (canvas * weights[:, :, None]).sum(axis=(0, 1)) / weights.sum()
    else:
        background = canvas.mean(axis=(0, 1))
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    best, best_gap = _random_colour(rng), -1.0
    for _ in range(12):
        candidate = _random_colour(rng)
        gap = abs(float(candidate @ luma) - float(background @ luma))
        if gap >= min_gap:
            return candidate
        if gap > best_gap:
            best, best_gap = candidate, gap
    return best


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(40, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _draw_shape(mask: np.ndarray, shape: str, cx: float, cy: float, r: float, angle: float) -> None:
    if shape == "circle":
        cv2.circle(mask, (int(cx), int(cy)), int(r), 255, thickness=-1, lineType=cv2.LINE_AA)
        return
    if shape == "square":
        pts = _polygon(4, cx, cy, r, angle)
    elif shape == "triangle":
        pts = _polygon(3, cx, cy, r, angle)
    elif shape == "star":
        outer = _polygon(5, cx, cy, r, angle)
        inner = _polygon(5, cx, cy, r * 0.45, angle + math.pi / 5)
        pts = np.empty((10, 2), np.float32)
        pts[0::2] = outer
        pts[1::2] = inner
    else:  # cross
        w = r * 0.35
        base = np.array(
            [
                (-w, -r),
                (w, -r),
                (w, -w),
                (r, -w),
                (r, w),
                (w, w),
                (w, r),
                (-w, r),
                (-w, w),
                (-r, w),
                (-r, -w),
                (-w, -w),
            ],
            np.float32,
        )
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], np.float32)
        pts = base @ rot.T + np.array([cx, cy], np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_AA)


def _polygon(n: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    t = angle + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1).astype(np.float32)
