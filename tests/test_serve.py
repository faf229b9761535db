"""``edgecnn serve`` on 127.0.0.1 as clients see it: Triton's own client (liveness, readiness, metadata, infer
with JSON and binary data; the probabilities of ``edgecnn.load(...).predict``), the plain classify route, and
every bad input answered with a 4xx naming what is wrong while the next request succeeds."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

import edgecnn
from edgecnn.core.imaging import load_image
from edgecnn.serving.config import ServeConfig, parse_model
from edgecnn.serving.server import Server

tritonhttp = pytest.importorskip("tritonclient.http")

ROOT = Path(__file__).resolve().parents[1]
FP32 = ROOT / "models" / "shapes-cnn.onnx"
INT8 = ROOT / "models" / "shapes-cnn.int8.onnx"
PHOTOS = sorted((ROOT / "samples").glob("*-[12].jpg")) + [ROOT / "samples" / "circle-transparent.png"]
TIMEOUT = 20


@contextlib.contextmanager
def running(ready: bool = True, **options) -> Iterator[Server]:
    """A server on a free 127.0.0.1 port in a thread (models loaded and warmed up when ``ready``); stopped
    and joined on exit."""
    options.setdefault("models", (parse_model(f"shapes={FP32}"),))
    config = ServeConfig(port=0, provider="cpu", threads=1, workers=2, **options)
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if ready:
            assert server.registry.all_ready.wait(TIMEOUT), "the models did not load"
        yield server
    finally:
        server.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    models = (parse_model(f"shapes={FP32}"), parse_model(f"shapes-int8={INT8}"))
    with running(models=models, max_batch=8, max_delay_ms=2, max_body_mb=1) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    return tritonhttp.InferenceServerClient(f"127.0.0.1:{server.port}", network_timeout=TIMEOUT)


def pixels(paths) -> np.ndarray:
    spec = edgecnn.load(FP32, provider="cpu").contract.input
    return np.stack([load_image(p, spec) for p in paths])


def expected(model: Path, paths) -> np.ndarray:
    with edgecnn.load(model, provider="cpu", threads=1) as m:
        return np.array([[p.probabilities[label] for label in m.labels] for p in m.predict(list(paths))])


def classify_ok(server: Server) -> None:
    """The next good request is served."""
    r = requests.post(f"{server.url}/v2/models/shapes/classify", data=PHOTOS[0].read_bytes(), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["label"] == "circle"


def test_triton_client_sees_a_live_ready_server_and_the_model_contract(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("shapes") and client.is_model_ready("shapes-int8")
    meta = client.get_model_metadata("shapes")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 48, 48, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "labels"]
    assert meta["parameters"]["labels"] == ["circle", "square", "triangle"]
    assert meta["parameters"]["input"]["resize"] == "area"
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["shapes", "shapes-int8"])
def test_triton_infer_with_raw_pixels_and_with_encoded_images_equals_predict(client, binary, model):
    path = FP32 if model == "shapes" else INT8
    want = expected(path, PHOTOS)
    tolerance = 1e-6 if model == "shapes" else 1e-5
    x = pixels(PHOTOS).astype(np.float32)
    raw = tritonhttp.InferInput("image", list(x.shape), "FP32")
    raw.set_data_from_numpy(x, binary_data=binary)
    outputs = [tritonhttp.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "labels")]
    result = client.infer(model, [raw], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=tolerance, rtol=0)
    labels = [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy("labels").ravel()]
    assert labels == [p.name.split("-")[0] for p in PHOTOS]

    blobs = [p.read_bytes() for p in PHOTOS]
    encoded = np.array([base64.b64encode(b) if not binary else b for b in blobs], dtype=np.object_)
    images = tritonhttp.InferInput("image", [len(blobs)], "BYTES")
    images.set_data_from_numpy(encoded, binary_data=binary)
    result = client.infer(model, [images], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=tolerance, rtol=0)


def test_triton_default_request_gets_every_output_as_binary_and_top_k(client):
    x = pixels(PHOTOS[:2]).astype(np.uint8)
    tensor = tritonhttp.InferInput("image", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x)
    result = client.infer("shapes", [tensor], parameters={"top_k": 2})
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 2 * 3 * 4
    assert result.as_numpy("labels").shape == (2, 2)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected(FP32, PHOTOS[:2]), atol=1e-6, rtol=0
    )


def test_classify_route_gives_a_result_row_from_a_raw_body_or_a_form(server):
    photo = PHOTOS[2]
    want = edgecnn.load(FP32, provider="cpu").predict(photo, top_k=2)
    raw = requests.post(
        f"{server.url}/v2/models/shapes/classify",
        data=photo.read_bytes(),
        params={"top_k": 2},
        timeout=TIMEOUT,
    ).json()
    form = requests.post(
        f"{server.url}/v2/models/shapes/classify",
        files={"file": (photo.name, photo.read_bytes())},
        timeout=TIMEOUT,
    ).json()
    assert set(raw) == {"path", "status", "label", "confidence", "top_k", "error"}  # a classify row's fields
    assert raw["label"] == want.label and raw["confidence"] == pytest.approx(want.confidence, abs=1e-6)
    assert [t["label"] for t in raw["top_k"]] == [label for label, _ in want.top_k]
    assert form["path"] == photo.name and form["label"] == want.label and len(form["top_k"]) == 1


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` pixels, in a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def infer_json(datatype: str, shape: list[int], data) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "image", "datatype": datatype, "shape": shape, "data": data}]}
    ).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def truncated_upload() -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 5000}}
            ]
        }
    ).encode()
    blob = (4996).to_bytes(4, "little") + PHOTOS[0].read_bytes()[:1000]
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


TRUNCATED, TRUNCATED_HEADERS = truncated_upload()
BAD = {
    "unknown model": (
        "infer",
        "nope",
        infer_json("FP32", [1], [0]),
        {},
        404,
        "model 'nope' is not served here",
    ),
    "wrong shape": (
        "infer",
        "shapes",
        infer_json("FP32", [1, 2, 2, 3], [0] * 12),
        {},
        400,
        "this model takes [N,48,48,3]",
    ),
    "wrong datatype": ("infer", "shapes", infer_json("FP64", [1], [0]), {}, 400, "datatype 'FP64'"),
    "wrong dtype values": ("infer", "shapes", infer_json("FP32", [1], ["x"]), {}, 400, "only numbers"),
    "NaN pixels": (
        "infer",
        "shapes",
        infer_json("FP32", [1, 48, 48, 3], [float("nan")] * 6912),
        {},
        400,
        "NaN",
    ),
    "bad JSON": ("infer", "shapes", b'{"inputs": [', {}, 400, "not valid JSON"),
    "bad base64": (
        "infer",
        "shapes",
        infer_json("BYTES", [1], ["@@not base64"]),
        {},
        400,
        "not valid base64",
    ),
    "not an image": (
        "infer",
        "shapes",
        infer_json("BYTES", [1], [b64(b"hello world")]),
        {},
        400,
        "not an image file",
    ),
    "empty image": ("infer", "shapes", infer_json("BYTES", [1], [""]), {}, 400, "empty file (0 bytes)"),
    "empty infer body": ("infer", "shapes", b"", {}, 400, "empty request body"),
    "empty classify body": ("classify", "shapes", b"", {}, 400, "empty file (0 bytes)"),
    "truncated upload": ("infer", "shapes", TRUNCATED, TRUNCATED_HEADERS, 400, "truncated upload"),
    "truncated image": ("classify", "shapes", PHOTOS[0].read_bytes()[:300], {}, 400, "image: "),
    "huge image": ("classify", "shapes", huge_png(), {}, 400, "over the 64 MP limit"),
    "huge image in a tensor": (
        "infer",
        "shapes",
        infer_json("BYTES", [1], [b64(huge_png())]),
        {},
        400,
        "64 MP limit",
    ),
    "oversized body": (
        "classify",
        "shapes",
        b"\0" * (1024 * 1024 + 1),
        {},
        413,
        "over the 1048576-byte limit",
    ),
    "too many images": ("infer", "shapes", infer_json("BYTES", [9], [b64(b"x")] * 9), {}, 400, "at most 8"),
    "unknown output": (
        "infer",
        "shapes",
        json.dumps(
            {**json.loads(infer_json("UINT8", [1, 48, 48, 3], [0] * 6912)), "outputs": [{"name": "logits"}]}
        ).encode(),
        {},
        400,
        "no output 'logits'",
    ),
    "form without a file": (
        "classify",
        "shapes",
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"},
        400,
        "no file",
    ),
    "bad top_k": ("classify?top_k=0", "shapes", PHOTOS[0].read_bytes(), {}, 400, "top_k must be"),
    "JSON nested too deeply": (
        "infer",
        "shapes",
        b"[" * 100_000 + b"]" * 100_000,
        {},
        400,
        "nested too deeply",
    ),
    "a number too large": ("infer", "shapes", infer_json("FP32", [1], [10**400]), {}, 400, "only numbers"),
    "a huge dimension": (
        "infer",
        "shapes",
        infer_json("FP32", [0, 10**30], []),
        {},
        400,
        "at most 8 dimensions",
    ),
    "too many dimensions": (
        "infer",
        "shapes",
        infer_json("FP32", [1] * 100, [1]),
        {},
        400,
        "at most 8 dimensions",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_a_4xx_naming_the_problem_and_the_server_goes_on(server, case):
    route, model, body, headers, status, message = BAD[case]
    r = requests.post(f"{server.url}/v2/models/{model}/{route}", data=body, headers=headers, timeout=TIMEOUT)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert message in error
    assert "Traceback" not in r.text and str(ROOT) not in error
    classify_ok(server)


def test_unknown_routes_and_server_files_are_json_404s(server):
    for path in ("/v2/models/shapes/../../etc/passwd", "/models/shapes-cnn.onnx", "/v2/repository/index"):
        r = requests.get(server.url + path, timeout=TIMEOUT)
        assert r.status_code == 404 and "error" in r.json()
    wrong = requests.get(f"{server.url}/v2/models/shapes/versions/2", timeout=TIMEOUT)
    assert wrong.status_code == 404 and "version '2'" in wrong.json()["error"]
    assert requests.get(f"{server.url}/v2/models/shapes/versions/1/ready", timeout=TIMEOUT).status_code == 200
