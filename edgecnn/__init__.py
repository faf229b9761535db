"""edgecnn: from a folder of labelled photos to a small, fast ONNX image classifier at the edge.

The public Python API (``load``, ``classify``, ``evaluate``, ``export``, ``adopt``, ``train``, ``webcam``,
``serve``, ``Model``, ``Prediction``) is reached lazily: ``import edgecnn`` pulls in neither TensorFlow, ONNX Runtime nor OpenCV, and ``edgecnn.load``
never imports TensorFlow. See docs/API.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edgecnn.core.version import __version__

# The library reports through the `edgecnn` logger and is silent until the program configures logging:
# without a handler of its own, Python would print its warnings on stderr (logging.lastResort).
logging.getLogger("edgecnn").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from edgecnn.api import (
        AdoptOptions,
        ClassifyRun,
        EvaluationResult,
        Model,
        Prediction,
        Row,
        adopt,
        classify,
        evaluate,
        export,
        load,
        serve,
        train,
        webcam,
    )
    from edgecnn.core.errors import EdgecnnError

__all__ = [
    "AdoptOptions",
    "ClassifyRun",
    "EdgecnnError",
    "EvaluationResult",
    "Model",
    "Prediction",
    "Row",
    "__version__",
    "adopt",
    "classify",
    "evaluate",
    "export",
    "load",
    "serve",
    "train",
    "webcam",
]

_API = {
    "AdoptOptions",
    "ClassifyRun",
    "EvaluationResult",
    "Model",
    "Prediction",
    "Row",
    "adopt",
    "classify",
    "evaluate",
    "export",
    "load",
    "serve",
    "train",
    "webcam",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgecnn import api

        return getattr(api, name)
    if name == "EdgecnnError":
        from edgecnn.core.errors import EdgecnnError

        return EdgecnnError
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
