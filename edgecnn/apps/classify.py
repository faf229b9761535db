"""``edgecnn classify``: a streaming pipeline over folders of photos.

Files are listed lazily, decoded by worker threads while the model runs the previous batch (ONNX Runtime
releases the GIL), results are written and flushed batch by batch, and every unreadable file becomes a
``skipped`` row with its reason. Memory is bounded by the decode window and one batch, not by the number of
files.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.apps.outputs import RETRY, ResultWriter, Row, read_statuses, row_status
from edgecnn.apps.sorting import Sorter, place_file
from edgecnn.apps.sortjournal import Placement, SortJournal
from edgecnn.core.decode import decode_batches, default_workers
from edgecnn.core.errors import ConfigError
from edgecnn.core.files import iter_image_files, resolved, unique_files
from edgecnn.core.imaging import IMAGE_SUFFIXES
from edgecnn.core.interrupts import deferred_interrupts, terminate_as_interrupt
from edgecnn.runtime.predictor import Predictor


@dataclass
class ClassifyConfig:
    """Options of one ``classify`` run."""

    paths: Sequence[Path]
    batch_size: int = 32
    top_k: int = 1
    recursive: bool = False
    output: Path | None = None
    sort_into: Path | None = None
    move: bool = False
    min_confidence: float = 0.0
    resume: bool = False
    force: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("give at least one file or folder to classify")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.resume and self.output is None:
            raise ConfigError("--resume needs --output FILE (the results to continue)")
        if self.move and self.sort_into is None:
            raise ConfigError("--move needs --sort-into DIR")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence must be between 0 and 1, got {self.min_confidence}")


@dataclass
class ClassifySummary:
    """What a run did."""

    classified: int = 0
    skipped: int = 0
    already_done: int = 0
    already_skipped: int = 0  # of already_done: rows an earlier run recorded as skipped
    per_label: Counter[str] = field(default_factory=Counter)
    skipped_examples: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    provider: str = "cpu"
    provider_note: str | None = None
    output: str | None = None
    sort_into: str | None = None
    workers: int = 1
    batch_size: int = 1
    interrupted: bool = False

    @property
    def nothing_found(self) -> str | None:
        """What to tell a user whose files and folders held no image file at all (None when they did)."""
        if self.classified or self.skipped or self.already_done or self.interrupted:
            return None
        return f"no image files found (edgecnn reads {', '.join(IMAGE_SUFFIXES)})"

    @property
    def images_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "classified": self.classified,
            "skipped": self.skipped,
            "already_done": self.already_done,
            "already_skipped": self.already_skipped,
            "per_label": dict(sorted(self.per_label.items())),
            "skipped_examples": [{"path": p, "reason": r} for p, r in self.skipped_examples],
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "provider": self.provider,
            "provider_note": self.provider_note,
            "output": self.output,
            "sort_into": self.sort_into,
            "workers": self.workers,
            "batch_size": self.batch_size,
            "interrupted": self.interrupted,
        }


Progress = Callable[[int, int | None], None]  # (files done, total files or None while counting)


def _listing(config: ClassifyConfig, skipped: list[tuple[Path, str]] | None = None) -> Iterator[Path]:
    """The files of the run, each once (``core.files.unique_files``)."""
    return unique_files(
        iter_image_files(config.paths, recursive=config.recursive, skipped=skipped, exclude=config.sort_into)
    )


def _is_done(done: dict[str, str], path: Path) -> str | None:
    """The recorded status of ``path`` when an earlier run finished it (``--resume`` skips it), else None."""
    status = done.get(resolved(path)) if done else None
    return status if status is not None and status != RETRY else None


def count_files(config: ClassifyConfig, done: dict[str, str] | None = None) -> int:
    """How many files the run will classify (a separate lazy pass, used only for the progress bar): the
    files it lists, less those an earlier run finished (``done``: {resolved path: status})."""
    return sum(1 for path in _listing(config) if not _is_done(done or {}, path))


def new_summary(config: ClassifyConfig, predictor: Predictor) -> ClassifySummary:
    """An empty summary of a run of ``config`` on ``predictor``."""
    return ClassifySummary(
        provider=predictor.provider,
        provider_note=predictor.info.note,
        output=str(config.output) if config.output else None,
        sort_into=str(config.sort_into) if config.sort_into else None,
        workers=config.workers or default_workers(),
        batch_size=config.batch_size,
    )


def check_inputs(config: ClassifyConfig) -> None:
    """Refuse a run none of whose files and folders exist (one that misses some lists them as skipped).

    Raises:
        ConfigError: Names the missing paths.
    """
    missing = [str(p) for p in config.paths if not os.path.lexists(p)]
    if len(missing) == len(config.paths):
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ConfigError(f"nothing to classify: {', '.join(missing[:5])}{more} not found")


def classify_paths(
    config: ClassifyConfig,
    predictor: Predictor,
    on_progress: Progress | None = None,
    count_in_background: bool = False,
    on_rows: Callable[[list[Row]], None] | None = None,
) -> ClassifySummary:
    """Classify every image under ``config.paths`` with ``predictor``.

    Results are written batch by batch (``config.output``); files are sorted (``config.sort_into``) as their
    batch finishes, each move or copy recorded first (``apps.sortjournal``). Ctrl-C and SIGTERM stop after
    the current batch, with everything done so far kept.
    """
    summary = new_summary(config, predictor)
    batches = classify_batches(config, predictor, summary, on_progress, count_in_background)
    with terminate_as_interrupt():
        try:
            for rows in batches:
                if on_rows is not None:
                    on_rows(rows)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            batches.close()
    return summary


def _account(summary: ClassifySummary, rows: list[Row]) -> None:
    for row in rows:
        if row.status == "ok":
            summary.classified += 1
            summary.per_label[row.label or "?"] += 1
        else:
            summary.skipped += 1
            if len(summary.skipped_examples) < 20:
                summary.skipped_examples.append((row.path, row.error or ""))


def classify_batches(
    config: ClassifyConfig,
    predictor: Predictor,
    summary: ClassifySummary,
    on_progress: Progress | None = None,
    count_in_background: bool = False,
) -> Generator[list[Row], None, None]:
    """The rows of a run, one model batch at a time, as they are written; ``summary`` is kept up to date.

    The results file is written (and files sorted) before each batch is yielded; closing the iterator early
    closes the results file with every yielded row in it. With ``--sort-into`` and a results file, each
    batch's moves or copies are recorded in the sort journal before they are made, and the rows written
    after; SIGINT and SIGTERM wait until the batch is complete. ``--resume`` first completes what a killed
    run recorded there.
    """
    workers = summary.workers
    # Everything is checked before any output is touched: the inputs, the sort folder, then the results file.
    check_inputs(config)
    sorter = (
        Sorter(config.sort_into, move=config.move, min_confidence=config.min_confidence)
        if config.sort_into
        else None
    )
    recorded = read_statuses(config.output) if (config.output and config.resume) else {}
    # --resume matches files by their resolved path: a relative and an absolute spelling are the same file.
    done = {resolved(path): status for path, status in recorded.items()}
    writer = ResultWriter(config.output, resume=config.resume, force=config.force) if config.output else None
    journal = SortJournal(config.output) if config.output else None
    start = time.perf_counter()
    if journal is not None and writer is not None:
        with deferred_interrupts():
            recovered = journal.recover(done) if config.resume else []
            writer.write(recovered)
            journal.clear()
        _account(summary, recovered)
        done.update((resolved(row.path), row_status(row.to_dict())) for row in recovered)
    total: list[int | None] = [None]
    stop_counting = threading.Event()
    if on_progress and count_in_background:

        def count() -> None:
            n = 0
            for path in _listing(config):
                if stop_counting.is_set():
                    return
                n += not _is_done(done, path)
            total[0] = n

        threading.Thread(target=count, daemon=True, name="edgecnn-count").start()

    listing_skips: list[tuple[Path, str]] = []
    skips_seen: set[str] = set()

    def todo() -> Iterator[Path]:
        for path in _listing(config, listing_skips):
            status = _is_done(done, path)
            if status is not None:
                summary.already_done += 1
                summary.already_skipped += status != "ok"
                continue
            yield path

    seen = 0
    entries: list[tuple[Path, np.ndarray | None, str | None]] = []  # in listing order

    def flush() -> list[Row]:
        rows: list[Row] = []
        while listing_skips:
            path, reason = listing_skips.pop(0)
            key = resolved(path)
            if key not in skips_seen and key not in done:
                skips_seen.add(key)
                rows.append(Row(str(path), "skipped", error=reason))
        images = [image for _, image, _ in entries if image is not None]
        tops = iter(predictor.top_k(predictor.predict(images), config.top_k)) if images else iter(())
        placements: list[Placement] = []
        taken: set[Path] = set()
        for path, image, error in entries:
            if image is None:
                rows.append(Row(str(path), "skipped", error=error))
                continue
            top = next(tops)
            label, confidence = top[0]
            row = Row(str(path), "ok", label=label, confidence=confidence, top_k=top)
            if sorter is not None:
                index = predictor.labels.index(label)
                target = sorter.plan(path, label, confidence, index, taken)
                row.sorted_to = str(target)
                placements.append(Placement(row, path, target, sorter.move))
            rows.append(row)
        entries.clear()
        # One unit: record the moves, make them, write the rows. Ctrl-C and SIGTERM wait for its end.
        with deferred_interrupts():
            if journal is not None and writer is not None:
                journal.record(placements)
            for placement in placements:
                row = placement.row
                try:
                    row.sorted_to = str(place_file(placement.source, placement.target, placement.move))
                except OSError as exc:
                    row.status, row.error = "skipped", f"cannot sort: {exc.strerror or exc}"
                    row.sorted_to = None
            if writer is not None:
                writer.write(rows)
                if journal is not None and placements:
                    journal.clear()
        _account(summary, rows)
        return rows

    try:
        for group in decode_batches(todo(), predictor.contract.input, config.batch_size, workers=workers):
            seen += len(group)
            entries.extend((d.item, d.image, d.error) for d in group)
            rows = flush()
            if on_progress:
                on_progress(seen, total[0])
            if rows:
                yield rows
        rows = flush()  # files that could not be listed, after the last batch
        if on_progress:
            on_progress(seen, seen)  # every file of the run is done: the bar ends full
        if rows:
            yield rows
    finally:
        stop_counting.set()
        summary.seconds = time.perf_counter() - start
        if writer is not None:
            with deferred_interrupts():
                writer.close()
