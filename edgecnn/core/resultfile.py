"""Reading a ``classify`` results file back: the one parser of CSV, JSON Lines and JSON results.

``--resume`` (which files are done), the report (every file's latest row) and the sort journal read result
files through here, so they agree on every file. Records are split on ``"\\n"`` only: a JSON line may hold
U+2028, U+2029 or U+0085 inside a file name, and those are not line ends. Whatever follows the last newline
is a torn write and is ignored.

A ``.json`` results file is written as JSON Lines beside it while the run goes on (``pending_rows``) and
assembled into the array when the run ends; a run killed before that leaves the array as it was and the
pending rows beside it, and readers see both.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgecnn.core.errors import OutputError

FORMATS = (".csv", ".jsonl", ".json")


def format_of(path: Path) -> str:
    """The results format of ``path`` from its suffix.

    Raises:
        OutputError: Not .csv, .jsonl or .json.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"unknown output format {path.suffix!r} for {path}; use .csv, .jsonl or .json")
    return suffix


def pending_rows(path: Path) -> Path:
    """Where the rows of a ``.json`` results file wait (JSON Lines) until the run assembles the array."""
    return path.with_name(f".{path.name}.rows.jsonl")


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None


def _complete_lines(text: str) -> list[str]:
    return [line for line in text.split("\n")[:-1] if line.strip()]


def json_lines(text: str) -> list[dict[str, Any]]:
    """The records of JSON Lines text (a torn last line ignored).

    Raises:
        ValueError: A complete line is not a JSON object.
    """
    records = [json.loads(line) for line in _complete_lines(text)]
    for record in records:
        if not isinstance(record, dict):
            raise ValueError("a line is not a JSON object")
    return records


def json_array(text: str) -> list[dict[str, Any]]:
    """The rows of a JSON results array (empty text: none).

    Raises:
        ValueError: Not a JSON array of objects.
    """
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("not a JSON array of rows")
    return data


def assembled_pending(array: list[dict[str, Any]], pending: list[dict[str, Any]]) -> bool:
    """Whether ``pending`` rows are already the tail of the ``array`` (a run killed after assembling it,
    before removing the pending file)."""
    return bool(pending) and len(array) >= len(pending) and array[len(array) - len(pending) :] == pending


def iter_records(path: Path, action: str = "resume from {}") -> Iterator[dict[str, Any]]:
    """Every row of a results file as a dict (CSV values as strings), in file order; none if it is absent.

    Args:
        path: A .csv, .jsonl or .json results file.
        action: What the reader does, as error messages say it (``{}`` is the path).

    Raises:
        OutputError: The file cannot be read, or is not a results file of its format.
    """
    try:
        fmt = format_of(path)
        text = _text(path)
        pending = _text(pending_rows(path)) if fmt == ".json" else None
    except OSError as exc:
        raise OutputError(f"cannot {action.format(path)}: {exc.strerror or exc}") from None
    try:
        if fmt == ".json":
            array = json_array(text or "")
            rows = json_lines(pending or "")
            yield from array
            if not assembled_pending(array, rows):
                yield from rows
        elif fmt == ".jsonl":
            yield from json_lines(text or "")
        elif text:
            lines = text.split("\n")[:-1]
            reader = csv.DictReader(io.StringIO("\n".join(lines) + "\n"))
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ValueError("no 'path' column")
            for row in reader:
                if row.get("path") is not None:
                    yield row
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"cannot {action.format(path)}: it is not an edgecnn result file ({exc})") from None
