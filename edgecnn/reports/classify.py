"""The ``classify --report`` page: counts per label, provider and throughput, the images grouped by
predicted label (least confident first) with filters, and the skipped files with their reasons.

Thumbnails are written as batches finish: ``tap`` wraps the predictor so that each batch of model inputs
reaches the report before the model runs it, and ``add_rows`` pairs the rows of that batch with them (no
file is decoded twice). The page is rendered by ``finish``, also after Ctrl-C; with ``--resume`` it covers
every row of the results file.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.reports.page import (
    EMBED_LIMIT,
    check_report_path,
    clean_number,
    files_dir,
    thumbnail_refs,
    write_page,
)
from edgecnn.reports.rows import ReportRow, from_row, read_rows
from edgecnn.reports.thumbs import Thumbnailer, clear_thumbnails, read_index


class PredictorTap:
    """A predictor that hands each batch of model inputs to ``sink`` before running it; else the same."""

    def __init__(self, predictor: Any, sink: Any) -> None:
        self._predictor = predictor
        self._sink = sink

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self._sink(images)
        return self._predictor.predict(images)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)


def _decoded(row: Any) -> bool:
    """Whether the model ran on this row's image (an ok row, or one whose sorting failed afterwards)."""
    return row.status == "ok" or str(row.error or "").startswith("cannot sort")


class ClassifyReport:
    """Collects a classify run for its report page.

    Args:
        path: The .html file to write (its thumbnails go to ``<stem>_files/`` beside it).
        model: The model's file name, as shown on the page.
        labels: The model's labels, in output order.
        input_size: (height, width) of the model input.
        resume: The run continues a results file: keep the thumbnails of the earlier run.

    Raises:
        ConfigError: ``path`` is not an .html file; OutputError: it cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: str,
        labels: Sequence[str],
        input_size: tuple[int, int],
        resume: bool = False,
    ) -> None:
        self.path = check_report_path(Path(path))
        self.model = model
        self.labels = list(labels)
        self.input_size = input_size
        self.resume = resume
        folder = files_dir(self.path)
        # An earlier report's thumbnails are removed only when this one is written (``finish``): a run that
        # is refused (its results file exists, say) leaves the old report whole.
        self.thumbs = Thumbnailer(folder, placed=read_index(folder) if resume else None)
        self.rows: list[ReportRow] = []
        self._inputs: deque[np.ndarray] = deque()

    def tap(self, predictor: Any) -> Any:
        """``predictor`` with its model inputs passed to this report (use it for the run)."""
        return PredictorTap(predictor, self._inputs.extend)

    def add_rows(self, rows: Iterable[Any]) -> None:
        """The rows of one finished batch (classify ``Row`` objects): keep them and queue their thumbnails."""
        jobs = []
        for row in rows:
            image = (self._inputs.popleft() if self._inputs else None) if _decoded(row) else None
            self.rows.append(from_row(row))
            if row.status == "ok":
                source = getattr(row, "sorted_to", None) or row.path  # --move has taken the file away
                jobs.append((row.path, source, image))
        if jobs:
            self.thumbs.add_batch(jobs)

    def finish(self, summary: Any, output: Path | None = None) -> Path:
        """Write the page (call it after the run, also when it was interrupted).

        Args:
            summary: The run's ``ClassifySummary``.
            output: The results file: with ``resume`` the page shows every row in it.
        """
        rows = self.rows
        if self.resume and output is not None and output.exists():
            rows = read_rows(output) or rows
            queued = {row.path for row in self.rows}
            missing = [
                r for r in rows if r.status == "ok" and r.path not in queued and not self.thumbs.has(r.path)
            ]
            for start in range(0, len(missing), 64):  # an earlier run's files without a thumbnail
                self.thumbs.add_batch([(r.path, r.path, None) for r in missing[start : start + 64]])
        self.thumbs.close()
        if not self.resume:
            clear_thumbnails(self.thumbs.folder, keep=self.thumbs.token)
        shown = [r.path for r in rows if r.status == "ok"]
        atlases, refs = thumbnail_refs(self.path, self.thumbs, shown, embed=len(shown) <= EMBED_LIMIT)
        data, context = self._page_data(rows, summary, refs)
        data["atlases"] = atlases
        return write_page(self.path, "classify.html.j2", "edgecnn classify report", data, **context)

    def _page_data(
        self, rows: list[ReportRow], summary: Any, refs: dict[str, list[int]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        labels = list(self.labels)
        for row in rows:
            if row.status == "ok" and row.label is not None and row.label not in labels:
                labels.append(row.label)  # a resumed file written by another model
        index = {label: i for i, label in enumerate(labels)}
        counts = Counter(row.label for row in rows if row.status == "ok" and row.label is not None)
        ok = sorted(
            (r for r in rows if r.status == "ok" and r.label is not None),
            key=lambda r: (index[r.label or ""], r.confidence if r.confidence is not None else 0.0),
        )
        items = [
            {
                "p": r.path,
                "t": refs.get(r.path),
                "y": index[r.label or ""],
                "c": clean_number(r.confidence),
                "k": [[index.get(lab, -1), clean_number(p)] for lab, p in r.top_k[1:]],
            }
            for r in ok
        ]
        skipped = [{"p": r.path, "e": r.error or ""} for r in rows if r.status != "ok"]
        order = sorted(range(len(labels)), key=lambda i: (-counts[labels[i]], i))
        data = {"kind": "classify", "labels": labels, "order": order, "items": items, "skipped": skipped}
        context = {
            "model": self.model,
            "input_size": self.input_size,
            "summary": summary,
            "total": len(rows),
            "classified": len(items),
            "skipped_count": len(skipped),
            "per_label": [(labels[i], counts[labels[i]], i) for i in order],
            "thumbs_failed": self.thumbs.failed,
            "thumbs_error": self.thumbs.error,
        }
        return data, context

    def watch(self, batches: Any, summary: Any, output: Path | None = None) -> Any:
        """``batches`` (a run's row batches) passed through this report; the page is written when they end,
        fail or are closed, but not when the run is refused before its first batch (a results file that
        exists, say): the earlier page and its thumbnails stay as they were."""
        started: bool | None = False
        try:
            for rows in batches:
                started = True
                self.add_rows(rows)
                yield rows
        except EdgecnnError:
            if not started:
                self.thumbs.close()
                self.thumbs.placed.clear()
                started = None  # refused: write nothing
            raise
        finally:
            batches.close()
            if started is not None:
                self.finish(summary, output)
