"""Classification metrics: one implementation for Keras and ONNX models, training and evaluation alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Metrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (rows: true, columns: predicted)."""

    classes: tuple[str, ...]
    accuracy: float
    confusion: np.ndarray
    per_class: dict[str, dict[str, float]]
    count: int

    @property
    def macro_f1(self) -> float:
        """The mean F1 over the classes that have images or predictions (0.0 when there are none).

        As in scikit-learn (``f1_score(average="macro")`` without ``labels``), a class with neither images nor
        predictions is left out of the average: there is nothing to score, and counting it as 0 would report
        a perfect classifier of two classes out of three as 0.667. A class with images but no correct
        prediction, or with predictions but no images, is averaged in with its F1 of 0.
        """
        scored = [
            float(self.per_class[name]["f1"])
            for i, name in enumerate(self.classes)
            if self.confusion[i, :].sum() or self.confusion[:, i].sum()
        ]
        return float(np.mean(scored)) if scored else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "count": self.count,
            "classes": list(self.classes),
            "per_class": self.per_class,
            "confusion_matrix": self.confusion.tolist(),
            "macro_f1": self.macro_f1,
        }


def compute_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, classes: Sequence[str]
) -> Metrics:
    """Metrics of predicted class indices against true ones.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        classes: Class names, index order.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape} vs {p.shape}")
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        actual = int(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    accuracy = float((t == p).mean()) if len(t) else 0.0
    return Metrics(
        classes=tuple(classes), accuracy=accuracy, confusion=confusion, per_class=per_class, count=len(t)
    )


def format_metrics(metrics: Metrics) -> str:
    """A plain-text table of the metrics, for terminals and logs."""
    width = max([len(c) for c in metrics.classes] + [5])
    lines = [f"accuracy {metrics.accuracy * 100:.2f}% on {metrics.count} images", ""]
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, m in metrics.per_class.items():
        lines.append(
            f"{name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {int(m['support']):7d}"
        )
    lines.append("")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    header = " " * (width + 2) + " ".join(f"{c[:8]:>8}" for c in metrics.classes)
    lines.append(header)
    for name, row in zip(metrics.classes, metrics.confusion):
        lines.append(f"{name:<{width}}  " + " ".join(f"{int(v):8d}" for v in row))
    return "\n".join(lines)
