"""The serving pieces without a server: the Open Inference Protocol codec, the options, the batcher."""

from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import pytest

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError
from edgecnn.serving.batcher import Batcher
from edgecnn.serving.config import ServeConfig, parse_model
from edgecnn.serving.errors import Overloaded, RequestError
from edgecnn.serving.tensors import OutputTensor, encode_infer_response, model_input, parse_infer_request

SPEC = InputSpec.square(8)


def binary_request(inputs: list[tuple[dict, bytes]], **head) -> tuple[bytes, str]:
    """A body in the binary tensor data extension, and its header length."""
    text = json.dumps({"inputs": [meta for meta, _ in inputs], **head}).encode()
    return text + b"".join(blob for _, blob in inputs), str(len(text))


def bytes_elements(*items: bytes) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in items)


def test_json_fp32_input_is_reshaped():
    body = json.dumps(
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 2], "data": [[1.5, 2]]}]}
    )
    request = parse_infer_request(body.encode(), None)
    tensor = request.inputs[0]
    assert tensor.shape == (1, 2) and tensor.data.dtype == np.float32
    assert tensor.data.tolist() == [[1.5, 2.0]]
    assert request.outputs is None and not request.binary_output


def test_binary_inputs_are_read_in_order_with_frombuffer():
    pixels = np.arange(6, dtype="<f4")
    body, length = binary_request(
        [
            (
                {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
                pixels.tobytes(),
            ),
            (
                {"name": "b", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 15}},
                bytes_elements(b"xy", b"12345"),
            ),
        ],
        outputs=[{"name": "labels", "parameters": {"binary_data": True}}],
    )
    request = parse_infer_request(body, length)
    assert request.inputs[0].data.tolist() == pixels.reshape(2, 3).tolist()
    assert request.inputs[1].data == [b"xy", b"12345"]
    assert request.outputs == {"labels": True}


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"", None, "empty request body"),
        (b"{nope", None, "not valid JSON"),
        (b"[1]", None, "JSON object"),
        (b'{"inputs": []}', None, "no 'inputs'"),
        (
            b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]}',
            None,
            "datatype 'INT64'",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}',
            None,
            "non-negative",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1]}]}',
            None,
            "1 values for a shape of 3",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}',
            None,
            "only numbers",
        ),
        (  # a number written as text is not a number
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": ["1.5", "2"]}]}',
            None,
            "only numbers",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [true]}]}',
            None,
            "only numbers",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [null]}]}',
            None,
            "only numbers",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, [2]]}]}',
            None,
            "only numbers",
        ),
        (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}]}', None, "0-255"),
        (
            b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}',
            None,
            "not valid base64",
        ),
        (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [5]}]}', None, "base64 text"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None, "neither 'data'"),
        (b'{"inputs": []}', "999", "not a length within"),
    ],
)
def test_malformed_requests_are_refused_by_name(body, length, message):
    with pytest.raises(RequestError, match=message):
        parse_infer_request(body, length)


def test_a_truncated_binary_upload_is_named():
    meta = {"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}
    body, length = binary_request([(meta, b"\0" * 16)])
    with pytest.raises(RequestError, match="declares 16 bytes of binary data but 9 remain"):
        parse_infer_request(body[:-7], length)
    with pytest.raises(RequestError, match="4 bytes of binary data follow"):
        parse_infer_request(body + b"\0" * 4, length)
    cut = {"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}
    body, length = binary_request([(cut, (100).to_bytes(4, "little") + b"abcd")])
    with pytest.raises(RequestError, match="declares 100 bytes but 4 remain"):
        parse_infer_request(body, length)


def test_model_input_checks_shape_name_and_batch():
    def tensor(shape, datatype="FP32", name="image", value=0.0):
        data = {"name": name, "datatype": datatype, "shape": shape}
        n = int(np.prod(shape))
        data["data"] = [base64.b64encode(b"x").decode()] * n if datatype == "BYTES" else [value] * n
        return parse_infer_request(json.dumps({"inputs": [data]}).encode(), None).inputs[0]

    assert model_input(tensor([2, 8, 8, 3]), SPEC, 4).shape == (2, 8, 8, 3)
    assert model_input(tensor([2, 8, 8, 3], "UINT8", value=255), SPEC, 4).dtype == np.float32
    assert model_input(tensor([2, 1], "BYTES"), SPEC, 4) == [b"x", b"x"]
    for bad, message in [
        (tensor([1, 9, 8, 3]), r"shape \[1, 9, 8, 3\]; this model takes \[N,8,8,3\]"),
        (tensor([1, 8, 8, 3], name="pixels"), "its input is 'image'"),
        (tensor([5, 8, 8, 3]), "holds 5 images; this server takes at most 4"),
        (tensor([0, 8, 8, 3]), "holds no images"),
        (tensor([1, 2], "BYTES"), r"expected \[N\] or \[N,1\]"),
        (tensor([1, 8, 8, 3], value=float("nan")), "NaN"),
    ]:
        with pytest.raises(RequestError, match=message):
            model_input(bad, SPEC, 4)


def test_response_round_trips_as_json_and_binary():
    probs = np.array([[0.25, 0.75]], np.float32)
    labels = np.array([["b"]], dtype=object)
    text, length = encode_infer_response(
        "m",
        "7",
        [OutputTensor("probabilities", "FP32", probs, False), OutputTensor("labels", "BYTES", labels, False)],
    )
    assert length is None
    assert json.loads(text)["outputs"][0]["data"] == [0.25, 0.75]
    body, length = encode_infer_response(
        "m",
        None,
        [OutputTensor("probabilities", "FP32", probs, True), OutputTensor("labels", "BYTES", labels, True)],
    )
    head = json.loads(body[:length])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [8, 5]
    assert np.frombuffer(body[length : length + 8], "<f4").tolist() == [0.25, 0.75]
    assert body[length + 8 :] == bytes_elements(b"b")


def test_model_names_and_options_are_checked_together():
    assert parse_model("models/shapes-cnn.onnx").name == "shapes-cnn"
    assert parse_model("fast=models/x.onnx").name == "fast"
    with pytest.raises(ConfigError, match="URL path segment"):
        parse_model("a/b=x.onnx")
    with pytest.raises(ConfigError, match="given twice"):
        ServeConfig(models=(parse_model("a=x.onnx"), parse_model("y/a.onnx")))
    with pytest.raises(ConfigError, match="port must be 0-65535"):
        ServeConfig(port=70000)
    with pytest.raises(ConfigError, match="queue-size must be at least 1"):
        ServeConfig(queue_size=0)
    with pytest.raises(ConfigError, match="api-key is empty"):
        ServeConfig(api_key=" ")
    assert ServeConfig(host="0.0.0.0").exposed_without_key
    assert not ServeConfig(host="0.0.0.0", api_key="k").exposed_without_key
    assert not ServeConfig().exposed_without_key


class FakePredictor:
    """Sums each image; records the batch sizes it was given; optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.fail = False

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        if self.fail:
            self.fail = False
            raise RuntimeError("session failed")
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def test_batcher_joins_requests_within_the_delay_up_to_max_batch():
    predictor = FakePredictor()
    batcher = Batcher("m", predictor, max_batch=4, max_delay=0.3, queue_size=16)  # type: ignore[arg-type]
    futures = []
    slots = [batcher.admit() for _ in range(6)]
    for i, slot in enumerate(slots):
        futures.append(batcher.submit(slot, np.full((1, 2), i, np.float32)))
    results = [f.result(timeout=5) for f in futures]
    for slot in slots:
        slot.release()
    batcher.close(timeout=5)
    assert [r.tolist() for r in results] == [[[2.0 * i]] for i in range(6)]  # each request its own rows
    assert predictor.sizes == [4, 2]


def test_batcher_refuses_at_once_when_full_and_drains_on_close():
    predictor = FakePredictor(delay=0.2)
    batcher = Batcher("m", predictor, max_batch=1, max_delay=0.0, queue_size=2)  # type: ignore[arg-type]
    a, b = batcher.admit(), batcher.admit()
    started = time.monotonic()
    with pytest.raises(Overloaded, match="at capacity"):
        batcher.admit()
    assert time.monotonic() - started < 1.0  # no slot frees in this test: a waiting admit would never return
    fa = batcher.submit(a, np.ones((1, 1), np.float32))
    fb = batcher.submit(b, np.ones((1, 1), np.float32))
    closer = threading.Thread(target=batcher.close, args=(5,))
    closer.start()
    assert fa.result(timeout=5).tolist() == [[1.0]] and fb.result(timeout=5).tolist() == [[1.0]]
    a.release()
    b.release()
    closer.join(5)
    assert not closer.is_alive()
    with pytest.raises(Overloaded, match="stopping"):
        batcher.admit()


def test_a_model_failure_reaches_the_requests_and_the_thread_goes_on():
    predictor = FakePredictor()
    batcher = Batcher("m", predictor, max_batch=2, max_delay=0.0, queue_size=4)  # type: ignore[arg-type]
    predictor.fail = True
    with batcher.admit() as slot:
        bad = batcher.submit(slot, np.ones((1, 2), np.float32))
        with pytest.raises(RuntimeError, match="session failed"):
            bad.result(timeout=5)
    with batcher.admit() as slot:
        assert batcher.submit(slot, np.ones((1, 2), np.float32)).result(timeout=5).tolist() == [[2.0]]
    batcher.close(timeout=5)


def test_a_cancelled_request_does_not_stop_the_batch_or_the_thread():
    """A request whose waiter is cancelled (client gone, grace period over) while its batch runs: the others
    of the batch get their results and the thread serves the next batch."""
    predictor = FakePredictor(delay=0.3)
    batcher = Batcher("m", predictor, max_batch=2, max_delay=0.05, queue_size=4)  # type: ignore[arg-type]
    a, b = batcher.admit(), batcher.admit()
    gone = batcher.submit(a, np.ones((1, 2), np.float32))
    kept = batcher.submit(b, np.full((1, 2), 2, np.float32))
    time.sleep(0.15)  # the batch is running
    gone.cancel()
    assert kept.result(timeout=5).tolist() == [[4.0]]
    with batcher.admit() as slot:
        assert batcher.submit(slot, np.ones((1, 2), np.float32)).result(timeout=5).tolist() == [[2.0]]
    a.release()
    b.release()
    batcher.close(timeout=5)


def test_every_model_series_is_there_before_its_first_request():
    """A replica that has not run a batch yet still shows each model's series (at zero) on /metrics."""
    from edgecnn.serving.metrics import ServeMetrics

    metrics = ServeMetrics()
    assert b'model="shapes"' not in metrics.render()
    metrics.add_model("shapes")
    text = metrics.render().decode()
    for line in (
        'edgecnn_batch_size_count{model="shapes"} 0.0',
        'edgecnn_inference_seconds_count{model="shapes"} 0.0',
        'edgecnn_images_total{model="shapes"} 0.0',
        'edgecnn_queue_depth{model="shapes"} 0.0',
    ):
        assert line in text, line
