"""`serve --ray`: two Ray Serve replicas against one, on the same cores, with the shipped ImageNet default model.

For each replica count a local Ray is started on 127.0.0.1 with every usable core, the application deployed
(`RayServer`, the call behind `edgecnn serve --ray local --replicas N`), and a closed-loop load generator in
this process (aiohttp, CONCURRENCY requests always in flight) posts the same 640x480 JPEG to the classify
route for DURATION seconds after a warm-up. It reports requests/s (one image each), p50/p95/p99 latency,
errors by status, and the CPU seconds the generator itself used. On a machine of two cores the replicas share
those two cores with the proxy, the controller and the generator: the ratio is what it is there, not a
scaling claim (each replica reserves one CPU in Ray; on a cluster each would have its own).

    python benchmarks/serve_ray.py [--duration 8] [--concurrency 16] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import write_result

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_worker_niceness", "0")


def photo() -> bytes:
    """A 640x480 JPEG with photo-like content (a noisy gradient and a disc)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    t = ((xx + yy) / 1120.0)[..., None]
    img = np.array([40, 90, 200]) * t + np.array([230, 200, 60]) * (1 - t) + rng.normal(0, 6, (480, 640, 1))
    image = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    ImageDraw.Draw(image).ellipse((220, 140, 420, 340), fill=(200, 30, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


async def closed_loop(
    url: str, body: bytes, concurrency: int, warmup: float, duration: float
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    measuring = asyncio.Event()
    stop = asyncio.Event()

    async def worker(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    status = str(response.status)
            except aiohttp.ClientError as exc:
                status = type(exc).__name__
            if measuring.is_set() and not stop.is_set():
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        measuring.set()
        await asyncio.sleep(duration)
        stop.set()
        seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await asyncio.gather(*tasks)
    ok = statuses.get("200", 0)
    p50, p95, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 95, 99))
    return {
        "requests_per_s": round(ok / seconds, 2),
        "ok": ok,
        "errors": {k: v for k, v in statuses.items() if k != "200"},
        "latency_ms": {"p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1)},
        "seconds": round(seconds, 2),
        "generator_cpu_s": round(cpu, 2),
    }


def measure(model: Path, replicas: int, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    from edgecnn.serving.config import ModelSource, ServeConfig
    from edgecnn.serving.ray_serve import RayServeOptions, RayServer

    config = ServeConfig(models=(ModelSource("model", model),), port=0, max_batch=16, max_delay_ms=5)
    server = RayServer(config, RayServeOptions(address="local", replicas=replicas))
    started = time.perf_counter()
    server.start()
    start_s = time.perf_counter() - started
    try:
        url = f"{server.url}/v2/models/model/classify"
        result = asyncio.run(closed_loop(url, body, args.concurrency, args.warmup, args.duration))
    finally:
        server.stop()
    print(f"{replicas} replica(s): {result}")
    return {"replicas": replicas, "start_s": round(start_s, 1), **result}


def main() -> None:
    from edgecnn.core.shipped import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped ImageNet model")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    model = args.model or default_model_path()
    if model is None:
        raise SystemExit("no shipped default model; pass --model")
    body = photo()
    runs = [measure(model, replicas, args, body) for replicas in (1, 2)]
    one, two = runs
    ratio = two["requests_per_s"] / one["requests_per_s"] if one["requests_per_s"] else None
    cores = len(os.sched_getaffinity(0))
    print(f"two replicas / one: {ratio:.2f}x on {cores} usable cores" if ratio else "no requests served")
    write_result(
        "serve_ray",
        {
            "model": str(model),
            "route": "POST /v2/models/{name}/classify, one 640x480 JPEG per request",
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "runs": runs,
            "two_over_one": round(ratio, 2) if ratio else None,
            "note": (
                f"{cores} usable cores shared by the replicas, Ray Serve's proxy and controller and the load "
                "generator: the ratio is what this machine gives, not a scaling claim"
            ),
        },
    )


if __name__ == "__main__":
    main()
