"""One parser of results files (``core.resultfile``) for --resume and the report; JSON output written as JSON
Lines underneath and assembled once."""

from __future__ import annotations

import json
import os

import pytest

from edgecnn.apps.outputs import ResultWriter, Row, read_statuses
from edgecnn.core.errors import OutputError
from edgecnn.core.resultfile import iter_records, pending_rows
from edgecnn.reports.rows import read_rows

#: Characters str.splitlines() takes for line ends, legal inside a JSON string and a file name.
ODD_NAMES = ("a\u2028b.jpg", "c\u2029d.jpg", "e\x85f.jpg", "g\x1ch.jpg")


def rows_for(names):
    return [Row(name, "ok", label="x", confidence=0.5, top_k=[("x", 0.5)]) for name in names]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_names_with_unicode_line_separators_read_back_the_same_everywhere(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    with ResultWriter(out) as writer:
        writer.write(rows_for(ODD_NAMES))
    assert sorted(read_statuses(out)) == sorted(ODD_NAMES)
    assert sorted(r.path for r in read_rows(out)) == sorted(ODD_NAMES)  # the report reads what resume reads


def test_report_and_resume_read_the_same_rows_with_a_torn_tail(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultWriter(out) as writer:
        writer.write(rows_for(["a.jpg", "b\u2028.jpg"]))
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"path": "torn')
    assert set(read_statuses(out)) == {r.path for r in read_rows(out)} == {"a.jpg", "b\u2028.jpg"}


def test_not_a_results_file_is_one_clear_error(tmp_path):
    out = tmp_path / "r.json"
    out.write_text('{"a": 1}')
    with pytest.raises(OutputError, match="not an edgecnn result file"):
        read_statuses(out)
    with pytest.raises(OutputError, match="for the report"):
        read_rows(out)


def test_json_rows_are_durable_per_batch_and_the_array_is_not_rewritten(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    writer = ResultWriter(out)
    assert json.loads(out.read_text()) == []  # a complete document from the start
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(str(b)), real_replace(a, b))[1])
    for batch in range(50):
        writer.write(rows_for([f"{batch}-{i}.jpg" for i in range(4)]))
        # every batch is on disk at once (a kill loses nothing), without rewriting the array
        assert len(read_statuses(out)) == 4 * (batch + 1)
    assert replaced == []
    assert not hasattr(writer, "_json_rows")
    writer.close()
    assert replaced == [str(out)]  # assembled once, at the end
    data = json.loads(out.read_text())
    assert [d["path"] for d in data] == [f"{b}-{i}.jpg" for b in range(50) for i in range(4)]
    assert not pending_rows(out).exists()


def test_json_resume_after_a_kill_keeps_every_row_once(tmp_path):
    out = tmp_path / "r.json"
    with ResultWriter(out) as writer:
        writer.write(rows_for(["a.jpg", "b.jpg"]))
    killed = ResultWriter(out, resume=True)
    killed.write(rows_for(["c.jpg"]))
    os.close(killed._fd)  # killed: never closed, the array never assembled
    with open(pending_rows(out), "a", encoding="utf-8") as fh:
        fh.write('{"path": "to')  # torn
    assert [r["path"] for r in iter_records(out)] == ["a.jpg", "b.jpg", "c.jpg"]
    with ResultWriter(out, resume=True) as writer:
        writer.write(rows_for(["d.jpg"]))
    assert [d["path"] for d in json.loads(out.read_text())] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def test_json_killed_after_assembling_before_removing_pending_rows(tmp_path):
    out = tmp_path / "r.json"
    with ResultWriter(out) as writer:
        writer.write(rows_for(["a.jpg", "b.jpg"]))
    # the array holds the pending rows already: a kill between the rename and the removal
    pending_rows(out).write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows_for(["b.jpg"])))
    assert [r["path"] for r in iter_records(out)] == ["a.jpg", "b.jpg"]
    with ResultWriter(out, resume=True) as writer:
        writer.write(rows_for(["c.jpg"]))
    assert [d["path"] for d in json.loads(out.read_text())] == ["a.jpg", "b.jpg", "c.jpg"]


def test_json_refused_without_resume_when_only_pending_rows_exist(tmp_path):
    out = tmp_path / "r.json"
    pending_rows(out).write_text(json.dumps(rows_for(["a.jpg"])[0].to_dict()) + "\n")
    with pytest.raises(OutputError, match="exists; pass --resume"):
        ResultWriter(out)
    assert pending_rows(out).exists() and not out.exists()
