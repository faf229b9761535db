"""``serve``: models as an Open Inference Protocol (KServe v2) HTTP service (docs/SERVE.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgecnn.api.options import PathLike, check_options, config_fields
from edgecnn.core.errors import ConfigError


def serve(
    models: PathLike | Sequence[PathLike] | None = None,
    ray: str | None = None,
    replicas: int | None = None,
    autoscale: str | tuple[int, int] | None = None,
    **options: Any,
) -> None:
    """Serve models over HTTP until SIGTERM or Ctrl-C (``edgecnn serve``); then finish the requests in
    flight and return.

    Args:
        models: A model or a list of them, each a path (named after the file: ``shapes-cnn.onnx`` is served
            as ``shapes-cnn``) or ``name=path``; None or empty: the shipped default model.
        **options: Any field of ``ServeConfig``: ``host`` (127.0.0.1), ``port`` (8000), ``max_batch``,
            ``max_delay_ms``, ``queue_size``, ``api_key`` (default ``$EDGECNN_API_KEY``), ``provider``,
            ``fallback``, ``threads``, ``workers``, ``max_body_mb``.
        ray: Run the same application on Ray Serve: ``local`` (a Ray of this machine), ``auto`` (the
            running cluster) or ``HOST:PORT``; None: one process on this machine.
        replicas: With ``ray``: a fixed number of replicas.
        autoscale: With ``ray``: ``"MIN-MAX"`` (or a pair), Ray Serve's autoscaling between them.

    Raises:
        ConfigError: An unknown option, a bad value, or an address it cannot listen on.
        ModelFileError: A model file cannot be read.
        ContractError: A model has no usable edgecnn contract.
        ProviderError: A model cannot run on the requested provider.
        DependencyError: ``ray`` is given and Ray Serve is not installed.

    All are raised before the server answers, except a model's load failure after health checks start
    answering: that stops the server and is raised then.
    """
    from edgecnn.serving.config import API_KEY_ENV, ServeConfig, parse_model
    from edgecnn.serving.server import Server

    check_options(options, config_fields(ServeConfig) - {"models"}, "serve")
    items = [] if models is None else [models] if isinstance(models, (str, os.PathLike)) else list(models)
    bad = [m for m in items if not isinstance(m, (str, os.PathLike))]
    if bad:
        raise ConfigError(f"models are paths or name=path (str or Path), got {bad[0]!r}")
    if options.get("api_key") is None:
        options["api_key"] = os.environ.get(API_KEY_ENV) or None
    config = ServeConfig(models=tuple(parse_model(m) for m in items), **options)
    if ray is None:
        if replicas is not None or autoscale is not None:
            raise ConfigError("--replicas and --autoscale go with --ray")
        Server(config).run()
        return
    from edgecnn.serving.ray_serve import RayServeOptions, parse_autoscale, serve_on_ray

    scale = parse_autoscale(autoscale) if isinstance(autoscale, str) else autoscale
    serve_on_ray(config, RayServeOptions(address=ray, replicas=replicas, autoscale=scale))
