"""The files of a run folder that come after training: the model, JSON files and the HTML report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.atomic import atomic_output, write_atomic
from edgecnn.core.dataset import DataSplits, Skipped
from edgecnn.core.errors import EdgecnnError

logger = logging.getLogger(__name__)


def write_model(model: Any, path: Path) -> None:
    """Save a Keras model atomically: ``path`` holds the old file or the whole new one, never a part."""
    with atomic_output(path) as tmp:
        model.save(str(tmp))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def write_html_report(
    run_dir: Path,
    report: dict[str, Any],
    history: dict[str, list[float]],
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    splits: DataSplits,
    val_bad: list[Skipped],
    phase_starts: list[int],
) -> None:
    from edgecnn.reports.train import write_training_report

    bad = {str(p) for p, _ in val_bad}
    decoded = [p for p, _ in splits.val if str(p) not in bad]  # the validation order, less the skipped files
    try:
        write_training_report(run_dir, report, history, images, y_true, probs, decoded, phase_starts)
    except (EdgecnnError, OSError) as exc:  # the model and report.json are written: do not lose the run
        logger.warning(f"warning: report.html not written: {exc}")
