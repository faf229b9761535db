"""The ready-to-run models shipped in the repository's ``models/`` folder (``edgecnn/models/`` in a wheel).

The default model is EfficientNet-Lite0 with the 1,000 ImageNet classes (``make imagenet-model`` builds it
from the installed weights; int8 where it holds accuracy, else fp32). The shapes model (circle, square,
triangle, trained on generated images by ``make models``) is the offline demo's model and the fast tests'.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The default model's file names, the preferred first: int8 ships where it held accuracy, else fp32; the
#: int8 model with 7-bit weights goes first on x86 CPUs without VNNI (``cpuinfo.int8_saturates``).
DEFAULT_MODEL_NAMES = ("imagenet-lite0.int8.onnx", "imagenet-lite0.onnx")
SEVEN_BIT_MODEL_NAME = "imagenet-lite0-7bit.int8.onnx"
SHAPES_MODEL_NAME = "shapes-cnn.int8.onnx"
MODEL_ENV = "EDGECNN_MODEL"


def models_dirs() -> list[Path]:
    """Folders searched for the shipped models: ./models, the package's models/ (an installed wheel), then the
    models/ folder beside the package (a source checkout)."""
    package = Path(__file__).resolve().parent.parent
    return [Path.cwd() / "models", package / "models", package.parent / "models"]


def shipped_model(name: str) -> Path | None:
    """The first shipped file called ``name`` in ``models_dirs()``, or None."""
    for folder in models_dirs():
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def default_model_path() -> Path | None:
    """$EDGECNN_MODEL if set, else the shipped ImageNet model for this CPU, else None."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    from edgecnn.core.cpuinfo import int8_saturates

    names = ((SEVEN_BIT_MODEL_NAME,) if int8_saturates() else ()) + DEFAULT_MODEL_NAMES
    for folder in models_dirs():
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None
