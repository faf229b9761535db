"""A bounded HTTP load generator for servers that speak the Open Inference Protocol (KServe v2).

It knows only the protocol: ``GET /v2/health/ready``, ``GET /v2/models/{name}`` (metadata),
``POST /v2/models/{name}/infer`` (JSON, or the binary tensor data extension) and the plain
``POST /v2/models/{name}/classify`` route. Two modes, both stopping by themselves:

- closed loop (``closed_loop``): ``concurrency`` clients, each sending its next request when the last one is
  answered, for a fixed time or request count; throughput and latency percentiles;
- open loop (``open_loop``): arrivals at a fixed rate whatever the server does, to see how it refuses work it
  cannot take (503 with ``Retry-After``).

Every request sent ends as exactly one status code or one client-side failure, so the counts always add up.
The generator's own CPU time (process user + system over wall time, in cores) is part of every result: on a
small machine it shares the cores with the server, and the reader should see how much it took.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

BINARY_HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Call:
    """One prepared request: sent as is, as often as the run needs."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    images: int = 1  # images the request carries, for images/s


@dataclass
class LoadResult:
    """What one run measured. ``sent`` == sum of ``statuses`` + sum of ``failures`` (+ ``skipped`` unsent)."""

    mode: str
    concurrency: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    sent: int = 0
    skipped: int = 0  # open loop: arrivals that found every connection busy and were not sent
    images_ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # no status: timeout, connection reset...
    missing_retry_after: int = 0  # 503s without a Retry-After header
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests with status 200
    rate: float | None = None

    @property
    def accounted(self) -> bool:
        return self.sent == sum(self.statuses.values()) + sum(self.failures.values())

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200) + sum(self.failures.values())

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000
        q = (lambda p: round(float(np.percentile(lat, p)), 2)) if lat.size else (lambda p: None)
        ok = self.statuses.get(200, 0)
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            **({"rate_per_s": self.rate, "skipped": self.skipped} if self.rate is not None else {}),
            "wall_s": round(self.wall_s, 3),
            "requests": self.sent,
            "ok": ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": dict(self.failures),
            "missing_retry_after": self.missing_retry_after,
            "accounted": self.accounted,
            "requests_per_s": round(ok / self.wall_s, 2) if self.wall_s else 0.0,
            "images_per_s": round(self.images_ok / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_ms": q(50),
            "p95_ms": q(95),
            "p99_ms": q(99),
            "generator_cpu_cores": round(self.cpu_s / self.wall_s, 3) if self.wall_s else 0.0,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send(session: aiohttp.ClientSession, base: str, call: Call, result: LoadResult) -> None:
    result.sent += 1
    t = time.perf_counter()
    try:
        async with session.request(
            call.method, base + call.path, data=call.body, headers=dict(call.headers)
        ) as r:
            await r.read()
            status = r.status
            retry_after = r.headers.get("Retry-After")
    except asyncio.TimeoutError:
        result.failures["timeout"] += 1
        return
    except aiohttp.ClientError as exc:
        result.failures[type(exc).__name__] += 1
        return
    result.statuses[status] += 1
    if status == 200:
        result.latencies.append(time.perf_counter() - t)
        result.images_ok += call.images
    elif status == 503 and not retry_after:
        result.missing_retry_after += 1


def _session(connections: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), skip_auto_headers=("User-Agent",)
    )


async def _closed(
    base: str, calls: Sequence[Call], concurrency: int, duration_s: float | None, requests: int | None,
    timeout_s: float,
) -> LoadResult:  # fmt: skip
    result = LoadResult("closed", concurrency)
    counter = iter(range(requests if requests is not None else 2**62))
    async with _session(concurrency, timeout_s) as session:
        cpu, t0 = _cpu_seconds(), time.perf_counter()
        deadline = t0 + duration_s if duration_s is not None else float("inf")

        async def client() -> None:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                await _send(session, base, calls[i % len(calls)], result)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.wall_s, result.cpu_s = time.perf_counter() - t0, _cpu_seconds() - cpu
    return result


def closed_loop(
    base: str,
    calls: Sequence[Call],
    concurrency: int,
    duration_s: float | None = None,
    requests: int | None = None,
    timeout_s: float = 30.0,
) -> LoadResult:
    """``concurrency`` clients on as many keep-alive connections, each sending the next call when answered.

    Args:
        base: ``http://host:port``.
        calls: Requests sent in turn.
        duration_s: Stop sending after this long (requests in flight are awaited, each bounded by timeout_s).
        requests: Or stop after this many requests.
        timeout_s: Per-request limit; a request that exceeds it counts as a "timeout" failure.
    """
    if duration_s is None and requests is None:
        raise ValueError("give duration_s or requests: a run must stop by itself")
    return asyncio.run(_closed(base, calls, concurrency, duration_s, requests, timeout_s))


async def _open(
    base: str, calls: Sequence[Call], rate: float, duration_s: float, max_in_flight: int, timeout_s: float,
    pid: int | None,
) -> tuple[LoadResult, int]:  # fmt: skip
    result = LoadResult("open", max_in_flight, rate=rate)
    free = asyncio.Semaphore(max_in_flight)
    peak_rss = 0
    async with _session(max_in_flight, timeout_s) as session:
        cpu, t0 = _cpu_seconds(), time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()

        async def one(call: Call) -> None:
            try:
                await _send(session, base, call, result)
            finally:
                free.release()

        n = int(rate * duration_s)
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if pid is not None and i % max(1, int(rate / 20)) == 0:  # about 20 samples a second
                peak_rss = max(peak_rss, memory_kib(pid).get("VmRSS", 0))
            if free.locked():
                result.skipped += 1
                continue
            await free.acquire()
            task = asyncio.create_task(one(calls[i % len(calls)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        result.wall_s, result.cpu_s = time.perf_counter() - t0, _cpu_seconds() - cpu
    if pid is not None:
        peak_rss = max(peak_rss, memory_kib(pid).get("VmRSS", 0))
    return result, peak_rss


def open_loop(
    base: str,
    calls: Sequence[Call],
    rate: float,
    duration_s: float,
    max_in_flight: int = 256,
    timeout_s: float = 30.0,
    pid: int | None = None,
) -> tuple[LoadResult, int]:
    """Arrivals at ``rate`` per second for ``duration_s``, whatever the server answers.

    An arrival that finds ``max_in_flight`` requests unanswered is counted as ``skipped`` instead of queueing
    in the client (which would turn the open loop back into a closed one).

    Returns:
        The result and, when ``pid`` is given, the largest resident set size of that process sampled during
        the run (KiB; 0 without ``pid``).
    """
    return asyncio.run(_open(base, calls, rate, duration_s, max_in_flight, timeout_s, pid))


# --- requests of the Open Inference Protocol ------------------------------------------------------------


def infer_bytes(model: str, input_name: str, images: Sequence[bytes]) -> Call:
    """``infer`` with encoded images as one BYTES tensor of shape [N], in the binary tensor data extension
    (each element: 4-byte little-endian length, then the bytes)."""
    raw = b"".join(len(b).to_bytes(4, "little") + b for b in images)
    tensor = {
        "name": input_name,
        "shape": [len(images)],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(raw)},
    }
    return _binary(model, [tensor], raw, len(images))


def infer_tensor(model: str, input_name: str, batch: np.ndarray, datatype: str) -> Call:
    """``infer`` with the model's own input tensor (NHWC pixels), as binary data."""
    raw = np.ascontiguousarray(batch).tobytes()
    tensor = {
        "name": input_name,
        "shape": list(batch.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    return _binary(model, [tensor], raw, int(batch.shape[0]))


def _binary(model: str, tensors: list[dict[str, Any]], raw: bytes, images: int) -> Call:
    header = json.dumps({"inputs": tensors}, separators=(",", ":")).encode()
    return Call(
        "POST",
        f"/v2/models/{model}/infer",
        header + raw,
        (("Content-Type", "application/octet-stream"), (BINARY_HEADER, str(len(header)))),
        images,
    )


def classify_raw(model: str, image: bytes, content_type: str = "image/jpeg") -> Call:
    """The plain route: the image file as the request body."""
    return Call("POST", f"/v2/models/{model}/classify", image, (("Content-Type", content_type),))


def health() -> Call:
    """The readiness route: HTTP and routing only, no model work."""
    return Call("GET", "/v2/health/ready", images=0)


# --- the server under test -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, KiB, from /proc (empty where unavailable)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def get(base: str, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    """One GET (status, parsed JSON body or None), outside any run."""

    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            async with s.get(base + path) as r:
                body = await r.read()
                try:
                    return r.status, json.loads(body)
                except ValueError:
                    return r.status, None

    return asyncio.run(go())


def wait_ready(base: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 120.0) -> float:
    """Poll ``/v2/health/ready`` until 200; seconds waited. Raises RuntimeError on timeout or early exit."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was ready")
        try:
            if get(base, "/v2/health/ready", timeout_s=2.0)[0] == 200:
                return time.perf_counter() - t0
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


@contextmanager
def running(cmd: Sequence[str], port: int, timeout_s: float = 120.0, **popen: Any) -> Iterator[Server]:
    """Start a server process listening on 127.0.0.1:``port``, wait until ready, stop it (SIGTERM) on exit.

    Its output goes to a scratch file (a pipe nobody reads would fill and stall the server); the last lines
    are in the error when it does not become ready.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, **popen)
        server = Server(proc, f"http://127.0.0.1:{port}")
        try:
            try:
                server.ready_s = wait_ready(server.base, proc, timeout_s)
            except RuntimeError as exc:
                proc.kill()
                proc.wait()
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{exc}: {' '.join(cmd)}\n{tail}") from None
            yield server
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            server.returncode = proc.returncode


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    ready_s: float = 0.0
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
