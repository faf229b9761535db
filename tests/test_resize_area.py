"""Shrinking by area (``resizing.shrink_area``): the exact area mean, rounded half up, whatever OpenCV's
floating point does on this CPU, so an x86 server, an ARM board and the web page feed a model the same bytes."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecnn.core import resizing
from edgecnn.core.contract import InputSpec
from edgecnn.core.resizing import resize, shrink_area


def fraction_mean(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The definition, in rationals: output (y, x) covers source rows [y*H/h, (y+1)*H/h) and columns alike."""
    h, w, channels = image.shape
    out = np.zeros((height, width, channels), np.int64)
    for y in range(height):
        for x in range(width):
            y0, y1 = Fraction(y * h, height), Fraction((y + 1) * h, height)
            x0, x1 = Fraction(x * w, width), Fraction((x + 1) * w, width)
            for c in range(channels):
                total = Fraction(0)
                for sy in range(h):
                    oy = min(y1, sy + 1) - max(y0, sy)
                    if oy <= 0:
                        continue
                    for sx in range(w):
                        ox = min(x1, sx + 1) - max(x0, sx)
                        if ox > 0:
                            total += oy * ox * int(image[sy, sx, c])
                mean = total / ((y1 - y0) * (x1 - x0))
                out[y, x, c] = int(mean + Fraction(1, 2)) if mean.denominator != 1 else int(mean)  # half up
    return out


def integer_mean(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The same rule by another route (prefix sums per axis, weights in 1/new-size pixels), fast enough for
    photo-sized images."""

    def along(a: np.ndarray, new: int, axis: int) -> np.ndarray:
        size = a.shape[axis]
        edges = np.arange(new + 1, dtype=np.int64) * size
        whole, part = edges // new, edges % new
        shape = [1] * a.ndim
        shape[axis] = new
        inner = np.add.reduceat(a.astype(np.int64), whole[:-1], axis=axis) * new
        tail = np.take(a, np.minimum(whole[1:], size - 1), axis=axis).astype(np.int64) * part[1:].reshape(
            shape
        )
        head = np.take(a, whole[:-1], axis=axis).astype(np.int64) * part[:-1].reshape(shape)
        return inner + tail - head

    total = along(along(image, height, 0), width, 1)
    area = image.shape[0] * image.shape[1]
    return (2 * total + area) // (2 * area)


def levels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Few grey levels: flat regions whose area means often end in exactly a half."""
    return (rng.integers(0, 4, shape) * 85).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    channels=st.sampled_from([1, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_small_images_equal_the_rational_definition(h, w, channels, seed, data):
    height, width = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    rng = np.random.default_rng(seed)
    image = (
        levels(rng, (h, w, channels)) if seed % 2 else rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    )
    expected = fraction_mean(image, height, width)
    np.testing.assert_array_equal(integer_mean(image, height, width), expected)
    np.testing.assert_array_equal(shrink_area(image, height, width), expected)


@pytest.mark.parametrize(
    "size,new",
    [((160, 160), (48, 48)), ((96, 96), (48, 48)), ((448, 448), (224, 224)), ((375, 500), (224, 224)),
     ((1080, 1920), (224, 224)), ((300, 40), (7, 40)), ((64, 64), (16, 16)), ((90, 90), (30, 30)),
     ((1200, 1600), (5, 7))],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["noise", "levels"])
def test_photo_sizes_equal_the_definition_and_differ_from_opencv_only_at_halves(size, new, kind):
    rng = np.random.default_rng(sum(size) + sum(new))
    shape = (*size, 3)
    image = rng.integers(0, 256, shape, dtype=np.uint8) if kind == "noise" else levels(rng, shape)
    exact = integer_mean(image, *new)
    ours = shrink_area(image, *new)
    np.testing.assert_array_equal(ours, exact)
    opencv = cv2.resize(image, new[::-1], interpolation=cv2.INTER_AREA)
    differs = ours.astype(int) != opencv
    assert np.abs(ours.astype(int) - opencv).max() <= 1
    if differs.any():  # only where the exact mean is (nearly) a half: 256 x mean is within 2 of 128 mod 256
        wide = integer_mean(image.astype(np.int64) * 256, *new)
        assert np.all(np.abs(wide[differs] % 256 - 128) <= 2)


def test_the_answer_does_not_depend_on_opencv_rounding(monkeypatch):
    """Another CPU's OpenCV may round its float means differently by a little: the bytes stay the same."""
    rng = np.random.default_rng(7)
    real = cv2.resize

    def other_cpu(src, dsize, interpolation):  # two float32 roundings of 255 either way, at random
        out = real(src, dsize, interpolation=interpolation)
        return out + (rng.uniform(-2, 2, out.shape) * 2.0**-24 * 255).astype(np.float32)

    for image, new in [
        (levels(rng, (160, 160, 3)), (48, 48)),
        (rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (224, 224)),
        (levels(rng, (97, 161, 1)), (31, 23)),
    ]:
        expected = shrink_area(image, *new)
        monkeypatch.setattr(resizing.cv2, "resize", other_cpu)
        assert shrink_area(image, *new).tobytes() == expected.tobytes()
        monkeypatch.setattr(resizing.cv2, "resize", real)
        np.testing.assert_array_equal(expected, integer_mean(image, *new))


def test_a_tie_on_every_pixel_stays_cheap_in_memory(monkeypatch):
    """A checkerboard at a fractional scale puts many means on a half: they are recomputed in slices."""
    monkeypatch.setattr(resizing, "_WINDOW_BUDGET", 1000)
    image = np.zeros((200, 300, 3), np.uint8)
    image[::2, ::2] = image[1::2, 1::2] = 255
    np.testing.assert_array_equal(shrink_area(image, 30, 45), integer_mean(image, 30, 45))


def test_resize_shrinks_by_area_exactly_and_enlarges_with_opencv():
    rng = np.random.default_rng(3)
    image = levels(rng, (160, 160, 3))
    spec = InputSpec(height=48, width=48, resize="area")
    np.testing.assert_array_equal(resize(image, spec), integer_mean(image, 48, 48))
    small = levels(rng, (30, 20, 3))
    enlarged = cv2.resize(small, (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resize(small, spec), enlarged)
    mixed = levels(rng, (100, 30, 3))  # one axis shrinks, one grows: OpenCV's own rule
    np.testing.assert_array_equal(
        resize(mixed, spec), cv2.resize(mixed, (48, 48), interpolation=cv2.INTER_AREA)
    )


def test_outputs_wider_than_1000_pixels_are_exact():
    """OpenCV leaves out slivers under 1/1000 of a source pixel, off by far more than a rounding: the outputs
    beside them are recomputed (a 4:1 photo cropped for a 224 px model is shrunk to 1023 px wide)."""
    image = np.zeros((1, 1003, 1), np.uint8)
    image[0, 501], image[0, 502] = 255, 85
    assert shrink_area(image, 1, 1001)[0, 500, 0] == 255  # (255 * 1001 + 85) / 1003 = 254.58
    rng = np.random.default_rng(11)
    photo = rng.integers(0, 256, (903, 3611, 3), dtype=np.uint8)
    np.testing.assert_array_equal(shrink_area(photo, 256, 1023), integer_mean(photo, 256, 1023))
    for h, w, height, width in [(3, 2500, 2, 1700), (1999, 5, 1001, 4), (40, 4001, 7, 2999)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(shrink_area(image, height, width), integer_mean(image, height, width))


def test_means_of_thousands_of_pixels_are_exact():
    """The longer a mean, the wider the band near a half that is recomputed; past 16,384 terms, all of it."""
    rng = np.random.default_rng(12)
    np.testing.assert_array_equal(shrink_area(np.full((1, 20000, 1), 7, np.uint8), 1, 1), [[[7]]])
    image = rng.integers(0, 256, (2, 20000, 3), dtype=np.uint8)
    np.testing.assert_array_equal(shrink_area(image, 1, 3), integer_mean(image, 1, 3))


def test_long_means_tolerate_a_larger_opencv_error(monkeypatch):
    """Means of 600 source pixels: a float error of 4/256 of a level (a hundred times what short means see)
    changes nothing."""
    rng = np.random.default_rng(13)
    real = cv2.resize

    def sloppier(src, dsize, interpolation):
        out = real(src, dsize, interpolation=interpolation)
        return out + rng.choice([-4 / 256, 4 / 256], out.shape).astype(np.float32)

    image = rng.integers(0, 256, (60, 6000, 3), dtype=np.uint8)
    monkeypatch.setattr(resizing.cv2, "resize", sloppier)
    ours = shrink_area(image, 60, 10)
    monkeypatch.undo()
    np.testing.assert_array_equal(ours, integer_mean(image, 60, 10))


def test_recomputing_every_mean_stays_within_its_memory_budget(monkeypatch):
    """The worst case (every mean in doubt) gathers its source pixels a slice at a time."""
    import tracemalloc

    monkeypatch.setattr(resizing, "near_halves", lambda wide, terms: np.arange(wide.size))
    monkeypatch.setattr(resizing, "_WINDOW_BUDGET", 1 << 14)
    image = np.random.default_rng(14).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        ours = shrink_area(image, 97, 103)  # 30k means of ~110 pixels: ~80 MB gathered at once
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(ours, integer_mean(image, 97, 103))
    assert peak < 20 * 2**20  # the float32 copy of the image (12 MB) and slices
