"""The driver side of ``classify --ray`` without a cluster: one row per file, ``--resume`` on any file name,
and ``--workers`` where it has nothing to set."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from edgecnn.apps.classify import ClassifyConfig, ClassifySummary
from edgecnn.apps.cluster import ActorPlan, warn_unused_workers
from edgecnn.apps.cluster_store import ResultsFolder, rows_table, stored_keys
from edgecnn.apps.cluster_tasks import list_inputs
from edgecnn.apps.outputs import Row

pytest.importorskip("pyarrow")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 10)).save(path, "PNG")
    return path


def test_a_file_given_twice_is_listed_once(tmp_path):
    folder = tmp_path / "photos"
    a, b = _image(folder / "a.png"), _image(folder / "b.png")
    (tmp_path / "link.png").symlink_to(a)
    missing = tmp_path / "gone.png"
    paths = [folder, a, tmp_path / "link.png", Path(os.path.relpath(b)), missing, missing]
    summary = ClassifySummary()
    listed, sources, rows = list_inputs(ClassifyConfig(paths=paths, recursive=True), {}, summary)
    assert listed == [str(a), str(b)]  # each at its first place
    assert sources == [os.fsencode(a), os.fsencode(b)]
    assert [(row.path, row.status) for row in rows] == [(str(missing), "skipped")]


def test_resume_matches_a_file_name_that_is_not_utf8(tmp_path):
    folder = tmp_path / "photos"
    odd = _image(folder / os.fsdecode(b"caf\xe9-\xff.png"))
    plain = _image(folder / "plain.png")
    literal = _image(folder / "lit\\xe9ral.png")  # a UTF-8 name that holds the text \xe9
    store = ResultsFolder(tmp_path / "out", flush_rows=1)
    store.write(rows_table([Row(str(odd), "ok", label="x", confidence=1.0, top_k=[("x", 1.0)])]))
    store.write(rows_table([Row(str(literal), "skipped", error="cannot decode image (x)")]))
    done = ResultsFolder(tmp_path / "out", resume=True).statuses()
    summary = ClassifySummary()
    config = ClassifyConfig(paths=[folder], recursive=True, resume=True, output=tmp_path / "out")
    listed, _, _ = list_inputs(config, done, summary)
    assert listed == [str(plain)]  # the odd name is not classified again, and gets no second row
    assert (summary.already_done, summary.already_skipped) == (2, 1)


def test_stored_keys_turn_the_escaped_bytes_back_into_the_path(tmp_path):
    name = os.fsdecode(str(tmp_path).encode() + b"/\xe9t\xe9.png")
    stored = rows_table([Row(name, "ok")]).column("path")[0].as_py()
    assert "\\xe9" in stored  # Parquet strings are UTF-8: the bytes are written as escapes
    assert os.path.realpath(name).encode("utf-8", "surrogateescape").decode(
        "utf-8", "backslashreplace"
    ) in stored_keys(stored)


def test_workers_without_gpu_actors_is_said_to_be_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="edgecnn"):
        warn_unused_workers(None, ActorPlan(4, 0.0, "cpu"))
        warn_unused_workers(3, ActorPlan(2, 1.0, "cuda"))  # decode tasks in front of GPU actors: it applies
        assert not caplog.records
        warn_unused_workers(3, ActorPlan(4, 0.0, "cpu"))
    assert [r.getMessage() for r in caplog.records] == [
        "--workers 3 is ignored: this run has no GPU actors, and each of its 4 CPU actors decodes its own files"
    ]
