"""``edgecnn evaluate``: metrics of a .keras or .onnx model on a labelled folder, through one code path.

Both kinds of model get their images from ``imaging.load_image`` (decoded in parallel) and their metrics
from ``report.compute_metrics``; only the forward pass differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.contract import ModelContract
from edgecnn.data import LabelledFolder, Sample, list_class_folder
from edgecnn.errors import ContractError, DatasetError, ModelFileError
from edgecnn.report import Metrics, compute_metrics
from edgecnn.sources import decode_parallel

ForwardFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class LoadedModel:
    """A model ready to run: its contract and a forward function on float32 NHWC batches."""

    kind: str  # "keras" or "onnx"
    contract: ModelContract
    forward: ForwardFn
    provider: str | None = None


@dataclass
class EvaluationResult:
    """Metrics of one model on one folder, the predictions behind them, and the files that were skipped."""

    kind: str
    data_dir: Path
    metrics: Metrics
    probabilities: np.ndarray
    y_true: np.ndarray
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_kind": self.kind,
            "provider": self.provider,
            "data_dir": str(self.data_dir),
            **self.metrics.to_dict(),
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }


def resolve_eval_dir(data_dir: str | Path) -> Path:
    """A folder of class folders, or the val/ folder of a train/val layout."""
    root = Path(data_dir)
    for name in ("val", "valid", "validation", "test"):
        if (root / name).is_dir() and (root / "train").is_dir():
            return root / name
    return root


def load_keras_contract(model_path: Path) -> ModelContract:
    """The contract of a .keras model, from the report.json that training wrote beside it."""
    report = model_path.parent / "report.json"
    if not report.is_file():
        raise ModelFileError(
            f"no report.json beside {model_path}: edgecnn needs the training report for the labels and input size"
        )
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {report}: {exc}") from None
    if not isinstance(data, dict) or "contract" not in data:
        raise ContractError(f"{report} has no 'contract' block; retrain with this edgecnn version")
    return ModelContract.from_dict(data["contract"])


def load_keras_model(model_path: Path) -> Any:
    """Load a .keras file in Keras' safe mode (no arbitrary code from the file)."""
    from edgecnn.models import import_keras

    keras, _ = import_keras()
    try:
        return keras.saving.load_model(str(model_path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/OSError/zipfile errors for bad files
        raise ModelFileError(
            f"cannot load Keras model {model_path}: {str(exc).splitlines()[0][:200]}"
        ) from None


def load_model(model_path: str | Path, provider: str = "auto", threads: int | None = None) -> LoadedModel:
    """Load a .keras or .onnx model for evaluation.

    Raises:
        ModelFileError: Unknown suffix, missing file, or a file that cannot be loaded.
    """
    path = Path(model_path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        contract = load_keras_contract(path)
        model = load_keras_model(path)

        def forward(batch: np.ndarray) -> np.ndarray:
            return np.asarray(model(batch, training=False))

        return LoadedModel("keras", contract, forward)
    if suffix == ".onnx":
        from edgecnn.runtime import Predictor

        predictor = Predictor(path, provider=provider, threads=threads)
        assert predictor.contract is not None
        return LoadedModel("onnx", predictor.contract, predictor.predict_batch, provider=predictor.provider)
    raise ModelFileError(f"unknown model type {path.suffix!r} for {path}; give a .keras or .onnx file")


def iter_batches(
    samples: Sequence[Sample], contract: ModelContract, batch_size: int, workers: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[Path], list[tuple[Path, str]]]]:
    """Decoded (float32 batch, labels, paths, skipped) tuples over labelled samples, in order."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    paths: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for result in decode_parallel(samples, contract.input, workers=workers, path_of=lambda s: s[0]):
        if result.image is None:
            skipped.append((result.item[0], result.error or "unreadable"))
            continue
        images.append(result.image)
        labels.append(result.item[1])
        paths.append(result.item[0])
        if len(images) == batch_size:
            yield np.stack(images).astype(np.float32), np.array(labels), paths, skipped
            images, labels, paths, skipped = [], [], [], []
    if images or skipped:
        batch = (
            np.stack(images).astype(np.float32)
            if images
            else np.zeros((0, *contract.input.shape), np.float32)
        )
        yield batch, np.array(labels, dtype=np.int64), paths, skipped


def labelled_folder_for(contract: ModelContract, data_dir: str | Path) -> LabelledFolder:
    folder = list_class_folder(resolve_eval_dir(data_dir), classes=list(contract.labels))
    if not folder.samples:
        raise DatasetError(f"no images found in the class folders of {folder.root}")
    return folder


def run_on_folder(
    model: LoadedModel, data_dir: str | Path, batch_size: int = 32, workers: int | None = None
) -> EvaluationResult:
    """Evaluate a loaded model on a labelled folder (class names must be among the model's labels)."""
    if batch_size < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {batch_size}")
    folder = labelled_folder_for(model.contract, data_dir)
    probs, truth, paths = [], [], []
    skipped = list(folder.skipped)
    for batch, labels, batch_paths, bad in iter_batches(folder.samples, model.contract, batch_size, workers):
        skipped.extend(bad)
        if len(batch):
            probs.append(model.forward(batch))
            truth.append(labels)
            paths.extend(batch_paths)
    if not probs:
        raise DatasetError(f"none of the {len(folder.samples)} image files in {folder.root} could be read")
    p = np.concatenate(probs)
    y = np.concatenate(truth)
    metrics = compute_metrics(y, p.argmax(axis=1), model.contract.labels)
    return EvaluationResult(model.kind, folder.root, metrics, p, y, paths, skipped, model.provider)


def evaluate_model(
    model_path: str | Path,
    data_dir: str | Path,
    batch_size: int = 32,
    workers: int | None = None,
    provider: str = "auto",
) -> EvaluationResult:
    """Load a .keras or .onnx model and evaluate it on a labelled folder.

    Raises:
        ModelFileError: The model cannot be loaded.
        DatasetError: The folder cannot be used.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    model = load_model(model_path, provider=provider)
    return run_on_folder(model, data_dir, batch_size=batch_size, workers=workers)
