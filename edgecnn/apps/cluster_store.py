"""The results folder of a Ray run (``classify --ray``): Parquet parts written atomically, read back to resume.

Rows reach the driver batch by batch and are written as ``parquet/part-RRRR-SSSSSS.parquet`` files (run
number, sequence), each one complete: it is written under a hidden temporary name and renamed, so a run killed at any
moment leaves only whole parts. ``--resume`` reads the ``path`` and ``status`` columns of every part and skips
those files; ``--force`` removes the parts of earlier runs. The columns and values are those of the local
``classify`` results (``apps.outputs.Row``), so a Ray run's rows equal a local run's on the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.apps.outputs import ResultWriter, Row
from edgecnn.core.atomic import atomic_output, write_atomic
from edgecnn.core.errors import OutputError
from edgecnn.core.files import resolved

PART_PATTERN = re.compile(r"^part-(\d{4})-(\d{6})\.parquet$")
PARTS_DIR = "parquet"  # only Parquet files in it: pandas.read_parquet(OUTPUT / "parquet") reads them all
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.json"
PARTIAL_PREFIX = ".part-"


def schema() -> Any:
    """The Arrow schema of the results: the columns of ``apps.outputs.Row`` (``top_k`` as a list of pairs)."""
    import pyarrow as pa

    pair = pa.struct([("label", pa.string()), ("confidence", pa.float64())])
    return pa.schema(
        [
            ("path", pa.string()),
            ("status", pa.string()),
            ("label", pa.string()),
            ("confidence", pa.float64()),
            ("top_k", pa.list_(pair)),
            ("error", pa.string()),
        ]
    )


def printable(path: str) -> str:
    """A path as a UTF-8 string: a name that is not valid UTF-8 keeps its odd bytes as ``\\xNN`` escapes
    (Parquet strings must be UTF-8; the JSON results of local ``classify`` do the same)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def rows_table(rows: Sequence[Row]) -> Any:
    """Rows as an Arrow table with the results schema."""
    import pyarrow as pa

    return pa.table(
        {
            "path": [printable(r.path) for r in rows],
            "status": [r.status for r in rows],
            "label": [r.label for r in rows],
            "confidence": [r.confidence for r in rows],
            "top_k": [[{"label": lab, "confidence": p} for lab, p in r.top_k] for r in rows],
            "error": [r.error for r in rows],
        },
        schema=schema(),
    )


def results_table(
    paths: Sequence[str], errors: Sequence[str | None], tops: Sequence[Sequence[tuple[str, float]]]
) -> Any:
    """The rows of one model batch, built column by column: a file with an error is ``skipped`` with it,
    the others ``ok`` with their most likely labels (``Predictor.top_k``: label, confidence)."""
    import pyarrow as pa

    pair = schema().field("top_k").type.value_type
    offsets = np.cumsum([0, *(len(top) for top in tops)], dtype=np.int32)
    pairs = pa.StructArray.from_arrays(
        [
            pa.array([label for top in tops for label, _ in top], pa.string()),
            pa.array([p for top in tops for _, p in top], pa.float64()),
        ],
        fields=list(pair),
    )
    return pa.table(
        [
            pa.array([printable(p) for p in paths], pa.string()),
            pa.array(["skipped" if error else "ok" for error in errors], pa.string()),
            pa.array([top[0][0] if top else None for top in tops], pa.string()),
            pa.array([top[0][1] if top else None for top in tops], pa.float64()),
            pa.ListArray.from_arrays(pa.array(offsets), pairs, type=schema().field("top_k").type),
            pa.array(list(errors), pa.string()),
        ],
        schema=schema(),
    )


def table_rows(table: Any) -> list[Row]:
    """The rows of an Arrow table with the results schema."""
    return [
        Row(
            path=d["path"],
            status=d["status"],
            label=d["label"],
            confidence=d["confidence"],
            top_k=[(pair["label"], pair["confidence"]) for pair in d["top_k"] or []],
            error=d["error"],
        )
        for d in table.select(schema().names).to_pylist()
    ]


class ResultsFolder:
    """The output folder of a Ray run: whole Parquet parts, the CSV on request, the summary.

    Args:
        folder: The output folder (created when missing).
        resume: Keep the parts already there (their files are skipped by the run).
        force: Remove the results of an earlier run first.
        flush_rows: Rows buffered before a part is written; a killed driver loses at most these (``--resume``
            redoes them).
        flush_seconds: A part is also written when the oldest buffered row is this old.

    Raises:
        OutputError: The folder is a file, holds results and neither ``resume`` nor ``force`` was given, or
            cannot be written.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        resume: bool = False,
        force: bool = False,
        flush_rows: int = 4096,
        flush_seconds: float = 10.0,
    ) -> None:
        self.folder = Path(folder)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder} is a file; with --ray, --output names a folder for the results")
        self.parts_dir = self.folder / PARTS_DIR
        try:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.parts_dir}: {exc.strerror or exc}") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to {self.folder}: permission denied")
        for partial in self.parts_dir.glob(PARTIAL_PREFIX + "*"):
            partial.unlink(missing_ok=True)  # a part whose writer was killed before its rename
        parts = self.parts()
        if parts and not resume:
            if not force:
                raise OutputError(
                    f"{self.folder} holds results of an earlier run; pass --resume to continue it or --force "
                    "to replace them"
                )
            for old in [*parts, self.folder / CSV_NAME, self.folder / SUMMARY_NAME]:
                old.unlink(missing_ok=True)
            parts = []
        runs = [int(m.group(1)) for p in parts if (m := PART_PATTERN.match(p.name))]
        self.run = max(runs, default=0) + 1
        self._sequence = 0
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._oldest = 0.0
        self.parts_written = 0

    def parts(self) -> list[Path]:
        """The complete parts in the folder, in the order they were written."""
        return sorted(p for p in self.parts_dir.iterdir() if PART_PATTERN.match(p.name))

    def iter_tables(self, columns: Sequence[str] | None = None) -> Iterator[Any]:
        """Each part's table (only ``columns`` when given), in the order the parts were written.

        Raises:
            OutputError: A part cannot be read.
        """
        import pyarrow.parquet as pq

        for part in self.parts():
            try:
                yield pq.read_table(part, columns=list(columns) if columns else None)
            except (OSError, ValueError) as exc:
                raise OutputError(
                    f"cannot read {part}: {exc}; remove it and run again with --resume"
                ) from None

    def statuses(self) -> dict[str, str]:
        """{``resume_key``: status} of every file the folder already has a row for."""
        done: dict[str, str] = {}
        for table in self.iter_tables(["path", "status"]):
            for path, status in zip(table.column("path").to_pylist(), table.column("status").to_pylist()):
                for key in stored_keys(path):
                    done[key] = status
        return done

    def write(self, table: Any) -> None:
        """Buffer a table of rows; a part is written when enough rows are buffered or the oldest is old."""
        if table.num_rows == 0:
            return
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.flush_rows or time.monotonic() - self._oldest >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one complete part (atomic rename) and make it durable."""
        if not self._pending:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self._pending).cast(schema())
        self._sequence += 1
        final = self.parts_dir / f"part-{self.run:04d}-{self._sequence:06d}.parquet"
        partial = self.parts_dir / f"{PARTIAL_PREFIX}{self.run:04d}-{self._sequence:06d}.partial"
        try:
            pq.write_table(table, partial)
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, final)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):  # the rename is durable once the folder entry is
            fd = os.open(self.parts_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._pending.clear()
        self._pending_rows = 0
        self.parts_written += 1

    def export_csv(self) -> Path:
        """Write every row of the folder to ``results.csv`` (the local ``classify`` CSV format), atomically."""
        target = self.folder / CSV_NAME
        with atomic_output(target) as tmp:  # tmp ends in .csv: ResultWriter picks the format by suffix
            writer = ResultWriter(tmp, force=True)
            try:
                for table in self.iter_tables():
                    writer.write(table_rows(table))
            finally:
                writer.close()
        return target

    def write_summary(self, text: str) -> Path:
        target = self.folder / SUMMARY_NAME
        write_atomic(target, text)
        return target


def resolve(path: str) -> str:
    """The resolved path of a local file (``core.files.resolved``, the one rule for "the same file"), a URI
    as it is."""
    return path if "://" in path else resolved(path)


def resume_key(path: str) -> str:
    """The key ``--resume`` matches a listed file by: its resolved path (a URI as it is), as the results
    store it (``printable``), so a name that is not UTF-8 matches the row written for it."""
    return printable(resolve(path))


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")  # what printable() writes for a byte that is not UTF-8


def stored_keys(path: str) -> set[str]:
    """The ``resume_key`` values a path read back from the results may stand for.

    A name that is not UTF-8 was stored with its odd bytes as ``\\xNN``; turned back into the path the
    listing gives (``os.fsdecode``'s surrogates), it resolves as the file does. A name that really holds
    the text ``\\xNN`` keeps its literal reading as well: the two cannot be told apart in the results.
    """
    keys = {resume_key(path)}
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), path)
    if raw != path:
        keys.add(resume_key(raw))
    return keys
