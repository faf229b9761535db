"""What the API's functions share: option checks, and opening the model an inference function runs."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

from edgecnn.core.errors import ConfigError, ModelFileError
from edgecnn.runtime.model import Model, load

PathLike = str | os.PathLike[str]
logger = logging.getLogger("edgecnn")
Progress = Callable[[int, int | None], None]  # (files done, total files or None while counting)


def check_options(options: dict[str, Any], allowed: Collection[str], function: str) -> None:
    """Refuse a keyword ``function`` does not take, with the ones it does (a ``ConfigError``, not a ``TypeError``)."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{function}() has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(sorted(allowed))}"
        )


def config_fields(cls: Any) -> set[str]:
    """The names a config dataclass takes as keywords."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def open_model(
    model: PathLike | Model | None, provider: str = "auto", fallback: bool = False, threads: int | None = None
) -> tuple[Model, bool]:
    """``model`` itself, or the model at a path (None: the shipped default) opened and announced on the
    ``edgecnn`` logger with the provider that really runs it; the flag says whether it was opened here."""
    if isinstance(model, Model):
        return model, False
    if model is None:
        from edgecnn.core.shipped import default_model_path

        model = default_model_path()
        if model is None:
            raise ModelFileError(
                "no model given and no shipped default model found; pass the path of a model"
            )
        logger.info(f"using the shipped default model {model} (pass a model to use your own)")
    opened = load(model, provider=provider, fallback=fallback, threads=threads)
    spec = opened.contract.input
    logger.info(
        f"model: {opened.path.name} ({len(opened.labels)} classes, {spec.height}x{spec.width}); "
        f"{opened.predictor.info.describe()}"
    )
    return opened, True
