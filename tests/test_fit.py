"""The contract's resize policies (input.fit: stretch, crop, letterbox), the same for files and frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ContractError
from edgecnn.core.imaging import decode_size, frame_to_input, load_image, resize


def gradient(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack(
        [xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1), (xs + ys) % 256], -1
    ).astype(np.uint8)


def test_crop_is_torchvision_resize_then_center_crop():
    """Resize(256) + CenterCrop(224) on a 300x400 (h x w) image: shorter side 256, longer int(256*400/300)."""
    image = gradient(300, 400)
    spec = InputSpec(height=224, width=224, fit="crop", resize="linear")
    scaled = cv2.resize(image, (341, 256), interpolation=cv2.INTER_LINEAR)
    top, left = int(round((256 - 224) / 2)), int(round((341 - 224) / 2))
    np.testing.assert_array_equal(resize(image, spec), scaled[top : top + 224, left : left + 224])
    assert spec.crop_fraction == 0.875


def test_crop_fraction_one_keeps_the_whole_shorter_side():
    image = gradient(64, 128)
    spec = InputSpec(height=32, width=32, fit="crop", crop_fraction=1.0)
    expected = cv2.resize(image, (64, 32), interpolation=cv2.INTER_AREA)[:, 16:48]
    np.testing.assert_array_equal(resize(image, spec), expected)


def test_letterbox_centres_the_scaled_image_on_the_pad_value():
    image = np.full((50, 100, 3), 200, np.uint8)
    spec = InputSpec(height=40, width=40, fit="letterbox", pad_value=7)
    out = resize(image, spec)
    assert out.shape == (40, 40, 3)
    assert (out[:10] == 7).all() and (out[30:] == 7).all()  # 100x50 -> 40x20, centred: rows 10..29
    assert (out[10:30] == 200).all()


def test_stretch_is_unchanged():
    image = gradient(30, 50)
    expected = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resize(image, InputSpec.square(16)), expected)


@pytest.mark.parametrize("fit", ["crop", "letterbox"])
def test_files_and_frames_get_the_same_fit(tmp_path, fit):
    """classify (files) and webcam (BGR frames) meet the model through one resize."""
    image = gradient(90, 160)
    path = tmp_path / "wide.png"
    Image.fromarray(image).save(path)
    spec = InputSpec(height=24, width=24, fit=fit)
    from_file = load_image(path, spec)
    from_frame = frame_to_input(np.ascontiguousarray(image[:, :, ::-1]), spec)
    np.testing.assert_array_equal(from_file, from_frame)
    assert from_file.shape == (24, 24, 3)


def test_large_jpegs_are_decoded_big_enough_to_crop():
    spec = InputSpec(height=224, width=224, fit="crop")
    assert decode_size(spec) == (256, 256)
    assert decode_size(InputSpec.square(224)) == (224, 224)


def test_fit_options_round_trip_and_appear_only_with_their_fit():
    spec = InputSpec(height=8, width=8, fit="letterbox", pad_value=114, resize="cubic")
    contract = ModelContract(labels=("a", "b"), input=spec)
    assert ModelContract.from_json(contract.to_json()).input == spec
    plain = ModelContract(labels=("a", "b"), input=InputSpec.square(8)).to_dict()["input"]
    assert (
        "crop_fraction" not in plain and "pad_value" not in plain
    )  # older readers keep reading stretch models


def test_fit_options_for_another_fit_are_refused():
    with pytest.raises(ContractError, match="pad_value applies to fit 'letterbox' only"):
        InputSpec(height=8, width=8, pad_value=3)
    with pytest.raises(ContractError, match="crop_fraction"):
        InputSpec(height=8, width=8, fit="crop", crop_fraction=0.05)


def test_pil_bilinear_is_torchvisions_resize_on_the_whole_file(tmp_path):
    """torchvision's Resize on a PIL image is Pillow's BILINEAR (antialiased when shrinking), on the file
    decoded whole: no JPEG draft decoding for this interpolation."""
    image = gradient(300, 400)
    spec = InputSpec(height=224, width=224, fit="crop", resize="pil-bilinear")
    scaled = np.asarray(Image.fromarray(image).resize((341, 256), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize(image, spec), scaled[16:240, 58:282])
    assert decode_size(spec) is None
    path = tmp_path / "big.jpg"
    Image.fromarray(cv2.resize(image, (1600, 1200))).save(path, quality=95)
    with Image.open(path) as whole:
        expected = whole.convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(load_image(path, spec), np.asarray(expected)[16:240, 58:282])


def test_crop_of_an_extreme_strip_stays_small_and_keeps_its_centre():
    strip = np.zeros((1, 60_000, 3), np.uint8)
    strip[:, 29_990:30_010] = 255  # a white mark in the middle
    spec = InputSpec(height=32, width=32, fit="crop")
    out = resize(strip, spec)
    assert (
        out.shape == (32, 32, 3) and out.max() > 0
    )  # the centre survives; nothing scaled to millions of pixels
    tall = resize(
        np.zeros((60_000, 1, 1), np.uint8),
        InputSpec(height=16, width=16, channels=1, color_order="GRAY", fit="crop"),
    )
    assert tall.shape == (16, 16, 1)
