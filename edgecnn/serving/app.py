"""The Starlette application: the Open Inference Protocol's routes, a plain classify route and /metrics.

Every route but health needs the bearer token when one is set. A request's body is read up to the size limit,
parsed and decoded on the decoding pool, run on its model's batcher thread; the event loop only moves bytes.
Whatever a request gets wrong comes back as a 4xx ``{"error": "..."}``; a bug is logged here and answered
500 without its traceback. No route reads or writes a file.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgecnn.core.version import __version__
from edgecnn.serving.errors import BodyTimeout, BodyTooLarge, Overloaded, RequestError, Unauthorized
from edgecnn.serving.inputs import decode_images, model_metadata, prepare_infer, read_upload
from edgecnn.serving.metrics import ServeMetrics
from edgecnn.serving.registry import Registry
from edgecnn.serving.tensors import BINARY_TYPE, HEADER_LENGTH, JSON_TYPE, encode_infer_response

logger = logging.getLogger("edgecnn")
Handler = Callable[[Request], Awaitable[Response]]

#: A body not received within this many seconds is refused (408): a stalled upload cannot hold a queue slot.
BODY_TIMEOUT_S = 30.0


class ServingState:
    """What the routes share: the models, the metrics, the decoding pool and the limits."""

    def __init__(self, registry: Registry, metrics: ServeMetrics, pool: ThreadPoolExecutor) -> None:
        self.registry = registry
        self.metrics = metrics
        self.pool = pool
        self.config = registry.config

    def check_key(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise Unauthorized("missing or wrong API key; send the header 'Authorization: Bearer <key>'")

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (by its Content-Length, or as it comes)."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"request body of {int(declared)} bytes is over the {limit}-byte limit")
        chunks = []
        size = 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"request body is over the {limit}-byte limit")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise BodyTimeout(f"request body not received within {BODY_TIMEOUT_S:.0f} s") from None
        return b"".join(chunks)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)


def error_response(exc: RequestError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


def build_app(state: ServingState) -> Starlette:
    """The application over ``state``; the server starts and stops what ``state`` holds."""
    registry = state.registry

    def endpoint(route: str, handler: Handler, auth: bool = True) -> Handler:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            kind = None
            try:
                if auth:
                    state.check_key(request)
                response = await handler(request)
            except RequestError as exc:
                response, kind = error_response(exc), exc.kind
            except ClientDisconnect:
                response, kind = Response(status_code=400), "disconnected"
            except Exception:  # a bug: its traceback goes to the log, never to the client
                logger.exception(f"internal error on {request.method} {request.url.path}")
                response = JSONResponse({"error": "internal server error"}, status_code=500)
                kind = "internal"
            state.metrics.observe_request(route, response.status_code, time.perf_counter() - started, kind)
            return response

        return wrapped

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        is_ready = registry.all_ready.is_set()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "edgecnn", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def metadata(request: Request) -> Response:
        model, _ = registry.ready_model(request.path_params["name"], request.path_params.get("version"))
        return JSONResponse(model_metadata(request.path_params["name"], model))

    async def model_ready(request: Request) -> Response:
        served = registry.get(request.path_params["name"], request.path_params.get("version"))
        is_ready = served.ready.is_set()
        return JSONResponse({"name": served.name, "ready": is_ready}, status_code=200 if is_ready else 503)

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        model, batcher = registry.ready_model(name, request.path_params.get("version"))
        with batcher.admit() as slot:  # before the body is read: the queue bounds the bodies held too
            body = await state.read_body(request)
            prepared = await state.run(
                prepare_infer, body, request.headers.get(HEADER_LENGTH), model, batcher.max_batch
            )
            probs = await batcher.run(slot, prepared.images)
        content, header = encode_infer_response(name, prepared.request.id, prepared.outputs(model, probs))
        if header is None:
            return Response(content, media_type=JSON_TYPE)
        return Response(content, media_type=BINARY_TYPE, headers={HEADER_LENGTH: str(header)})

    async def classify(request: Request) -> Response:
        from edgecnn.apps.outputs import Row

        model, batcher = registry.ready_model(request.path_params["name"])
        top_k = _top_k(request.query_params.get("top_k", "1"), len(model.labels))
        with batcher.admit() as slot:  # before the body is read: the queue bounds the bodies held too
            body = await state.read_body(request)
            data, filename = await read_upload(request.headers, body, state.config.max_body_bytes)
            images = await state.run(decode_images, [data], model.contract.input)
            probs = await batcher.run(slot, images)
        top = model.predictor.top_k(np.asarray(probs), top_k)[0]
        row = Row(filename, "ok", label=top[0][0], confidence=top[0][1], top_k=top)
        return JSONResponse(row.to_dict())

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    model_routes = [
        ("", metadata, "GET", "metadata"),
        ("/ready", model_ready, "GET", "model_ready"),
        ("/infer", infer, "POST", "infer"),
    ]
    routes = [
        Route("/v2/health/live", endpoint("live", live, auth=False), methods=["GET"]),
        Route("/v2/health/ready", endpoint("ready", ready, auth=False), methods=["GET"]),
        Route("/v2", endpoint("server_metadata", server_metadata), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics), methods=["GET"]),
        Route("/v2/models/{name}/classify", endpoint("classify", classify), methods=["POST"]),
    ]
    for suffix, handler, method, route in model_routes:
        wrapped = endpoint(route, handler)
        for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes.append(Route(prefix + suffix, wrapped, methods=[method]))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as JSON errors too."""
    assert isinstance(exc, HTTPException)
    detail = f"{exc.detail}: {request.method} {request.url.path}"
    return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)


def _top_k(text: str, classes: int) -> int:
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise RequestError(f"top_k must be a whole number of at least 1, got {text!r}")
    return min(k, classes)
