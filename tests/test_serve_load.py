"""The serving load generator (benchmarks/loadgen.py) against a live server on 127.0.0.1: a short closed-loop
run is answered without errors and every request is accounted for; an open-loop overload is answered with
200 or 503 (with Retry-After) only, and the server answers a request afterwards."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("aiohttp")  # the dev extra
pytest.importorskip("uvicorn")  # the serve extra
sys.path.insert(0, str(ROOT / "benchmarks"))
import loadgen  # noqa: E402

MODEL = ROOT / "models" / "shapes-cnn.int8.onnx"

# edgecnn's server in a process of its own, through the library function the `serve` command calls: a queue
# small enough that the overload below is refused, batches of up to 8 within 2 ms.
SERVER = """
import sys
from edgecnn.serving.config import ServeConfig, parse_model
from edgecnn.serving.server import serve

serve(ServeConfig(models=(parse_model(sys.argv[1]),), port=int(sys.argv[2]), provider="cpu", max_batch=8,
                  max_delay_ms=2, queue_size=16, workers=1, threads=1))
"""


@pytest.fixture(scope="module")
def server() -> Iterator[loadgen.Server]:
    port = loadgen.free_port()
    with loadgen.running(
        [sys.executable, "-c", SERVER, f"shapes={MODEL}", str(port)], port, timeout_s=90
    ) as s:
        yield s
    assert s.returncode == 0  # SIGTERM: a graceful stop


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
