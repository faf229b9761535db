"""The models a server holds: each loaded, warmed up and given its batcher in the background, so that the
server answers health checks (live, not ready) while they load."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError, ModelFileError
from edgecnn.runtime.model import Model, load
from edgecnn.runtime.predictor import check_model_file
from edgecnn.runtime.providers import PROVIDER_CHOICES
from edgecnn.serving.batcher import Batcher, Runner
from edgecnn.serving.config import ModelSource, ServeConfig
from edgecnn.serving.errors import NotFound, NotReady
from edgecnn.serving.metrics import ServeMetrics

logger = logging.getLogger("edgecnn")


@dataclass
class ServedModel:
    """One model by its URL name: ``model`` and ``batcher`` are set once it has loaded and warmed up."""

    source: ModelSource
    path: Path
    model: Model | None = None
    batcher: Runner | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.source.name


def resolve_sources(config: ServeConfig) -> tuple[ModelSource, ...]:
    """The models to serve with their files checked (none given: the shipped default), before anything starts.

    Raises:
        ModelFileError: A file is missing or cannot be a model, or no model was given and none is shipped.
        ProviderError: An unknown provider.
    """
    from edgecnn.core.errors import ProviderError

    if config.provider not in PROVIDER_CHOICES:
        raise ProviderError(
            f"unknown provider {config.provider!r}; choose from {', '.join(PROVIDER_CHOICES)}"
        )
    sources = config.models
    if not sources:
        from edgecnn.core.shipped import default_model_path

        path = default_model_path()
        if path is None:
            raise ModelFileError(
                "no model given and no shipped default model found; pass the path of a model"
            )
        sources = (ModelSource(path.stem, path),)
    for source in sources:
        check_model_file(source.path)
    return sources


class Registry:
    """The served models; ``load`` opens them one after another (on a thread of its own)."""

    def __init__(self, config: ServeConfig, sources: tuple[ModelSource, ...], metrics: ServeMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.models = {s.name: ServedModel(s, s.path) for s in sources}
        self.all_ready = threading.Event()
        self.failure: EdgecnnError | None = None

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model called ``name`` (``NotFound`` naming those served)."""
        served = self.models.get(name)
        if served is None or version not in (None, "1"):
            what = f"model {name!r}" + (f" version {version!r}" if version is not None else "")
            raise NotFound(f"{what} is not served here; models: {', '.join(sorted(self.models))} (version 1)")
        return served

    def ready_model(self, name: str, version: str | None = None) -> tuple[Model, Runner]:
        """The loaded model and its batcher (``NotReady`` while it loads)."""
        served = self.get(name, version)
        if served.model is None or served.batcher is None or not served.ready.is_set():
            raise NotReady(f"model {name!r} is still loading; retry shortly")
        return served.model, served.batcher

    def load(self, on_failure: Callable[[EdgecnnError], Any] | None = None) -> None:
        """Load each model, run a warm-up batch, start its batcher; ready when all are. A model that fails
        to load is recorded in ``failure`` and ``on_failure`` is called (the server stops)."""
        try:
            for served in self.models.values():
                self._load_one(served)
        except EdgecnnError as exc:
            self.failure = exc
            logger.error(f"cannot serve: {exc}")
            if on_failure is not None:
                on_failure(exc)
            return
        self.all_ready.set()

    def _load_one(self, served: ServedModel) -> None:
        config = self.config
        started = time.perf_counter()
        model = load(served.path, provider=config.provider, fallback=config.fallback, threads=config.threads)
        try:
            model.predictor.warm_up(batch=1)
        except EdgecnnError:
            model.close()
            raise
        seconds = time.perf_counter() - started
        name = served.name
        served.model = model
        served.batcher = self.make_runner(name, model)
        self.metrics.load_seconds.labels(name).set(seconds)
        self.metrics.add_model(name)
        spec = model.contract.input
        logger.info(
            f"model {name}: {served.path.name} ({len(model.labels)} classes, {spec.height}x{spec.width}), "
            f"loaded and warmed up in {seconds:.2f} s; {model.predictor.info.describe()}"
        )
        served.ready.set()

    def make_runner(self, name: str, model: Model) -> Runner:
        """What runs ``model``'s requests: a ``Batcher`` here; Ray Serve's batching under ``serve --ray``."""
        config = self.config
        return Batcher(
            name,
            model.predictor,
            max_batch=config.max_batch,
            max_delay=config.max_delay_ms / 1000,
            queue_size=config.queue_size,
            on_batch=lambda n, s: self.metrics.observe_batch(name, n, s),
            on_depth=self.metrics.queue_depth.labels(name).set,
        )

    def close(self) -> None:
        """Run what each batcher holds, stop it, release the sessions."""
        for served in self.models.values():
            served.ready.clear()
            if served.batcher is not None:
                served.batcher.close()
            if served.model is not None:
                served.model.close()
