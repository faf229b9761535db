"""``edgecnn evaluate``: metrics of a .keras or .onnx model on a labelled folder, through one code path.

Both kinds of model get their images from ``imaging.load_image`` (decoded in parallel) and their metrics
from ``report.compute_metrics``; only the forward pass differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract
from edgecnn.core.dataset import LabelledFolder, evaluation_folder, list_class_folder
from edgecnn.core.decode import iter_batches
from edgecnn.core.errors import DatasetError
from edgecnn.core.metrics import Metrics, compute_metrics

ForwardFn = Callable[[np.ndarray], np.ndarray]
#: Called with each decoded batch (float32 NHWC model inputs) and its files, before the model runs it.
BatchHook = Callable[[np.ndarray, list[Path]], None]


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
    report: Path | None = None  # the HTML report written for this evaluation, if any
    compare: dict[str, Any] | None = None  # agreement with a second model on the same images, if any

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model_kind": self.kind,
            "provider": self.provider,
            "data_dir": str(self.data_dir),
            **self.metrics.to_dict(),
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }
        if self.compare is not None:
            out["compare"] = self.compare
        if self.report is not None:
            out["report"] = str(self.report)
        return out


def resolve_eval_dir(data_dir: str | Path) -> Path:
    """A folder of class folders, or the held-out folder of a train/val layout (``dataset.find_split_layout``)."""
    return evaluation_folder(data_dir)


def load_onnx_model(
    model_path: str | Path, provider: str = "auto", threads: int | None = None
) -> LoadedModel:
    """Load an edgecnn .onnx model for evaluation (a .keras model is loaded by ``edgecnn.evaluate``).

    Raises:
        ModelFileError: Missing file, or a file that cannot be loaded.
    """
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider=provider, threads=threads)
    return LoadedModel("onnx", predictor.contract, predictor.predict_batch, provider=predictor.provider)


def labelled_folder_for(contract: ModelContract, data_dir: str | Path) -> LabelledFolder:
    folder = list_class_folder(resolve_eval_dir(data_dir), classes=list(contract.labels))
    if not folder.samples:
        raise DatasetError(f"no images found in the class folders of {folder.root}")
    return folder


def run_on_folder(
    model: LoadedModel,
    data_dir: str | Path,
    batch_size: int = 32,
    workers: int | None = None,
    on_batch: BatchHook | None = None,
) -> EvaluationResult:
    """Evaluate a loaded model on a labelled folder (class names must be among the model's labels).

    Args:
        on_batch: Called with each decoded batch and its files (the report makes thumbnails from them).
    """
    if batch_size < 1:
        raise DatasetError(f"--batch-size must be at least 1, got {batch_size}")
    folder = labelled_folder_for(model.contract, data_dir)
    probs, truth, paths = [], [], []
    skipped = list(folder.skipped)
    for batch, labels, batch_paths, bad in iter_batches(folder.samples, model.contract, batch_size, workers):
        skipped.extend(bad)
        if len(batch):
            if on_batch is not None:
                on_batch(batch, batch_paths)
            probs.append(model.forward(batch))
            truth.append(labels)
            paths.extend(batch_paths)
    if not probs:
        raise DatasetError(f"none of the {len(folder.samples)} image files in {folder.root} could be read")
    p = np.concatenate(probs)
    y = np.concatenate(truth)
    metrics = compute_metrics(y, p.argmax(axis=1), model.contract.labels)
    return EvaluationResult(model.kind, folder.root, metrics, p, y, paths, skipped, model.provider)


def align_to(result: EvaluationResult, other: EvaluationResult) -> np.ndarray:
    """``other``'s probabilities in the order of ``result``'s images (a row of NaN where it has none)."""
    rows = {str(path): i for i, path in enumerate(other.paths)}
    aligned = np.full(result.probabilities.shape, np.nan, dtype=np.float64)
    if other.probabilities.shape[-1] != result.probabilities.shape[-1]:
        return aligned  # other labels: nothing to compare
    for i, path in enumerate(result.paths):
        j = rows.get(str(path))
        if j is not None:
            aligned[i] = other.probabilities[j]
    return aligned


def agreement(result: EvaluationResult, other: EvaluationResult, model: str) -> dict[str, Any]:
    """Top-1 agreement of two models on the images both of them classified."""
    aligned = align_to(result, other)
    both = np.isfinite(aligned).all(axis=1)
    same = result.probabilities.argmax(axis=1)[both] == aligned[both].argmax(axis=1)
    return {
        "model": model,
        "accuracy": other.metrics.accuracy,
        "images": int(both.sum()),
        "agreement": float(same.mean()) if both.any() else None,
        "disagreements": int((~same).sum()),
    }
