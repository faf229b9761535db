"""The sort journal: ``classify --sort-into`` records each move or copy before it makes it.

For each batch, the planned placements (source, target, move or copy, and the row that will say so) are
written to ``<results>.sorting`` and flushed to disk; then the files are placed; then the rows are written
to the results file; then the journal is removed. A run killed anywhere in between leaves a journal that
``--resume`` reads first (``recover``): every placement whose row is missing is completed (the file is at
its source or at its target, never lost, never placed twice) and its row written; the hidden partial copy a
kill left beside a target (named by the journal's process id) is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.apps.outputs import RETRY, Row
from edgecnn.apps.sorting import complete_placement, partial_path
from edgecnn.core.errors import OutputError
from edgecnn.core.files import resolved
from edgecnn.core.resultfile import json_lines


@dataclass
class Placement:
    """One planned move or copy and the row that records it."""

    row: Row
    source: Path
    target: Path
    move: bool
    #: The process that made (or makes) the placement: it names the hidden partial copy beside the target.
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "target": str(self.target),
            "move": self.move,
            "pid": os.getpid() if self.pid is None else self.pid,
            "row": self.row.to_dict(),
        }


def journal_path(results: Path) -> Path:
    """The journal of the results file ``results``."""
    return results.with_name(results.name + ".sorting")


class SortJournal:
    """The journal beside a results file.

    Args:
        results: The results file.
    """

    def __init__(self, results: Path) -> None:
        self.path = journal_path(results)

    def record(self, placements: Sequence[Placement]) -> None:
        """Write the batch's planned placements and make them durable (before any file is placed)."""
        if not placements:
            return
        # ASCII JSON: a file name that is not UTF-8 (lone surrogates) round-trips as \udcXX escapes.
        data = "".join(json.dumps(p.to_dict()) + "\n" for p in placements).encode("ascii")
        staged = self.path.with_name(self.path.name + ".new")
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(staged, self.path)  # the old journal or the new one, whole, whenever a kill lands
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def clear(self) -> None:
        """The batch's rows are written: its placements need no record any more."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot remove {self.path}: {exc.strerror or exc}") from None

    def pending(self) -> list[Placement]:
        """The placements a killed run recorded (none when it finished its last batch).

        Raises:
            OutputError: The journal cannot be read.
        """
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read {self.path}: {exc}") from None
        try:
            return [
                Placement(
                    Row.from_dict(e["row"]),
                    Path(e["source"]),
                    Path(e["target"]),
                    bool(e["move"]),
                    e.get("pid"),
                )
                for e in json_lines(text)
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"cannot read {self.path}: not an edgecnn sort journal ({exc})") from None

    def recover(self, recorded: dict[str, str]) -> list[Row]:
        """Complete the placements of a killed run whose rows are missing; returns those rows, to be written
        (then ``clear``).

        Args:
            recorded: {resolved path: status} of the rows in the results file.
        """
        rows = []
        pending = self.pending()
        for placement in pending:
            if isinstance(placement.pid, int):  # a copy killed half-way: never the only copy of the file
                with contextlib.suppress(OSError):
                    partial_path(placement.target, placement.pid).unlink(missing_ok=True)
        # This process completes them now: the journal names it, so a kill during recovery is swept too.
        self.record([dataclasses.replace(p, pid=None) for p in pending])
        for placement in pending:
            status = recorded.get(resolved(placement.source))
            if status is not None and status != RETRY:
                continue  # its row was written: the placement was complete before it
            row = placement.row
            try:
                row.sorted_to = str(complete_placement(placement.source, placement.target, placement.move))
            except OSError as exc:
                row.status, row.error, row.sorted_to = "skipped", f"cannot sort: {exc.strerror or exc}", None
            rows.append(row)
        return rows
