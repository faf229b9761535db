"""Result files for ``edgecnn classify``: CSV, JSON Lines or JSON, written so that nothing is lost.

CSV and JSONL rows are appended one batch per ``write`` call and flushed to disk, so a run killed at any
moment leaves a valid file holding every finished batch. JSON (one array) is always a complete document: its
rows go to JSON Lines beside it, flushed the same way, and the array is assembled in one atomic write when
the run ends (or when ``--resume`` finds rows a killed run left). ``--resume`` reads the file back through
``core.resultfile`` (the one parser, shared with the report) and skips the paths it already holds.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.atomic import atomic_output
from edgecnn.core.errors import OutputError
from edgecnn.core.resultfile import (
    FORMATS,
    assembled_pending,
    format_of,
    iter_records,
    json_array,
    json_lines,
    pending_rows,
)

__all__ = ["CSV_FIELDS", "FORMATS", "RETRY", "ResultWriter", "Row", "format_of", "read_done", "read_statuses"]
CSV_FIELDS = ("path", "status", "label", "confidence", "top_k", "error")
#: JSON must be UTF-8: a file name that is not (a lone surrogate after os.fsdecode) is written as the JSON
#: escape ``\udcXX``, which json.loads reads back as the same path.
JSON_ERRORS = "backslashreplace"


@dataclass
class Row:
    """One file's result."""

    path: str
    status: str  # "ok" or "skipped"
    label: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    sorted_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "status": self.status,
            "label": self.label,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "top_k": [{"label": lab, "confidence": round(p, 6)} for lab, p in self.top_k],
            "error": self.error,
        }
        if self.sorted_to is not None:
            data["sorted_to"] = self.sorted_to
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """The row ``to_dict`` gave (as a journal holds it)."""
        confidence = data.get("confidence")
        return cls(
            path=str(data["path"]),
            status=str(data["status"]),
            label=data.get("label"),
            confidence=None if confidence is None else float(confidence),
            top_k=[(str(t["label"]), float(t["confidence"])) for t in data.get("top_k") or []],
            error=data.get("error"),
            sorted_to=data.get("sorted_to"),
        )


def read_done(path: Path) -> set[str]:
    """Paths already recorded in an output file (for ``--resume``); a torn last line is ignored.

    Raises:
        OutputError: The file exists but is not a result file of the expected format.
    """
    return set(read_statuses(path))


#: The status ``read_statuses`` gives a row whose file was classified but could not be sorted: ``--resume``
#: tries it again (its new row follows the old one; the later row of a path counts).
RETRY = "retry"


def row_status(row: dict[str, Any]) -> str:
    """The status ``--resume`` acts on: "ok", "skipped", or ``RETRY`` (classified, but not sorted)."""
    status = str(row.get("status") or "ok")
    if status != "ok" and str(row.get("error") or "").startswith("cannot sort"):
        return RETRY
    return status


def read_statuses(path: Path) -> dict[str, str]:
    """{path: status} of the rows already in an output file (the later row of a path counts).

    Raises:
        OutputError: The file cannot be read, or is not a result file of the expected format.
    """
    return {str(row["path"]): row_status(row) for row in iter_records(path)}


class ResultWriter:
    """Appends rows to a result file batch by batch; safe against interruption at any point.

    CSV and JSON Lines rows are appended to the file itself. JSON rows are appended, as JSON Lines, to a
    file beside it (``resultfile.pending_rows``) and the array is assembled once, at ``close``: the work
    per batch and the memory stay the same however long the run is.

    Args:
        path: .csv, .jsonl or .json file.
        resume: Keep the rows already in the file (and drop a torn last line) instead of refusing to start.
        force: Replace an existing file.

    Raises:
        OutputError: The file exists and neither ``resume`` nor ``force`` was given, or it cannot be written.
    """

    def __init__(self, path: str | Path, resume: bool = False, force: bool = False) -> None:
        self.path = Path(path)
        self.format = format_of(self.path)
        self.rows_path = pending_rows(self.path) if self.format == ".json" else self.path
        exists = (self.path.exists() and self.path.stat().st_size > 0) or (
            self.rows_path != self.path and self.rows_path.exists()
        )
        if exists and not resume and not force:
            raise OutputError(f"{self.path} exists; pass --resume to continue it or --force to replace it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from None
        fresh = not (exists and resume)
        if self.format == ".json":
            if fresh:
                self.rows_path.unlink(missing_ok=True)
                self._assemble(keep_old=False)  # an empty array at once: the file is a complete document
            else:
                self._fold_pending()
        try:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else os.O_APPEND)
            self._fd = os.open(self.rows_path, flags, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.rows_path}: {exc.strerror or exc}") from None
        self._closed = False
        if not fresh:
            self._drop_torn_tail()
        if os.fstat(self._fd).st_size == 0 and self.format == ".csv":
            self._write_bytes(_csv_text([CSV_FIELDS]))

    def _drop_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.rows_path, "rb") as fh:
            data = fh.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            os.truncate(self.rows_path, keep)

    def _write_bytes(self, text: str, errors: str = "surrogateescape") -> None:
        data = text.encode("utf-8", errors)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def write(self, rows: Sequence[Row]) -> None:
        """Append one batch of rows and make them durable."""
        if not rows:
            return
        errors = "surrogateescape"  # CSV: a file name that is not UTF-8 keeps its original bytes
        if self.format in (".jsonl", ".json"):
            text = "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows)
            errors = JSON_ERRORS
        else:
            text = _csv_text(
                [
                    (
                        r.path,
                        r.status,
                        r.label or "",
                        "" if r.confidence is None else f"{r.confidence:.6f}",
                        ";".join(f"{lab}:{p:.6f}" for lab, p in r.top_k),
                        r.error or "",
                    )
                    for r in rows
                ]
            )
        # One write per batch: a kill leaves whole batches, or a torn last line at worst.
        self._write_bytes(text, errors)

    def _fold_pending(self) -> None:
        """Resuming a .json file: assemble the rows a killed run left beside it (unless it got that far)."""
        if not self.rows_path.exists():
            return
        try:
            old = json_array(self.path.read_text(encoding="utf-8", errors="surrogateescape"))
            pending = json_lines(self.rows_path.read_text(encoding="utf-8", errors="surrogateescape"))
        except FileNotFoundError:
            old, pending = [], []
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot resume from {self.path}: not an edgecnn result file ({exc})") from None
        if assembled_pending(old, pending):
            self.rows_path.unlink()
        else:
            self._assemble(keep_old=True)

    def _assemble(self, keep_old: bool) -> None:
        """Write the array (with ``keep_old``: the rows it holds, then the pending rows, streamed) in one
        rename, then remove the pending rows."""
        old: list[dict[str, Any]] = []
        if keep_old and self.path.exists():
            try:
                old = json_array(self.path.read_text(encoding="utf-8", errors="surrogateescape"))
            except (OSError, ValueError) as exc:
                raise OutputError(f"cannot complete {self.path}: {exc}") from None
        with atomic_output(self.path) as tmp, open(tmp, "w", encoding="utf-8", errors=JSON_ERRORS) as fh:
            fh.write("[")
            sep = "\n"
            for record in old:
                fh.write(sep + json.dumps(record, ensure_ascii=False))
                sep = ",\n"
            if keep_old and self.rows_path.exists():
                with open(self.rows_path, encoding="utf-8", errors="surrogateescape") as rows:
                    for line in rows:
                        if line.endswith("\n") and line.strip():  # a torn last line is left out
                            fh.write(sep + line[:-1])
                            sep = ",\n"
            fh.write("\n]\n")
        self.rows_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        if self.format == ".json":
            self._assemble(keep_old=True)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()
