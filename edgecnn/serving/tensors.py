"""The Open Inference Protocol's infer request and response: tensors as JSON, and the binary tensor data
extension (what Triton's clients send by default).

Binary data: the JSON header is the first ``Inference-Header-Content-Length`` bytes of the body; each input
with ``parameters.binary_data_size`` takes that many of the bytes after it, in input order. Numbers are
little-endian; a BYTES element is a 4-byte little-endian length and its bytes. In JSON, a BYTES element that
holds an encoded image is base64 text (JSON has no bytes). Nothing here knows a model: ``model_input`` checks
a parsed tensor against one model's input spec.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec
from edgecnn.serving.errors import RequestError

#: The tensor datatypes an input may have, and their NumPy types (BYTES: a list of bytes).
DTYPES: dict[str, Any] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1"), "BYTES": None}
HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
#: The largest shapes a request may declare (an image batch has 4 dimensions; NumPy allows at most 64).
MAX_DIMS = 8
MAX_DIM = 2**31 - 1


@dataclass(frozen=True)
class Tensor:
    """One input as sent: a NumPy array of its shape (FP32, UINT8) or its elements in order (BYTES)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: its inputs, the outputs asked for (None: all) and whether each is binary."""

    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] | None  # name -> as binary data
    binary_output: bool  # for outputs not named (the request's binary_data_output)
    parameters: dict[str, Any]


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an infer request body (JSON, or a JSON header and binary tensor data).

    Raises:
        RequestError: The body is not a well-formed infer request; the message names what is wrong.
    """
    if not body:
        raise RequestError("empty request body; send an infer request (JSON)")
    size = len(body) if header_length is None else _header_size(header_length, len(body))
    try:
        head = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request is not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError("request JSON is nested too deeply") from None
    if not isinstance(head, dict):
        raise RequestError("request must be a JSON object with 'inputs'")
    parameters = _object(head.get("parameters"), "parameters")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("request has no 'inputs' (a list of tensors)")
    blob = memoryview(body)[size:]
    cursor = 0
    tensors = []
    for i, item in enumerate(inputs):
        tensor, cursor = _input(item, i, blob, cursor)
        tensors.append(tensor)
    if cursor != len(blob):
        raise RequestError(
            f"{len(blob) - cursor} bytes of binary data follow the inputs' binary_data_size total of {cursor}"
        )
    outputs = None
    if head.get("outputs") is not None:
        if not isinstance(head["outputs"], list):
            raise RequestError("'outputs' must be a list of {\"name\": ...} objects")
        outputs = {}
        for out in head["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise RequestError("each of 'outputs' must be an object with a 'name'")
            out_params = _object(out.get("parameters"), f"output {out['name']!r} parameters")
            outputs[out["name"]] = bool(out_params.get("binary_data", False))
    request_id = head.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=tensors,
        outputs=outputs,
        binary_output=bool(parameters.get("binary_data_output", False)),
        parameters=parameters,
    )


def _header_size(text: str, body_size: int) -> int:
    try:
        size = int(text)
    except ValueError:
        size = -1
    if not 0 < size <= body_size:
        raise RequestError(f"{HEADER_LENGTH} {text!r} is not a length within the {body_size}-byte body")
    return size


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object")
    return value


def _input(item: Any, i: int, blob: memoryview, cursor: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise RequestError(f"input {i} must be an object with a 'name'")
    name = item["name"]
    datatype = item.get("datatype")
    if datatype not in DTYPES:
        raise RequestError(f"input {name!r} has datatype {datatype!r}; this server takes {', '.join(DTYPES)}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(f"input {name!r} has shape {shape!r}; expected a list of non-negative integers")
    if len(shape) > MAX_DIMS or any(d > MAX_DIM for d in shape):
        raise RequestError(
            f"input {name!r} has shape {shape!r}; at most {MAX_DIMS} dimensions of at most {MAX_DIM} each"
        )
    count = math.prod(shape)
    params = _object(item.get("parameters"), f"input {name!r} parameters")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if type(size) is not int or size < 0:
            raise RequestError(f"input {name!r} has binary_data_size {size!r}; expected a byte count")
        if cursor + size > len(blob):
            raise RequestError(
                f"input {name!r} declares {size} bytes of binary data but {len(blob) - cursor} remain "
                "(a truncated upload?)"
            )
        chunk = blob[cursor : cursor + size]
        data = _from_binary(name, datatype, chunk, count)
        cursor += size
    elif "data" in item:
        data = _from_json(name, datatype, item["data"], count)
    else:
        raise RequestError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if isinstance(data, np.ndarray):
        data = data.reshape(shape)
    return Tensor(name, datatype, tuple(shape), data), cursor


def _from_binary(name: str, datatype: str, chunk: memoryview, count: int) -> np.ndarray | list[bytes]:
    dtype = DTYPES[datatype]
    if dtype is not None:
        if len(chunk) != count * dtype.itemsize:
            raise RequestError(
                f"input {name!r}: {len(chunk)} bytes of {datatype} data for {count} elements "
                f"(expected {count * dtype.itemsize})"
            )
        return np.frombuffer(chunk, dtype=dtype)
    elements: list[bytes] = []
    at = 0
    while at < len(chunk):
        if at + 4 > len(chunk):
            raise RequestError(f"input {name!r}: BYTES element {len(elements)} has a cut length prefix")
        length = int.from_bytes(chunk[at : at + 4], "little")
        if at + 4 + length > len(chunk):
            raise RequestError(
                f"input {name!r}: BYTES element {len(elements)} declares {length} bytes but "
                f"{len(chunk) - at - 4} remain (a truncated upload?)"
            )
        elements.append(bytes(chunk[at + 4 : at + 4 + length]))
        at += 4 + length
    if len(elements) != count:
        raise RequestError(f"input {name!r}: {len(elements)} BYTES elements for a shape of {count}")
    return elements


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray | list[bytes]:
    if not isinstance(data, list):
        raise RequestError(f"input {name!r}: 'data' must be a list")
    dtype = DTYPES[datatype]
    if dtype is None:
        flat = list(_flatten(data))
        if len(flat) != count:
            raise RequestError(f"input {name!r}: {len(flat)} BYTES elements for a shape of {count}")
        return [_base64(name, i, s) for i, s in enumerate(flat)]
    try:
        array = np.array(data).ravel()  # its own type first: "1.5" or true must not pass as numbers
    except (ValueError, TypeError, OverflowError, RecursionError):
        array = np.array([None])
    if array.dtype.kind not in "iuf":
        raise RequestError(f"input {name!r}: 'data' must hold only numbers ({datatype})")
    array = array.astype(np.float64, copy=False)
    if array.size != count:
        raise RequestError(f"input {name!r}: {array.size} values for a shape of {count} elements")
    if (
        datatype == "UINT8"
        and array.size
        and (array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array)))
    ):
        raise RequestError(f"input {name!r}: UINT8 data must be whole numbers 0-255")
    with np.errstate(over="ignore"):  # beyond float32 becomes infinite, refused with the NaN check
        return array.astype(dtype)


def _flatten(data: list[Any]) -> Any:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _base64(name: str, i: int, value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"input {name!r}: BYTES element {i} must be base64 text in JSON")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"input {name!r}: BYTES element {i} is not valid base64") from None


def model_input(tensor: Tensor, spec: InputSpec, max_batch: int) -> np.ndarray | list[bytes]:
    """The tensor as this model takes it: a float32 NHWC batch of raw pixels, or encoded images (BYTES).

    Raises:
        RequestError: The shape, datatype or values do not fit the model; the message says what it takes.
    """
    h, w, c = spec.shape
    takes = f"[N,{h},{w},{c}] FP32 or UINT8 raw pixels, or [N] BYTES encoded images"
    if tensor.name != spec.name:
        raise RequestError(f"input {tensor.name!r} is not this model's; its input is {spec.name!r} ({takes})")
    shape = tensor.shape
    if tensor.datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(f"input {tensor.name!r}: BYTES shape {list(shape)}; expected [N] or [N,1]")
    elif len(shape) != 4 or tuple(shape[1:]) != (h, w, c):
        raise RequestError(f"input {tensor.name!r} has shape {list(shape)}; this model takes {takes}")
    n = shape[0]
    if n < 1:
        raise RequestError(f"input {tensor.name!r} holds no images (shape {list(shape)})")
    if n > max_batch:
        raise RequestError(f"input {tensor.name!r} holds {n} images; this server takes at most {max_batch}")
    if isinstance(tensor.data, list):
        return tensor.data
    if tensor.datatype == "FP32" and not np.isfinite(tensor.data).all():
        raise RequestError(f"input {tensor.name!r} holds NaN or infinite values")
    return np.ascontiguousarray(tensor.data, dtype=np.float32)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str  # FP32 or BYTES
    data: np.ndarray  # float32, or an object array of str (BYTES)
    binary: bool


def encode_infer_response(
    model: str, request_id: str | None, outputs: Sequence[OutputTensor]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when some output is binary (else None)."""
    head: dict[str, Any] = {"model_name": model, "model_version": "1"}
    if request_id is not None:
        head["id"] = request_id
    entries = []
    blobs = []
    for out in outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.data.shape)}
        if out.binary:
            blob = _to_binary(out)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif out.datatype == "BYTES":
            entry["data"] = [str(s) for s in out.data.ravel()]
        else:
            entry["data"] = out.data.ravel().tolist()
        entries.append(entry)
    head["outputs"] = entries
    text = json.dumps(head, allow_nan=False).encode()
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)


def _to_binary(out: OutputTensor) -> bytes:
    if out.datatype == "BYTES":
        parts = []
        for s in out.data.ravel():
            raw = str(s).encode()
            parts += [len(raw).to_bytes(4, "little"), raw]
        return b"".join(parts)
    return np.ascontiguousarray(out.data, dtype="<f4").tobytes()
