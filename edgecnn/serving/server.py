"""Running the application on uvicorn: everything is checked and the socket bound before the server starts;
models load in the background (live at once, ready after each warm-up batch); SIGTERM and Ctrl-C stop
accepting, finish the requests in flight, run what the batchers hold, and return normally."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from starlette.applications import Starlette

from edgecnn.core.decode import default_workers
from edgecnn.core.errors import ConfigError
from edgecnn.serving.app import ServingState, build_app
from edgecnn.serving.config import ServeConfig
from edgecnn.serving.metrics import ServeMetrics
from edgecnn.serving.registry import Registry, resolve_sources

logger = logging.getLogger("edgecnn")
#: Seconds the requests in flight get to finish after a stop signal.
GRACE_SECONDS = 30


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, with SIGINT and SIGTERM as a graceful stop and nothing after: uvicorn re-raises
    the signal once it has stopped, which would make a clean stop look like a crash to the caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first, then let the connections already accepted read what their clients sent:
        # a request that has arrived starts (and is finished) before uvicorn closes the idle connections.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await asyncio.sleep(0.05)
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a ``ConfigError`` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class Server:
    """An ``edgecnn serve`` server: created (checked and bound), then ``run`` until stopped.

    Raises:
        ConfigError, ModelFileError, ProviderError: At creation, before anything starts.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        sources = resolve_sources(config)
        self.metrics = ServeMetrics()
        self.registry = Registry(config, sources, self.metrics)
        self.socket = bind(config.host, config.port)
        self.port: int = self.socket.getsockname()[1]
        self._pool = ThreadPoolExecutor(
            config.workers or default_workers(), thread_name_prefix="edgecnn-decode"
        )
        self.state = ServingState(self.registry, self.metrics, self._pool)
        app = build_app(self.state)
        app.router.lifespan_context = self._lifespan
        self._uvicorn = _Uvicorn(
            uvicorn.Config(
                app,
                log_config=None,  # the program configures logging, not the library
                log_level="warning",
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=GRACE_SECONDS,
            )
        )

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        loader = threading.Thread(
            target=self.registry.load, args=(self._fail,), name="edgecnn-load", daemon=True
        )
        loader.start()
        yield
        self.registry.close()  # after uvicorn has finished the requests in flight
        self._pool.shutdown(wait=True)
        answered = ", ".join(f"{code}: {n}" for code, n in sorted(self.metrics.answered().items()))
        logger.info(f"stopped; requests answered by status: {answered or 'none'}")

    def _fail(self, exc: Any) -> None:
        self._uvicorn.should_exit = True

    def run(self) -> None:
        """Serve until SIGTERM, Ctrl-C or ``stop``; then finish the requests in flight and return.

        Raises:
            EdgecnnError: A model failed to load (the server stopped).
        """
        names = ", ".join(f"{s.name}={s.source.path}" for s in self.registry.models.values())
        logger.info(
            f"serving {names} on {self.url} (max batch {self.config.max_batch}, "
            f"max delay {self.config.max_delay_ms:g} ms, queue {self.config.queue_size}); "
            f"API key {'required' if self.config.api_key else 'off'}"
        )
        if self.config.exposed_without_key:
            logger.warning(
                f"warning: listening on {self.config.host} with no API key: anyone who can reach port "
                f"{self.port} can use the models; set --api-key or EDGECNN_API_KEY"
            )
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self.socket.close()
        if self.registry.failure is not None:
            raise self.registry.failure

    def stop(self) -> None:
        """Ask the server to stop gracefully (from any thread)."""
        self._uvicorn.should_exit = True


def serve(config: ServeConfig) -> None:
    """Check everything, bind, serve until stopped (see ``Server``)."""
    Server(config).run()
