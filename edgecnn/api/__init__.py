"""The public Python API: the functions the command line calls, for programs that embed edgecnn.

Import it as ``import edgecnn``; every name here is reached lazily through ``edgecnn.__getattr__``, so
``import edgecnn`` stays cheap and ``edgecnn.load`` never imports TensorFlow. Functions raise
``EdgecnnError`` subclasses with one-line messages; none prints or exits. Progress goes to the ``edgecnn``
logger (``logging.getLogger("edgecnn")``).
"""

from __future__ import annotations

from edgecnn.api.building import AdoptOptions, adopt, export, train
from edgecnn.api.inference import (
    ClassifyRun,
    EvaluationResult,
    Row,
    classify,
    evaluate,
    load_for_evaluation,
    webcam,
    webcam_summary_text,
)
from edgecnn.api.serving import serve
from edgecnn.runtime.model import Model, Prediction, load

__all__ = [
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
    "load_for_evaluation",
    "serve",
    "train",
    "webcam",
    "webcam_summary_text",
]
