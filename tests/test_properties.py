"""Property-based tests: preprocessing and contract reading never fail with anything but edgecnn's errors.

Preprocessing gets arbitrary small arrays (any size, 1-4 channels, uint8/uint16/float/bool) and encoded or
corrupted image bytes; the answer is a model input of the contract's exact shape and dtype uint8, or an
``ImageError``. Contract reading gets arbitrary JSON and hostile mutations of a valid contract; the answer
is a contract that survives a round trip, or a ``ContractError``.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecnn.core.contract import COLOR_ORDERS, METADATA_KEY, InputSpec, ModelContract, contract_from_metadata
from edgecnn.core.errors import ContractError, ImageError
from edgecnn.core.imaging import decode_image, frame_to_input, image_to_input, load_image
from edgecnn.tools.info import format_info

# Pillow warns (UserWarning) about the odd tags and EXIF blocks that corrupted files contain; expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

specs = st.builds(
    lambda h, w, c, fit, method: InputSpec(h, w, c, color_order=COLOR_ORDERS[c], fit=fit, resize=method),
    st.integers(1, 48),
    st.integers(1, 48),
    st.sampled_from([1, 3]),
    st.sampled_from(["stretch", "crop", "letterbox"]),
    st.sampled_from(["area", "linear", "cubic"]),
)
dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int8, np.bool_])


@st.composite
def arrays(draw, min_side: int = 0, channel_counts=(None, 1, 2, 3, 4), dtype=dtypes):
    """Arrays of shape (h, w) or (h, w, c), any of the dtypes, with extreme values included."""
    h, w = draw(st.integers(min_side, 40)), draw(st.integers(min_side, 40))
    c = draw(st.sampled_from(channel_counts))
    shape = (h, w) if c is None else (h, w, c)
    kind = draw(dtype)
    elements = None
    if np.dtype(kind).kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(kind).itemsize * 8)
    return draw(hnp.arrays(kind, shape, elements=elements))


def assert_model_input(out: np.ndarray, spec: InputSpec) -> None:
    assert isinstance(out, np.ndarray)
    assert out.shape == spec.shape and out.dtype == np.uint8
    assert out.flags.c_contiguous


@SETTINGS
@given(image=arrays(), spec=specs)
@example(image=np.zeros((0, 5, 3), np.uint8), spec=InputSpec.square(8))
@example(image=np.zeros((5, 0), np.uint8), spec=InputSpec.square(8))
def test_image_to_input_gives_the_spec_shape_or_an_image_error(image, spec):
    try:
        out = image_to_input(image, spec)
    except ImageError:
        valid = image.dtype == np.uint8 and image.ndim in (2, 3) and image.size > 0
        assert not (valid and (image.ndim == 2 or image.shape[2] in (1, 3))), "a valid image was refused"
        return
    assert_model_input(out, spec)


@SETTINGS
@given(image=arrays(min_side=1, channel_counts=(1, 3), dtype=st.just(np.uint8)), spec=specs)
def test_image_to_input_keeps_flat_colours(image, spec):
    """A flat image stays flat at any size (INTER_AREA averages; channel conversion is per pixel)."""
    flat = np.empty_like(image)
    flat[:] = image[0, 0]
    out = image_to_input(flat, spec)
    assert_model_input(out, spec)
    if image.shape[2] == spec.channels and spec.fit != "letterbox":  # letterbox adds its padding
        assert (np.abs(out.astype(int) - image[0, 0].astype(int)) <= 1).all()


frames = st.one_of(
    arrays(),
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
)


@SETTINGS
@given(frame=frames, spec=specs, crop=st.sampled_from(["center", "none"]))
@example(frame=np.zeros(5, np.uint8), spec=InputSpec.square(8), crop="center")
@example(frame=np.zeros((3, 1, 4), np.uint16), spec=InputSpec(height=8, width=2), crop="center")
def test_frame_to_input_gives_the_spec_shape_or_an_image_error(frame, spec, crop):
    valid = (
        frame.dtype in (np.uint8, np.uint16)
        and frame.size > 0
        and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4)))
    )
    try:
        out = frame_to_input(frame, spec, crop=crop)
    except ImageError:
        assert not valid, "a valid frame was refused"
        return
    assert_model_input(out, spec)


def test_frame_to_input_refuses_what_is_not_a_frame():
    for bad in (None, [[1, 2], [3, 4]], np.zeros(0, np.uint8)):
        with pytest.raises(ImageError):
            frame_to_input(bad, InputSpec.square(8))  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="crop"):
        frame_to_input(np.zeros((4, 4, 3), np.uint8), InputSpec.square(8), crop="zoom")


# --- encoded files ------------------------------------------------------------------------------------------

ENCODINGS = {  # suffix -> dtypes and channel counts OpenCV writes for it
    ".png": ((np.uint8, np.uint16), (1, 3, 4)),
    ".jpg": ((np.uint8,), (1, 3)),
    ".tiff": ((np.uint8, np.uint16, np.float32), (1, 3, 4)),
    ".webp": ((np.uint8,), (3, 4)),
    ".bmp": ((np.uint8,), (1, 3, 4)),
}


@st.composite
def encoded_images(draw):
    """(suffix, BGR array, file bytes) for small random images in the formats OpenCV can write."""
    suffix = draw(st.sampled_from(sorted(ENCODINGS)))
    kinds, channel_counts = ENCODINGS[suffix]
    kind = draw(st.sampled_from(kinds))
    c = draw(st.sampled_from(channel_counts))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    if kind == np.float32:
        elements = st.floats(-10, 300, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
        array = draw(hnp.arrays(kind, (h, w, c), elements=elements))
    else:
        array = draw(hnp.arrays(kind, (h, w, c)))
    try:
        ok, buf = cv2.imencode(suffix, array)
    except cv2.error:
        ok = False
    assume(ok)
    return suffix, array, buf.tobytes()


@SETTINGS
@given(encoded=encoded_images(), spec=specs)
def test_decoding_encoded_images_gives_the_spec_shape_or_an_image_error(encoded, spec):
    suffix, array, data = encoded
    try:
        decoded = decode_image(data)
    except ImageError:
        assert suffix == ".tiff" and array.dtype == np.float32, "a plain image file was refused"
        return
    assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] in (1, 3)
    assert decoded.shape[:2] == array.shape[:2]
    assert_model_input(load_image(data, spec), spec)
    if suffix == ".png" and array.dtype == np.uint8 and array.shape[2] == 3:
        assert np.array_equal(decoded, array[:, :, ::-1])  # lossless, and RGB: OpenCV wrote BGR


@st.composite
def corrupted(draw):
    """Encoded images with bytes flipped, inserted or cut off."""
    _, _, data = draw(encoded_images())
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "head"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif action == "cut":
            data = data[: max(pos, 1)]
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            data[min(pos, 40)] = draw(st.integers(0, 255))  # the header, where sizes and modes live
    return bytes(data)


@SETTINGS
@given(data=corrupted(), spec=specs)
def test_corrupted_files_give_a_model_input_or_an_image_error(data, spec):
    try:
        out = load_image(data, spec)
    except ImageError:
        return
    assert_model_input(out, spec)


@SETTINGS
@given(data=st.binary(max_size=300), spec=specs)
@example(data=b"", spec=InputSpec.square(4))
@example(data=b"\x89PNG\r\n\x1a\n", spec=InputSpec.square(4))
@example(data=b"\xff\xd8\xff", spec=InputSpec.square(4))
def test_arbitrary_bytes_give_an_image_error(data, spec):
    try:
        out = load_image(data, spec)
    except ImageError:
        return
    assert_model_input(out, spec)


# --- the contract -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

VALID = ModelContract(
    labels=("cat", "dog"),
    input=InputSpec.square(32),
    training={"val_accuracy": 0.9, "val_images": 30, "dataset": "data", "epochs_run": 3, "best_epoch": 2},
    quantization={
        "format": "QDQ",
        "per_channel": True,
        "calibration_method": "minmax",
        "calibration_images": 30,
        "fp32_accuracy": 0.9,
        "int8_accuracy": 0.85,
        "top1_agreement": 0.95,
        "fp32_sha256": "0" * 64,
    },
    source={
        "model_file": "model.keras",
        "model_sha256": "f" * 64,
        "created": "2026-01-01T00:00:00",
        "opset": 17,
    },
)
FIELDS = [*VALID.to_dict()]
BLOCK_FIELDS = {name: [*VALID.to_dict()[name]] for name in ("input", "training", "quantization", "source")}


def read(text) -> ModelContract | None:
    """Read through every entry point; None when refused with ContractError (nothing else may escape)."""
    try:
        contract = contract_from_metadata({METADATA_KEY: text}, what="test.onnx")
    except ContractError:
        return None
    assert isinstance(contract, ModelContract)
    again = ModelContract.from_json(contract.to_json())  # whatever is accepted can be written back
    assert again == contract
    return contract


@SETTINGS
@given(value=json_values)
def test_arbitrary_json_is_refused_with_a_contract_error(value):
    assert read(json.dumps(value)) is None  # none of these is a contract


@SETTINGS
@given(text=st.text(max_size=200) | st.binary(max_size=200))
@example(text="[" * 100_000)
@example(text=b"\xff\xfe")
@example(text='{"schema": NaN}')
def test_arbitrary_text_is_refused_with_a_contract_error(text):
    assert read(text) is None


@st.composite
def mutated_contracts(draw):
    """A valid contract's JSON with fields replaced by arbitrary values, removed or added."""
    data = VALID.to_dict()
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "labels", *BLOCK_FIELDS]))
        action = draw(st.sampled_from(["set", "delete", "add"]))
        target = data if where == "top" else data.get(where)
        if where == "labels":
            data["labels"] = draw(
                st.lists(st.text(max_size=8) | json_values, max_size=5)
                | st.just(["a", "a"])
                | st.just(["\ud800", "b"])
                | st.just(["x" * 201, "b"])
                | json_values
            )
            continue
        if not isinstance(target, dict):
            continue
        keys = FIELDS if where == "top" else BLOCK_FIELDS[where]
        if action == "set":
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "delete":
            target.pop(draw(st.sampled_from(keys)), None)
        else:
            target[draw(st.text(max_size=10))] = draw(json_values)
    return data


@SETTINGS
@given(data=mutated_contracts())
@example(data={**VALID.to_dict(), "input": {**VALID.to_dict()["input"], "value_range": [0, 10**400]}})
@example(data={**VALID.to_dict(), "labels": ["\ud800", "b"]})
@example(data={**VALID.to_dict(), "input": {**VALID.to_dict()["input"], "height": 10**400}})
@example(data={**VALID.to_dict(), "input": {**VALID.to_dict()["input"], "channels": 3.0}})
def test_mutated_contracts_are_read_or_refused_with_a_contract_error(data):
    contract = read(json.dumps(data))
    try:
        ModelContract.from_dict(data)
    except ContractError:
        pass
    if contract is not None:  # whatever is accepted, `edgecnn info` can show
        info = {"path": "m.onnx", "size_bytes": 1, "opset": 17, "ir_version": 8, "nodes": 1, "parameters": 1}
        format_info({**info, "quantized": False, "inputs": [], "outputs": [], "contract": contract.to_dict()})


def test_out_of_range_numbers_are_refused_not_turned_into_infinity():
    text = VALID.to_json().replace('"val_accuracy": 0.9', '"val_accuracy": 1e400')
    assert "1e400" in text
    with pytest.raises(ContractError, match="not valid JSON"):
        ModelContract.from_json(text)
