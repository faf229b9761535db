"""The ready-to-run models shipped in the repository's ``models/`` folder (``edgecnn/models/`` in a wheel)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "shapes-cnn.int8.onnx"
MODEL_ENV = "EDGECNN_MODEL"


def models_dirs() -> list[Path]:
    """Folders searched for the default model: ./models, the package's models/ (an installed wheel), then the
    models/ folder beside the package (a source checkout)."""
    package = Path(__file__).resolve().parent.parent
    return [Path.cwd() / "models", package / "models", package.parent / "models"]


def default_model_path() -> Path | None:
    """$EDGECNN_MODEL if set, else the first shipped default model found, else None."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    for folder in models_dirs():
        candidate = folder / DEFAULT_MODEL_NAME
        if candidate.is_file():
            return candidate
    return None
