"""Result rows for the classify report: one compact record per file, from a run or from a results file.

With ``--resume`` the report covers the whole results file, so it reads the file back here: CSV, JSON Lines
or JSON as ``classify`` writes them (a torn last line is ignored; the later row of a path counts, as it does
for ``--resume`` itself).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.errors import OutputError


@dataclass
class ReportRow:
    """What the report shows of one file."""

    path: str
    status: str
    label: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def from_row(row: Any) -> ReportRow:
    """A report row from a classify ``Row`` (anything with its fields)."""
    return ReportRow(str(row.path), row.status, row.label, row.confidence, list(row.top_k or []), row.error)


def _top_k(value: Any) -> list[tuple[str, float]]:
    if isinstance(value, list):  # JSON: [{"label": ..., "confidence": ...}]
        return [(str(v["label"]), float(v["confidence"])) for v in value if isinstance(v, dict)]
    out = []
    for part in str(value or "").split(";"):  # CSV: label:0.9;other:0.1 (a label may hold a colon)
        label, _, conf = part.rpartition(":")
        if label:
            try:
                out.append((label, float(conf)))
            except ValueError:
                continue
    return out


def _record(data: dict[str, Any]) -> ReportRow:
    conf = data.get("confidence")
    try:
        confidence = float(conf) if conf not in (None, "") else None
    except (TypeError, ValueError):
        confidence = None
    return ReportRow(
        path=str(data["path"]),
        status=str(data.get("status") or "ok"),
        label=(str(data["label"]) if data.get("label") not in (None, "") else None),
        confidence=confidence,
        top_k=_top_k(data.get("top_k")),
        error=(str(data["error"]) if data.get("error") not in (None, "") else None),
    )


def read_rows(path: Path) -> list[ReportRow]:
    """Every file's latest row in a classify results file, in the order files first appear.

    Raises:
        OutputError: The file cannot be read or is not a classify results file.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"cannot read {path} for the report: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            records = json.loads(text) if text.strip() else []
            if not isinstance(records, list):
                raise ValueError("not a JSON array")
        else:
            complete = "\n".join(text.split("\n")[:-1])  # whatever follows the last newline is torn
            if suffix == ".jsonl":
                records = [json.loads(line) for line in complete.splitlines() if line.strip()]
            else:
                records = list(csv.DictReader(io.StringIO(complete + "\n")))
        latest: dict[str, ReportRow] = {}
        for data in records:
            row = _record(data)
            latest.pop(row.path, None)  # a retried file moves to where its last row is
            latest[row.path] = row
        return list(latest.values())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"cannot read {path} for the report: not an edgecnn result file ({exc})") from None
