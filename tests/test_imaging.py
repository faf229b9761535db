import io

import cv2
import numpy as np
import pytest
from imagefiles import gradient_rgb, jpeg_with_orientation, png_with_header, save
from PIL import Image

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ImageError
from edgecnn.core.imaging import (
    can_read_avif,
    center_crop,
    decode_image,
    frame_to_input,
    iso_image_kind,
    load_image,
)

SPEC = InputSpec.square(32)
GREY = InputSpec.square(32, channels=1)


def test_colour_order_is_rgb(tmp_path):
    red = np.zeros((10, 10, 3), np.uint8)
    red[:, :, 0] = 255
    out = load_image(save(red, tmp_path / "red.png"), SPEC)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, :, 0] == 255).all() and (out[:, :, 1:] == 0).all()


def test_rgba_composites_transparent_pixels_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :, 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    out = decode_image(save(rgba, tmp_path / "a.png"))
    assert out.shape == (8, 8, 3)
    assert (out[:4] == [200, 0, 0]).all()
    assert (out[4:] == 255).all()


def test_opaque_rgba_equals_rgb(tmp_path):
    rgb = gradient_rgb()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    a = load_image(save(rgba, tmp_path / "rgba.png"), SPEC)
    b = load_image(save(rgb, tmp_path / "rgb.png"), SPEC)
    assert np.array_equal(a, b)


def test_grey_file_to_rgb_model_copies_channels(tmp_path):
    grey = gradient_rgb()[:, :, 0]
    out = load_image(save(grey, tmp_path / "g.png"), SPEC)
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])


def test_rgb_file_to_grey_model_uses_luma(tmp_path):
    rgb = gradient_rgb()
    out = load_image(save(rgb, tmp_path / "c.png"), GREY)
    assert out.shape == (32, 32, 1)
    expected = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1


def test_16_bit_png_maps_to_8_bit(tmp_path):
    data = np.array([[0, 32896, 65535, 257]], dtype=np.uint16)
    path = tmp_path / "16.png"
    Image.fromarray(data).save(path)
    out = decode_image(path)
    assert out.shape == (1, 4, 1)
    assert out[0, :, 0].tolist() == [0, 128, 255, 1]


def test_palette_and_palette_with_transparency(tmp_path):
    rgb = gradient_rgb()
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png").shape == (40, 60, 3)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    out = decode_image(tmp_path / "pt.png")
    index0 = np.asarray(pal) == 0
    assert index0.any() and (out[index0] == 255).all()


def test_grey_with_alpha(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[:, :, 0] = 100
    la[:2, :, 1] = 255
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = decode_image(tmp_path / "la.png")
    assert (out[:2] == 100).all() and (out[2:] == 255).all()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_honoured(tmp_path, orientation):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (250, 10, 10)  # left half red, right half blue
    rgb[:, 20:] = (10, 10, 250)
    out = decode_image(jpeg_with_orientation(rgb, tmp_path / f"o{orientation}.jpg", orientation))
    expected = {3: np.rot90(rgb, 2), 6: np.rot90(rgb, -1), 8: np.rot90(rgb, 1)}[orientation]
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 8


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP", "TIFF", "JPEG"])
def test_common_formats_decode(tmp_path, fmt):
    path = save(gradient_rgb(), tmp_path / f"x.{fmt.lower()}", format=fmt)
    out = load_image(path, SPEC)
    assert out.shape == (32, 32, 3)
    assert (
        abs(int(out.mean()) - int(load_image(save(gradient_rgb(), tmp_path / "ref.png"), SPEC).mean())) < 12
    )


def test_large_jpeg_reduced_decode_keeps_size(tmp_path):
    big = cv2.resize(gradient_rgb(), (1600, 1200), interpolation=cv2.INTER_LINEAR)
    out = load_image(save(big, tmp_path / "big.jpg", quality=90), SPEC)
    full = cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - full.astype(int)).mean() < 3


def test_bytes_and_path_give_the_same_input(tmp_path):
    path = save(gradient_rgb(), tmp_path / "b.jpg")
    assert np.array_equal(load_image(path, SPEC), load_image(path.read_bytes(), SPEC))


def write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: write(p, b""), "empty file"),
        (lambda p: write(p, b"hello, this is text\n"), "text file"),
        (lambda p: write(p, b"<!DOCTYPE html><html></html>"), "HTML"),
        (lambda p: write(p, b"%PDF-1.4\n%..."), "PDF"),
        (lambda p: write(p, b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + b"\x00" * 64), "HEIC"),
        (lambda p: png_with_header(p, 100000, 100000), "decompression bomb"),
        (lambda p: p.mkdir() or p, "directory"),
        (lambda p: p, "not found"),
    ],
)
def test_bad_files_raise_image_error_with_reason(tmp_path, make, message):
    path = make(tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match=message):
        load_image(path, SPEC)


def test_truncated_jpeg_and_png(tmp_path):
    for name in ("t.jpg", "t.png"):
        full = save(gradient_rgb(200, 200), tmp_path / ("full_" + name))
        data = full.read_bytes()
        cut = tmp_path / name
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageError, match="truncated|cannot decode"):
            load_image(cut, SPEC)


def test_frame_matches_file_within_one_grey_level(tmp_path):
    rgb = gradient_rgb(48, 64)
    from_file = load_image(save(rgb, tmp_path / "f.png"), SPEC)
    from_frame = frame_to_input(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), SPEC)
    assert np.abs(from_file.astype(int) - from_frame.astype(int)).max() <= 1


def test_frame_grey_and_bgra(tmp_path):
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[:, :, 2] = 255  # red in BGR
    assert (frame_to_input(bgr, SPEC)[:, :, 0] == 255).all()
    bgra = np.dstack([bgr, np.full((48, 64), 255, np.uint8)])
    assert np.array_equal(frame_to_input(bgra, SPEC), frame_to_input(bgr, SPEC))
    assert frame_to_input(bgr[:, :, 0], GREY).shape == (32, 32, 1)


def test_center_crop_aspect():
    frame = np.zeros((480, 640, 3), np.uint8)
    assert center_crop(frame, 1.0).shape == (480, 480, 3)
    assert center_crop(np.zeros((640, 480, 3), np.uint8), 1.0).shape == (480, 480, 3)
    assert frame_to_input(frame, SPEC, crop="center").shape == (32, 32, 3)


def test_empty_frame_is_refused():
    with pytest.raises(ImageError):
        frame_to_input(np.zeros((0, 0, 3), np.uint8), SPEC)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "AVIF"),  # HEIF container, AVIF brand
        (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B", "AVIF"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),  # an MP4 video
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None),
        (b"\x00\x00\x00\x01ftypheic", "HEIF"),  # a box size too small to hold brands: the major brand decides
        (b"", None),
    ],
)
def test_iso_image_kind_reads_the_ftyp_brands(head, kind):
    assert iso_image_kind(head) == kind


def test_avif_decodes_from_bytes_when_pillow_reads_it():
    if not can_read_avif():
        pytest.skip("this Pillow cannot read AVIF")
    buf = io.BytesIO()
    Image.fromarray(gradient_rgb()).save(buf, format="AVIF", quality=95)
    out = decode_image(buf.getvalue())
    assert out.shape == (40, 60, 3)
    assert np.abs(out.astype(int) - gradient_rgb().astype(int)).mean() < 8
