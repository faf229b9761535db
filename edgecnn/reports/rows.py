"""Result rows for the classify report: one compact record per file, from a run or from a results file.

With ``--resume`` the report covers the whole results file, so it reads the file back here, through the same
parser as ``--resume`` (``core.resultfile``): a torn last line is ignored; the later row of a path counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.errors import OutputError
from edgecnn.core.resultfile import iter_records


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
    latest: dict[str, ReportRow] = {}
    try:
        for data in iter_records(path, action="read {} for the report"):
            row = _record(data)
            latest.pop(row.path, None)  # a retried file moves to where its last row is
            latest[row.path] = row
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"cannot read {path} for the report: not an edgecnn result file ({exc})") from None
    return list(latest.values())
