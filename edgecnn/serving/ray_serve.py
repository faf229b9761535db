"""``serve --ray``: the same application on Ray Serve, past one machine.

Each replica of one deployment holds every model (loaded and warmed up before Ray routes to it), the
Starlette application of ``serving.app`` (the same routes, codec, errors and metric names) and Ray Serve's own
batching (``@serve.batch``: ``max_batch`` images, ``max_delay_ms`` of waiting), which takes the place of the
in-process ``Batcher``. Ray Serve's HTTP proxy listens on ``host:port`` and spreads requests over the
replicas; ``replicas`` fixes their number, ``autoscale`` lets Ray Serve choose between a minimum and a
maximum. ``/metrics`` answers for the replica that served it (Ray Serve exports its own cluster metrics).

Ray is imported only here, and this module only when ``serve`` is given ``ray``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.core.decode import default_workers
from edgecnn.core.errors import ConfigError, DependencyError, EdgecnnError
from edgecnn.core.interrupts import SIGNALS
from edgecnn.runtime.model import Model
from edgecnn.serving.app import ServingState, build_app
from edgecnn.serving.batcher import Admission, Runner, Slot
from edgecnn.serving.config import ModelSource, ServeConfig
from edgecnn.serving.metrics import ServeMetrics
from edgecnn.serving.registry import Registry, resolve_sources
from edgecnn.serving.server import GRACE_SECONDS, bind

logger = logging.getLogger("edgecnn")
INSTALL_HINT = 'Ray Serve is not installed; install it with: pip install "edgecnn[ray]"'
#: The Ray Serve application and its one deployment.
APP_NAME = "edgecnn"
DEPLOYMENT = "edgecnn"
#: CPUs Ray reserves for each replica (its ONNX Runtime threads are ``threads``, as everywhere else).
REPLICA_CPUS = 1.0
_AUTOSCALE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")

#: A request as Ray Serve's batch queue holds it: the model's name and its float32 NHWC images.
Job = tuple[str, np.ndarray]


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN-MAX`` replicas, such as ``1-4``.

    Raises:
        ConfigError: Not two whole numbers, a minimum under 1, or a maximum under the minimum.
    """
    match = _AUTOSCALE.match(text)
    if match is None:
        raise ConfigError(f"autoscale must be MIN-MAX replicas, such as 1-4; got {text!r}")
    low, high = int(match[1]), int(match[2])
    if not 1 <= low <= high:
        raise ConfigError(f"autoscale {text!r}: the minimum must be at least 1 and at most the maximum")
    return low, high


@dataclass(frozen=True)
class RayServeOptions:
    """Where and how wide ``serve --ray`` runs.

    Attributes:
        address: ``local`` (a Ray of this machine, started and stopped here), ``auto`` (the running cluster)
            or a cluster address.
        replicas: A fixed number of replicas (None: one, or ``autoscale``).
        autoscale: ``(min, max)`` replicas, Ray Serve's autoscaling between them.
        num_cpus: The CPUs of a ``local`` Ray (None: all of this machine's).
    """

    address: str = "local"
    replicas: int | None = None
    autoscale: tuple[int, int] | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ConfigError("ray address is empty; give local, auto or a cluster address such as host:6379")
        if self.replicas is not None and self.autoscale is not None:
            raise ConfigError("give either replicas or autoscale, not both")
        if self.replicas is not None and self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, got {self.replicas}")
        if self.autoscale is not None:
            parse_autoscale(f"{self.autoscale[0]}-{self.autoscale[1]}")

    def scaling(self) -> dict[str, Any]:
        """The deployment's replica options for Ray Serve."""
        if self.autoscale is not None:
            low, high = self.autoscale
            return {"autoscaling_config": {"min_replicas": low, "max_replicas": high}}
        return {"num_replicas": self.replicas or 1}

    def describe(self) -> str:
        if self.autoscale is not None:
            return f"{self.autoscale[0]}-{self.autoscale[1]} replicas (autoscaling)"
        count = self.replicas or 1
        return f"{count} replica{'s' if count > 1 else ''}"


def import_serve() -> Any:
    """Ray Serve's module, or a ``DependencyError`` saying how to install it."""
    import importlib

    try:
        return importlib.import_module("ray.serve")
    except ImportError:
        raise DependencyError(INSTALL_HINT) from None


class ReplicaRunner:
    """A model's requests in one replica: a bounded count of requests held (beyond it, 503 at once, as the
    ``Batcher``), their images through the replica's ``@serve.batch`` queue."""

    def __init__(
        self,
        name: str,
        predict: Callable[[Job], Awaitable[np.ndarray]],
        max_batch: int,
        queue_size: int,
        on_depth: Callable[[int], None] = lambda depth: None,
    ) -> None:
        self.name = name
        self.max_batch = max_batch
        self.queue_size = queue_size
        self._predict = predict
        self._admission = Admission(
            name, queue_size, on_depth, stopping="the replica is stopping; retry shortly"
        )

    def admit(self) -> Slot:
        return self._admission.admit()

    async def run(self, slot: Slot, images: np.ndarray) -> np.ndarray:
        return await self._predict((self.name, images))

    def close(self, timeout: float | None = None) -> None:
        self._admission.close()


class _ReplicaRegistry(Registry):
    """The models of one replica, each run through the replica's batch queue instead of a ``Batcher``."""

    def __init__(
        self,
        config: ServeConfig,
        sources: tuple[ModelSource, ...],
        metrics: ServeMetrics,
        predict: Callable[[Job], Awaitable[np.ndarray]],
    ) -> None:
        super().__init__(config, sources, metrics)
        self._predict = predict

    def make_runner(self, name: str, model: Model) -> Runner:
        depth = self.metrics.queue_depth.labels(name).set
        return ReplicaRunner(name, self._predict, self.config.max_batch, self.config.queue_size, depth)


def _image_count(jobs: list[Job]) -> int:
    return sum(len(images) for _, images in jobs)


class EdgecnnReplica:
    """One Ray Serve replica: the models (loaded and warmed up in the constructor, so Ray routes to it only
    once it is ready), Ray Serve's batching, and the application over them (``__serve_build_asgi_app__``)."""

    def __init__(self, config: ServeConfig, sources: tuple[ModelSource, ...]) -> None:
        from ray import serve

        self._infer = ThreadPoolExecutor(
            1, thread_name_prefix="edgecnn-infer"
        )  # the model off the event loop
        self._predict = serve.batch(
            max_batch_size=config.max_batch,
            batch_wait_timeout_s=config.max_delay_ms / 1000,
            batch_size_fn=_image_count,
        )(self._run_batch)
        self.metrics = ServeMetrics()
        self.registry = _ReplicaRegistry(config, sources, self.metrics, self._predict)
        self.registry.load()
        if self.registry.failure is not None:
            raise self.registry.failure
        self._pool = ThreadPoolExecutor(
            config.workers or default_workers(), thread_name_prefix="edgecnn-decode"
        )
        self.state = ServingState(self.registry, self.metrics, self._pool)

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(self.state)

    async def _run_batch(self, jobs: list[Job]) -> list[np.ndarray]:
        """One Ray Serve batch: each model's images run together, the probabilities handed back per request."""
        loop = asyncio.get_running_loop()
        results: list[np.ndarray | None] = [None] * len(jobs)
        for name in dict.fromkeys(name for name, _ in jobs):
            mine = [i for i, (n, _) in enumerate(jobs) if n == name]
            model, _ = self.registry.ready_model(name)
            images = np.concatenate([jobs[i][1] for i in mine])
            started = time.perf_counter()
            probs = await loop.run_in_executor(self._infer, model.predictor.predict_batch, images)
            self.metrics.observe_batch(name, len(images), time.perf_counter() - started)
            at = 0
            for i in mine:
                n = len(jobs[i][1])
                results[i] = probs[at : at + n]
                at += n
        return [r for r in results if r is not None]

    def __del__(self) -> None:
        # Ray Serve stops a replica after the requests it holds have finished (graceful_shutdown_timeout_s).
        registry = getattr(self, "registry", None)
        if registry is not None:
            registry.close()
        for pool in (getattr(self, "_pool", None), getattr(self, "_infer", None)):
            if pool is not None:
                pool.shutdown(wait=False)


class RayServer:
    """``edgecnn serve --ray``: created (everything checked, the port free) before Ray starts; ``start``
    deploys and returns once every replica is ready; ``run`` serves until SIGTERM or Ctrl-C.

    Raises:
        ConfigError, ModelFileError, ProviderError: At creation, before Ray starts.
        DependencyError: Ray Serve is not installed.
    """

    def __init__(self, config: ServeConfig, options: RayServeOptions) -> None:
        self.serve = import_serve()
        self.config = config
        self.options = options
        self.sources = resolve_sources(config)
        # The port is checked here, and a free one chosen for port 0; Ray Serve's proxy binds it itself.
        probe = bind(config.host, config.port)
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._connected = False
        self._stopping = threading.Event()
        self._catching = False
        self._previous: dict[int, Any] = {}

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        """Join or start Ray, start Ray Serve's proxy on ``host:port`` and deploy the replicas; return when
        every replica has loaded its models.

        Raises:
            ConfigError: No cluster at the address.
            EdgecnnError: The deployment failed (a replica could not load a model); Ray is left as found.
        """
        import ray

        from edgecnn.apps.cluster import connect

        serve, config = self.serve, self.config
        self._connected = connect(ray, self.options.address, num_cpus=self.options.num_cpus)
        self._catch_signals()
        try:
            serve.start(
                http_options={"host": config.host, "port": self.port},
                logging_config={"log_level": "WARNING", "enable_access_log": False},
            )
            deployment = serve.deployment(
                serve.ingress()(EdgecnnReplica),
                name=DEPLOYMENT,
                max_ongoing_requests=config.queue_size,
                max_queued_requests=config.queue_size,
                ray_actor_options={"num_cpus": REPLICA_CPUS},
                logging_config={"log_level": "WARNING", "enable_access_log": False},
                graceful_shutdown_timeout_s=GRACE_SECONDS,
                **self.options.scaling(),
            )
            serve.run(deployment.bind(config, self.sources), name=APP_NAME, route_prefix="/")
        except Exception as exc:
            self.stop()
            if isinstance(exc, EdgecnnError):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgecnnError(f"Ray Serve could not start the models: {first[:300]}") from None
        names = ", ".join(f"{s.name}={s.path}" for s in self.sources)
        logger.info(
            f"serving {names} on {self.url} through Ray Serve ({self.options.describe()}; max batch "
            f"{config.max_batch}, max delay {config.max_delay_ms:g} ms, queue {config.queue_size} per replica); "
            f"API key {'required' if config.api_key else 'off'}"
        )
        if config.exposed_without_key:
            logger.warning(
                f"warning: listening on {config.host} with no API key: anyone who can reach port "
                f"{self.port} can use the models; set --api-key or EDGECNN_API_KEY"
            )

    def stop(self) -> None:
        """Remove the application (its replicas finish the requests they hold) and leave Ray as found: a Ray
        started or joined here is left, one the caller had connected stays connected."""
        import ray

        if not ray.is_initialized():
            return
        try:
            if self.options.address == "local" and self._connected:
                self.serve.shutdown()
            else:
                self.serve.delete(APP_NAME)
        finally:
            if self._connected:
                ray.shutdown()
                self._connected = False

    def run(self) -> None:
        """``start``, serve until SIGTERM or Ctrl-C, then ``stop``. A signal during the start stops the
        server once the deployment is whole; a second one while stopping is ignored (the replicas are
        finishing what they hold)."""
        self._catching = threading.current_thread() is threading.main_thread()
        self._catch_signals()
        try:
            self.start()
            self._stopping.wait()
            logger.info("stopping: the replicas finish the requests they hold")
        finally:
            try:
                self.stop()
            finally:
                for sig, handler in self._previous.items():
                    signal.signal(sig, handler)
                self._previous.clear()

    def _catch_signals(self) -> None:
        """SIGINT and SIGTERM set ``_stopping`` (in ``run``, on the main thread). Joining Ray installs its own
        SIGTERM handler, so ``start`` calls this again right after."""
        if not self._catching:
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, lambda *_: self._stopping.set())
            self._previous.setdefault(sig, previous)


def serve_on_ray(config: ServeConfig, options: RayServeOptions) -> None:
    """Check everything, deploy on Ray Serve, serve until stopped (see ``RayServer``)."""
    RayServer(config, options).run()
