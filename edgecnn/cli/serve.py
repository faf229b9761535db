"""``serve``: models as an Open Inference Protocol (KServe v2) HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer

from edgecnn.cli.app import app, handle_errors
from edgecnn.cli.options import (
    FallbackOption,
    Provider,
    ProviderOption,
    ThreadsOption,
    WorkersOption,
    api_options,
)


@app.command()
@handle_errors
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="MODEL",
            help="Models to serve, each a path (named after the file) or NAME=PATH [default: the shipped model].",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the models to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8000,
    max_batch: Annotated[
        int, typer.Option(help="Images per model run, and the most one request may send.")
    ] = 32,
    max_delay_ms: Annotated[
        float, typer.Option(help="How long the first request of a batch waits for others (ms).")
    ] = 5.0,
    queue_size: Annotated[
        int, typer.Option(help="Requests held per model; beyond it, 503 with Retry-After at once.")
    ] = 256,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require 'Authorization: Bearer KEY' on every route but health [default: $EDGECNN_API_KEY].",
            show_default=False,
        ),
    ] = None,
    provider: ProviderOption = Provider.auto,
    fallback: FallbackOption = False,
    threads: ThreadsOption = None,
    workers: WorkersOption = None,
    max_body_mb: Annotated[float, typer.Option(help="The largest request body (MB); larger: 413.")] = 16.0,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on Ray Serve: auto (the running cluster), local (start one on this machine) or "
            "HOST:PORT; the same routes, batching through Ray Serve's (docs/SERVE.md).",
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="With --ray: replicas, each holding the models [default: 1].", show_default=False),
    ] = None,
    autoscale: Annotated[
        str | None,
        typer.Option(metavar="MIN-MAX", help="With --ray: let Ray Serve scale between MIN and MAX replicas."),
    ] = None,
) -> None:
    """Serve models over HTTP (Open Inference Protocol, as Triton and KServe): dynamic batching, health,
    Prometheus /metrics; SIGTERM or Ctrl-C finishes the requests in flight and exits 0 (docs/SERVE.md)."""
    options = api_options(locals(), drop=("models",))
    from edgecnn import api

    api.serve(models or [], **options)
