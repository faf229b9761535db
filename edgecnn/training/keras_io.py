"""Loading a trained .keras model and its contract (the training report written beside it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract
from edgecnn.core.errors import ContractError, ModelFileError


def load_keras_contract(model_path: Path) -> ModelContract:
    """The contract of a .keras model, from the report.json that training wrote beside it."""
    report = model_path.parent / "report.json"
    if not report.is_file():
        raise ModelFileError(
            f"no report.json beside {model_path}: edgecnn needs the training report for the labels and input "
            "size; for a Keras model edgecnn did not train, pass --labels FILE and how it expects its pixels "
            "(--preset or --scale)"
        )
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {report}: {exc}") from None
    if not isinstance(data, dict) or "contract" not in data:
        raise ContractError(f"{report} has no 'contract' block; retrain with this edgecnn version")
    return ModelContract.from_dict(data["contract"])


def load_keras_model(model_path: Path) -> Any:
    """Load a .keras or .h5 file in Keras' safe mode (no code from the file is run, e.g. a Lambda layer's)."""
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    try:
        return keras.saving.load_model(str(model_path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/OSError/zipfile errors for bad files
        # Keras' refusal of code in the file ends by suggesting safe_mode=False: edgecnn has no such switch.
        reason = str(exc).splitlines()[0].split(" If you trust the source")[0][:240]
        raise ModelFileError(
            f"cannot load Keras model {model_path}: {reason} (edgecnn loads Keras files in safe mode only)"
        ) from None


def load_keras_forward(model_path: Path) -> tuple[ModelContract, Callable[[np.ndarray], np.ndarray]]:
    """A .keras model's contract and its forward function on float32 NHWC batches."""
    contract = load_keras_contract(model_path)
    model = load_keras_model(model_path)

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model(batch, training=False))

    return contract, forward
