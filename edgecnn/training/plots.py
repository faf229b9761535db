"""Training plots: learning curves, confusion matrix and a grid of misclassified images.

Figures are drawn with matplotlib's object API on an Agg canvas, never through pyplot: the backend, pyplot's
figure list and anything else process-wide stay as the program that calls edgecnn set them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _figure(**kwargs: Any) -> Any:
    """A matplotlib Figure drawn on its own Agg canvas (PNG output, no window, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(history: dict[str, list[float]], path: Path, phase_starts: Sequence[int] = ()) -> None:
    """Loss and accuracy, training and validation, per epoch."""
    fig = _figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(
                    epochs,
                    values,
                    style,
                    marker="o",
                    markersize=3,
                    label=("validation " if prefix else "training ") + key,
                )
        for start in phase_starts:
            ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(
    confusion: np.ndarray, classes: Sequence[str], path: Path, title: str = "confusion matrix"
) -> None:
    """The confusion matrix as a heat map with counts (rows: true, columns: predicted)."""
    n = len(classes)
    size = max(4.0, 0.6 * n + 2)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = confusion.max() if confusion.size else 0
    for i in range(n):
        for j in range(n):
            value = int(confusion[i, j])
            ax.text(
                j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black"
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_misclassified(
    images: Sequence[np.ndarray],
    true: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
    path: Path,
) -> None:
    """A grid of wrongly classified images with their true and predicted labels (at most 25)."""
    count = min(len(images), 25)
    cols = 5
    rows = max(1, (count + cols - 1) // cols)
    fig = _figure(figsize=(cols * 2.2, rows * 2.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k in range(count):
        ax = axes.flat[k]
        img = images[k]
        if img.shape[-1] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img.astype(np.uint8))
        ax.set_title(f"true {true[k]}\npred {predicted[k]} {confidence[k]:.0%}", fontsize=8)
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_plots(
    run_dir: Path,
    history: dict[str, list[float]],
    phase_starts: list[int],
    metrics: Any,
    classes: list[str],
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
) -> None:
    """Write a run's curves.png, confusion_matrix.png and misclassified.png (the first 25 mistakes)."""
    plot_curves(history, run_dir / "curves.png", phase_starts[1:])
    plot_confusion(
        metrics.confusion, classes, run_dir / "confusion_matrix.png", title="validation confusion matrix"
    )
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)[:25]
    plot_misclassified(
        [images[i] for i in wrong],
        [classes[y_true[i]] for i in wrong],
        [classes[y_pred[i]] for i in wrong],
        [float(probs[i, y_pred[i]]) for i in wrong],
        run_dir / "misclassified.png",
    )
