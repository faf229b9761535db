"""The options of ``edgecnn serve``, checked together before anything is loaded or bound."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.errors import ConfigError

#: A model name is one URL path segment.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
API_KEY_ENV = "EDGECNN_API_KEY"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class ModelSource:
    """A model to serve: its name in the URL and its file."""

    name: str
    path: Path


def parse_model(text: str | os.PathLike[str]) -> ModelSource:
    """``name=path`` or a path (named after the file, ``shapes-cnn.onnx`` -> ``shapes-cnn``)."""
    raw = os.fspath(text)
    name, sep, path = raw.partition("=")
    if not sep:
        name, path = Path(raw).stem, raw
    if not path:
        raise ConfigError(f"model {raw!r} names no file; give name=path or a path")
    if not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} cannot be a URL path segment: use letters, digits, '_', '.' and '-' "
            "(at most 64), starting with a letter or digit"
        )
    return ModelSource(name, Path(path))


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``serve`` needs; ``__post_init__`` refuses combinations that cannot work.

    Attributes:
        models: The models and their names (an empty tuple: the shipped default model).
        host, port: Where to listen; loopback unless told otherwise.
        max_batch: Images per model run, and the most one request may send.
        max_delay_ms: How long the first request of a batch waits for others.
        queue_size: Requests a model holds (decoding or waiting for the model); beyond it, 503 at once.
        api_key: Bearer token required on every route but health (None: no token).
        provider, fallback, threads: The execution provider options, as ``classify`` has them.
        workers: Decoding threads (None: one per CPU core).
        max_body_mb: The largest request body.
    """

    models: tuple[ModelSource, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_delay_ms: float = 5.0
    queue_size: int = 256
    api_key: str | None = None
    provider: str = "auto"
    fallback: bool = False
    threads: int | None = None
    workers: int | None = None
    max_body_mb: float = 16.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if not self.host:
            raise ConfigError("host is empty; give an address such as 127.0.0.1 or 0.0.0.0")
        if not 1 <= self.max_batch <= 4096:
            raise ConfigError(f"max-batch must be 1-4096, got {self.max_batch}")
        if not 0 <= self.max_delay_ms <= 10_000:
            raise ConfigError(f"max-delay-ms must be 0-10000, got {self.max_delay_ms}")
        if self.queue_size < 1:
            raise ConfigError(f"queue-size must be at least 1, got {self.queue_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not 0 < self.max_body_mb <= 4096:
            raise ConfigError(f"max-body-mb must be above 0 and at most 4096, got {self.max_body_mb}")
        if self.api_key is not None and (not self.api_key.strip() or any(c.isspace() for c in self.api_key)):
            raise ConfigError(
                "api-key is empty or holds spaces; give a token such as $(openssl rand -hex 24)"
            )
        names = [m.name for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"model name {twice[0]!r} is given twice; name them apart with name=path")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def exposed_without_key(self) -> bool:
        """Listening beyond this machine with no token: anyone who reaches the port can use the models."""
        return self.host not in LOOPBACK and self.api_key is None
