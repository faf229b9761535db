"""Fuzzing ``load_image``: damaged bytes of real JPEG, PNG, TIFF, GIF and WebP files give an image or an
``ImageError``, never anything else (one corrupt file must skip, never end a run).

The default run is bounded (a few hundred examples, a few seconds); raise ``EDGECNN_FUZZ_EXAMPLES`` for a
longer search.
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ImageError
from edgecnn.core.imaging import load_image

EXAMPLES = int(os.environ.get("EDGECNN_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Values that break length and offset fields: the largest and sign-flipped integers of each width.
BIG = (b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff" * 8, b"\x00" * 7 + b"\x80")


def _seed_files() -> dict[str, bytes]:
    ys, xs = np.mgrid[0:12, 0:16]
    rgb = np.stack([xs * 16, ys * 20, (xs + ys) * 8], axis=2).astype(np.uint8)
    rgba = np.dstack([rgb, (xs * 16).astype(np.uint8)])
    made = {
        "jpeg": (rgb, "JPEG", {"quality": 80}),
        "progressive-jpeg": (rgb, "JPEG", {"progressive": True}),
        "png": (rgba, "PNG", {}),
        "tiff": (rgb, "TIFF", {}),
        "tiff-lzw": (rgb, "TIFF", {"compression": "tiff_lzw"}),
        "bigtiff": (rgb, "TIFF", {"big_tiff": True}),
        "gif": (rgb, "GIF", {}),
        "webp": (rgba, "WEBP", {"quality": 70}),
    }
    files = {}
    for name, (pixels, fmt, params) in made.items():
        out = io.BytesIO()
        try:
            Image.fromarray(pixels).save(out, fmt, **params)
        except (OSError, TypeError, KeyError):  # a Pillow built without this writer or option
            continue
        files[name] = out.getvalue()
    return files


SEEDS = _seed_files()


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    """A seed file with a few bytes overwritten, a field set to a huge value, a cut or a repeated stretch."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["byte", "big", "cut", "repeat"]))
        if edit == "byte":
            data[at] = draw(st.integers(0, 255))
        elif edit == "big":
            value = draw(st.sampled_from(BIG))
            data[at : at + len(value)] = value
        elif edit == "cut":
            del data[at:]
            if not data:
                data = bytearray(b"\x00")
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def test_the_seed_files_decode_in_every_format_this_pillow_writes():
    assert {"jpeg", "png", "tiff", "gif", "webp"} <= set(SEEDS)
    for data in SEEDS.values():
        assert load_image(data, InputSpec.square(16)).shape == (16, 16, 3)


@FUZZ
@given(data=damaged_files(), grey=st.booleans())
def test_damaged_files_give_an_image_or_an_image_error(data: bytes, grey: bool):
    spec = InputSpec.square(16, channels=1 if grey else 3)
    try:
        image = load_image(data, spec)
    except ImageError as exc:
        assert str(exc)  # a reason to show
        return
    assert image.dtype == np.uint8 and image.shape == spec.shape


@pytest.mark.parametrize(
    "header", [struct.pack("<2sHHHQ", b"II", 43, 8, 0, 2**64 - 1), b"II*\x00\xff\xff\xff\xff"]
)
def test_a_tiff_whose_first_directory_is_out_of_reach_is_an_image_error(header: bytes):
    with pytest.raises(ImageError):
        load_image(header + b"\x00" * 32, InputSpec.square(16))
