"""The serving load generator (benchmarks/loadgen.py) against a live server on 127.0.0.1: a short closed-loop
run is answered without errors and every request is accounted for; an open-loop overload is answered with
200 or 503 (with Retry-After) only, and the server answers a request afterwards."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import loadgen  # noqa: E402

pytest.importorskip("aiohttp")

MODEL = ROOT / "models" / "shapes-cnn.int8.onnx"

# A minimal Open Inference Protocol server: ready, model metadata, binary infer with a bounded number of
# requests in flight (beyond it 503 with Retry-After), 20 ms of work per request.
STAND_IN = """
import asyncio, json, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LIMIT = int(sys.argv[2])
in_flight = 0

async def ready(request):
    return Response(status_code=200)

async def metadata(request):
    return JSONResponse({"name": "shapes", "inputs": [{"name": "image", "datatype": "FP32",
                         "shape": [-1, 64, 64, 3]}], "outputs": [{"name": "probs"}]})

async def infer(request):
    global in_flight
    if in_flight >= LIMIT:
        return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "1"})
    in_flight += 1
    try:
        body = await request.body()
        size = int(request.headers["Inference-Header-Content-Length"])
        header = json.loads(body[:size])
        n = header["inputs"][0]["shape"][0]
        await asyncio.sleep(0.02)
        return JSONResponse({"model_name": "shapes", "outputs": [{"name": "probs", "datatype": "FP32",
                             "shape": [n, 3], "data": [1 / 3] * (3 * n)}]})
    finally:
        in_flight -= 1

app = Starlette(routes=[Route("/v2/health/ready", ready), Route("/v2/models/shapes", metadata),
                        Route("/v2/models/shapes/infer", infer, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _real_server() -> bool:
    edgecnn = Path(sys.executable).with_name("edgecnn")
    try:
        return (
            subprocess.run([str(edgecnn), "serve", "--help"], capture_output=True, timeout=60).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[loadgen.Server]:
    port = loadgen.free_port()
    if _real_server():
        cmd = [
            str(Path(sys.executable).with_name("edgecnn")),
            "serve",
            f"shapes={MODEL}",
            "--port",
            str(port),
            "--max-batch",
            "8",
            "--max-delay-ms",
            "2",
            "--queue-size",
            "16",
            "--workers",
            "1",
            "--threads",
            "1",
            "--provider",
            "cpu",
        ]
    else:
        script = tmp_path_factory.mktemp("standin") / "server.py"
        script.write_text(STAND_IN)
        cmd = [sys.executable, str(script), str(port), "16"]
    with loadgen.running(cmd, port, timeout_s=90) as s:
        yield s


def _jpeg(seed: int, size: int = 320) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def calls(server: loadgen.Server) -> list[loadgen.Call]:
    status, meta = loadgen.get(server.base, "/v2/models/shapes")
    assert status == 200, meta
    name = meta["inputs"][0]["name"]
    return [loadgen.infer_bytes("shapes", name, [_jpeg(i)]) for i in range(8)]


def test_closed_loop_answers_every_request(server: loadgen.Server, calls: list[loadgen.Call]) -> None:
    result = loadgen.closed_loop(server.base, calls, concurrency=8, duration_s=3.0, timeout_s=10)
    summary = result.summary()
    assert result.accounted, summary
    assert result.sent > 8, summary  # every client sent more than one request on its connection
    assert summary["errors"] == 0, summary
    assert result.statuses == {200: result.sent}, summary
    assert len(result.latencies) == result.sent and result.images_ok == result.sent
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert result.wall_s < 3.0 + 10, summary  # stopped by itself, bounded
    assert 0 < summary["generator_cpu_cores"] <= loadgen.cores() + 0.5


def test_closed_loop_request_count(server: loadgen.Server, calls: list[loadgen.Call]) -> None:
    result = loadgen.closed_loop(server.base, calls, concurrency=4, requests=23, timeout_s=10)
    assert result.sent == 23 and result.statuses == {200: 23}


def test_overload_is_refused_with_503_and_the_server_keeps_serving(
    server: loadgen.Server, calls: list[loadgen.Call]
) -> None:
    result, peak_rss = loadgen.open_loop(
        server.base, calls, rate=1500, duration_s=2.0, max_in_flight=64, timeout_s=10, pid=server.pid
    )
    summary = result.summary()
    assert result.accounted, summary
    assert result.sent + result.skipped == 3000, summary
    assert set(result.statuses) <= {200, 503} and not result.failures, summary
    assert result.statuses[503] > 0, summary  # it really was overloaded
    assert result.statuses[200] > 0, summary
    assert result.missing_retry_after == 0, summary
    assert peak_rss > 0 and loadgen.memory_kib(server.pid)["VmHWM"] >= peak_rss
    after = loadgen.closed_loop(server.base, calls[:1], concurrency=1, requests=3, timeout_s=10)
    assert after.statuses == {200: 3}


def test_a_run_must_be_bounded() -> None:
    with pytest.raises(ValueError, match="stop by itself"):
        loadgen.closed_loop("http://127.0.0.1:9", [loadgen.health()], concurrency=1)


def test_refused_connections_are_counted_not_lost() -> None:
    base = f"http://127.0.0.1:{loadgen.free_port()}"  # nothing listens there
    result = loadgen.closed_loop(base, [loadgen.health()], concurrency=2, requests=6, timeout_s=2)
    assert result.sent == 6 and sum(result.failures.values()) == 6 and result.accounted
    assert result.summary()["errors"] == 6
