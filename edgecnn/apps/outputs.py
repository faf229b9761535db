"""Result files for ``edgecnn classify``: CSV, JSON Lines or JSON, written so that nothing is lost.

CSV and JSONL rows are appended one batch per ``write`` call and flushed to disk, so a run killed at any
moment leaves a valid file holding every finished batch. JSON (one array) is rewritten atomically, at most
every couple of seconds and at the end, so it is always a complete document too. ``--resume`` reads the file
back and skips the paths it already holds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.atomic import write_atomic
from edgecnn.core.errors import OutputError

FORMATS = (".csv", ".jsonl", ".json")
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


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"unknown output format {path.suffix!r} for {path}; use .csv, .jsonl or .json")
    return suffix


def read_done(path: Path) -> set[str]:
    """Paths already recorded in an output file (for ``--resume``); a torn last line is ignored.

    Raises:
        OutputError: The file exists but is not a result file of the expected format.
    """
    return set(read_statuses(path))


#: The status ``read_statuses`` gives a row whose file was classified but could not be sorted: ``--resume``
#: tries it again (its new row follows the old one; the later row of a path counts).
RETRY = "retry"


def _status(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "ok")
    if status != "ok" and str(row.get("error") or "").startswith("cannot sort"):
        return RETRY
    return status


def read_statuses(path: Path) -> dict[str, str]:
    """{path: status} of the rows already in an output file; a torn last line is ignored.

    Raises:
        OutputError: The file cannot be read, or is not a result file of the expected format.
    """
    try:
        if not path.exists() or path.stat().st_size == 0:
            return {}
        fmt = format_of(path)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise OutputError(f"cannot resume from {path}: {exc.strerror or exc}") from None
    try:
        if fmt == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise ValueError("not a JSON array")
            return {str(item["path"]): _status(item) for item in data}
        lines = text.split("\n")
        complete = lines[:-1]  # whatever follows the last newline is a torn write
        if fmt == ".jsonl":
            rows = [json.loads(line) for line in complete if line.strip()]
            return {str(r["path"]): _status(r) for r in rows}
        reader = csv.DictReader(io.StringIO("\n".join(complete) + "\n"))
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError("no 'path' column")
        return {row["path"]: _status(row) for row in reader if row.get("path") is not None}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"cannot resume from {path}: it is not an edgecnn result file ({exc})") from None


class ResultWriter:
    """Appends rows to a result file batch by batch; safe against interruption at any point.

    Args:
        path: .csv, .jsonl or .json file.
        resume: Keep the rows already in the file (and drop a torn last line) instead of refusing to start.
        force: Replace an existing file.

    Raises:
        OutputError: The file exists and neither ``resume`` nor ``force`` was given, or it cannot be written.
    """

    def __init__(
        self, path: str | Path, resume: bool = False, force: bool = False, json_interval: float = 2.0
    ) -> None:
        self.path = Path(path)
        self.format = format_of(self.path)
        self.json_interval = json_interval
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume and not force:
            raise OutputError(f"{self.path} exists; pass --resume to continue it or --force to replace it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from None
        self._json_rows: list[dict[str, Any]] = []
        self._last_json = 0.0
        self._dirty = False
        if self.format == ".json":
            if exists and resume:
                self._json_rows = json.loads(self.path.read_text(encoding="utf-8", errors="surrogateescape"))
            elif exists:
                self._write_json()
            return
        mode = "truncate" if exists and not resume else "append"
        try:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "truncate" else os.O_APPEND)
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if mode == "append":
            self._drop_torn_tail()
        if os.fstat(self._fd).st_size == 0 and self.format == ".csv":
            self._write_bytes(_csv_text([CSV_FIELDS]))

    def _drop_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            data = fh.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            os.truncate(self.path, keep)

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
        if self.format == ".json":
            self._json_rows.extend(r.to_dict() for r in rows)
            self._dirty = True
            if time.monotonic() - self._last_json >= self.json_interval:
                self._write_json()
            return
        errors = "surrogateescape"  # CSV: a file name that is not UTF-8 keeps its original bytes
        if self.format == ".jsonl":
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

    def _write_json(self) -> None:
        text = json.dumps(self._json_rows, ensure_ascii=False, indent=1) + "\n"
        write_atomic(self.path, text, errors=JSON_ERRORS)
        self._last_json = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        if self.format == ".json":
            if self._dirty or not self.path.exists():
                self._write_json()
            return
        os.close(self._fd)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()
