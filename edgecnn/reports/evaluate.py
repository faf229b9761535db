"""The ``evaluate --report`` page: accuracy and the per-class table, the confusion matrix as a grid whose cells
show their images, a reliability diagram, the most confident mistakes first and, with ``--compare``, the
images where the model and its source (fp32) disagree.

``add_batch`` is the evaluation's per-batch hook: thumbnails are made from the decoded model inputs as the
batches go by; ``finish`` writes the page from the evaluation's predictions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.metrics import Metrics
from edgecnn.reports.charts import confusion_grid, reliability
from edgecnn.reports.page import (
    EMBED_LIMIT,
    check_report_path,
    clean_number,
    files_dir,
    thumbnail_refs,
    write_page,
)
from edgecnn.reports.thumbs import Thumbnailer, clear_thumbnails


@dataclass
class Comparison:
    """A second model's answers on the same images, in the same order (rows of NaN where it had none)."""

    model: str
    probabilities: np.ndarray
    accuracy: float | None = None


def labelled_items(
    paths: Sequence[Path | str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    refs: dict[str, list[int]],
    other: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One page record per image: path, thumbnail, true and predicted class, confidence (and the other
    model's class and confidence)."""
    pred = probabilities.argmax(axis=1)
    conf = probabilities.max(axis=1)
    items = []
    for i, path in enumerate(paths):
        key = str(path)
        item: dict[str, Any] = {
            "p": key,
            "t": refs.get(key),
            "g": int(y_true[i]),
            "y": int(pred[i]),
            "c": clean_number(float(conf[i])),
        }
        if other is not None and np.isfinite(other[i]).all():
            item["o"] = int(other[i].argmax())
            item["oc"] = clean_number(float(other[i].max()))
        items.append(item)
    return items


class EvaluationReport:
    """Collects an evaluation for its report page.

    Raises:
        ConfigError: ``path`` is not an .html file; OutputError: it cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_report_path(Path(path))
        # The earlier report's thumbnails go only when this page is written: a refused run keeps them.
        self.thumbs = Thumbnailer(files_dir(self.path))
        self.paths: list[str] = []

    def add_batch(self, batch: np.ndarray, paths: Sequence[Path]) -> None:
        """One decoded batch (float32 or uint8 model inputs, NHWC) and its files: queue their thumbnails."""
        images = np.clip(batch, 0, 255).astype(np.uint8) if batch.dtype != np.uint8 else batch
        jobs = [(str(path), path, image) for image, path in zip(images, paths)]
        self.paths.extend(job[0] for job in jobs)
        self.thumbs.add_batch(jobs)

    def finish(
        self,
        metrics: Metrics,
        probabilities: np.ndarray,
        y_true: np.ndarray,
        paths: Sequence[Path],
        skipped: Sequence[tuple[Path, str]] = (),
        model: str = "",
        provider: str | None = None,
        data_dir: str = "",
        compare: Comparison | None = None,
    ) -> Path:
        """Write the page."""
        self.thumbs.close()
        clear_thumbnails(self.thumbs.folder, keep=self.thumbs.token)
        other = compare.probabilities if compare is not None else None
        atlases, refs = thumbnail_refs(self.path, self.thumbs, self.paths, embed=len(paths) <= EMBED_LIMIT)
        items = labelled_items(paths, y_true, probabilities, refs, other)
        pred = probabilities.argmax(axis=1)
        disagree = None
        if compare is not None:
            usable = [it for it in items if "o" in it]
            disagree = {
                "model": compare.model,
                "accuracy": compare.accuracy,
                "count": sum(it["o"] != it["y"] for it in usable),
                "compared": len(usable),
            }
            disagree["agreement"] = 1 - disagree["count"] / len(usable) if usable else None
        data = {
            "kind": "evaluate",
            "labels": list(metrics.classes),
            "items": items,
            "atlases": atlases,
            "skipped": [{"p": str(p), "e": r} for p, r in skipped],
        }
        return write_page(
            self.path,
            "evaluate.html.j2",
            "edgecnn evaluation report",
            data,
            metrics=metrics,
            model=model,
            provider=provider,
            data_dir=data_dir,
            grid=confusion_grid(metrics.confusion, metrics.classes),
            reliability=reliability(probabilities.max(axis=1), pred == y_true),
            mistakes=int((pred != y_true).sum()),
            compare=disagree,
            skipped_count=len(skipped),
        )
