"""``edgecnn serve``: models as an Open Inference Protocol (KServe v2) HTTP service, with dynamic batching,
health, Prometheus metrics and backpressure (docs/SERVE.md). Starlette on uvicorn; nothing below imports it."""
