"""The server's Prometheus metrics, on a registry of its own (two servers in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Request latency buckets (seconds): sub-millisecond health checks to multi-second overloaded batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServeMetrics:
    """Requests and errors by kind, latency, batch sizes, queue depth and model load time."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "edgecnn_requests", "HTTP requests by route and status code", ["route", "code"], registry=r
        )
        self.errors = Counter("edgecnn_errors", "Refused or failed requests by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "edgecnn_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "edgecnn_batch_size", "Images per model run", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "edgecnn_inference_seconds",
            "Seconds per model run",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "edgecnn_queue_depth", "Requests held per model (decoding or waiting)", ["model"], registry=r
        )
        self.load_seconds = Gauge(
            "edgecnn_model_load_seconds",
            "Seconds to load a model and run its warm-up batch",
            ["model"],
            registry=r,
        )
        self.images = Counter("edgecnn_images", "Images classified per model", ["model"], registry=r)

    def add_model(self, name: str) -> None:
        """Every per-model series from the start, at zero: a scrape shows each model (on each replica) before
        its first request, and rates have a starting point."""
        self.queue_depth.labels(name).set(0)
        self.batch_size.labels(name)
        self.inference.labels(name)
        self.images.labels(name)

    def observe_request(self, route: str, code: int, seconds: float, kind: str | None = None) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)
        if kind is not None:
            self.errors.labels(kind).inc()

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.inference.labels(model).observe(seconds)
        self.images.labels(model).inc(size)

    def answered(self) -> dict[str, int]:
        """Requests answered so far by status code, over every route."""
        counts: dict[str, int] = {}
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    code = sample.labels["code"]
                    counts[code] = counts.get(code, 0) + int(sample.value)
        return counts

    def render(self) -> bytes:
        return generate_latest(self.registry)
