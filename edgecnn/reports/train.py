"""The ``report.html`` of a training run: learning curves, the confusion matrix (its cells show their images),
the misclassified validation images, the data summary (counts per class, skipped files) and the settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.metrics import compute_metrics
from edgecnn.reports.charts import confusion_grid, line_chart, reliability
from edgecnn.reports.evaluate import labelled_items
from edgecnn.reports.page import EMBED_LIMIT, files_dir, thumbnail_refs, write_page
from edgecnn.reports.thumbs import Thumbnailer, clear_thumbnails


def write_training_report(
    run_dir: Path,
    report: dict[str, Any],
    history: dict[str, list[float]],
    images: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    val_files: Sequence[Path],
    phase_starts: Sequence[int] = (),
) -> Path:
    """Write ``run_dir/report.html``.

    Args:
        report: The run's report.json content (metrics, data, settings).
        history: Per-epoch loss and accuracy, training and validation.
        images: The validation images as the model saw them (uint8, NHWC), in evaluation order.
        y_true: Their classes; ``probabilities``: the model's answers.
        val_files: The validation files whose images were decoded, in the same order (thumbnails come from
            ``images`` when they are large enough, else from these files).
        phase_starts: Epochs where a new phase (fine-tuning) began.

    Raises:
        OutputError: The page or its thumbnails cannot be written.
    """
    path = Path(run_dir) / "report.html"
    classes = list(report["classes"])
    paths = (
        [str(p) for p in val_files]
        if len(val_files) == len(y_true)
        else [f"#{i}" for i in range(len(y_true))]
    )
    clear_thumbnails(files_dir(path))
    with Thumbnailer(files_dir(path)) as thumbs:
        for start in range(0, len(paths), 64):
            thumbs.add_batch(
                [(name, name, image) for name, image in zip(paths[start : start + 64], images[start:])]
            )
    atlases, refs = thumbnail_refs(path, thumbs, paths, embed=len(paths) <= EMBED_LIMIT)
    items = labelled_items(paths, y_true, probabilities, refs)
    pred = probabilities.argmax(axis=1)
    metrics = compute_metrics(y_true, pred, classes)
    starts = list(phase_starts)
    curves = [
        line_chart(
            {"training": history.get(key, []), "validation": history.get("val_" + key, [])}, key, starts
        )
        for key in ("loss", "accuracy")
        if history.get(key) or history.get("val_" + key)
    ]
    data_summary = report.get("data", {})
    per_class = [
        (
            name,
            data_summary.get("train_per_class", {}).get(name),
            data_summary.get("val_per_class", {}).get(name),
        )
        for name in classes
    ]
    data = {
        "kind": "train",
        "labels": classes,
        "items": items,
        "atlases": atlases,
        "skipped": [{"p": s["path"], "e": s["reason"]} for s in report.get("skipped", [])],
    }
    return write_page(
        path,
        "train.html.j2",
        "edgecnn training report",
        data,
        report=report,
        metrics=metrics,
        curves=curves,
        grid=confusion_grid(metrics.confusion, classes),
        reliability=reliability(probabilities.max(axis=1), pred == y_true),
        mistakes=int((pred != y_true).sum()),
        per_class_counts=per_class,
        settings=sorted((report.get("config") or {}).items()),
        versions=sorted((report.get("versions") or {}).items()),
        skipped_count=len(data["skipped"]),
    )
