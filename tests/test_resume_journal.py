"""The sort journal, deterministically: a run stopped between moving files and writing their rows; one row
per resolved file; the progress of a resumed run."""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

import pytest
from imagefiles import save
from onnxmodels import mean_colour_model, solid

from edgecnn.apps import sorting
from edgecnn.apps.classify import ClassifyConfig, classify_paths
from edgecnn.apps.outputs import ResultWriter
from edgecnn.core.files import unique_files
from edgecnn.core.resultfile import iter_records
from edgecnn.runtime.predictor import Predictor


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the process."""


@pytest.fixture()
def predictor(tmp_path):
    return Predictor(mean_colour_model(tmp_path / "m.onnx"), provider="cpu")


def photos(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        save(solid((10 + 20 * i, 200 - 15 * i, 30 + 7 * i)), folder / f"p{i:02d}.png")
    return folder


@pytest.mark.parametrize("move", [True, False])
def test_killed_after_sorting_before_the_rows_then_resumed(predictor, tmp_path, monkeypatch, move):
    folder = photos(tmp_path / "in", 10)
    out, sort = tmp_path / "r.jsonl", tmp_path / "sorted"
    config = dict(paths=[folder], output=out, sort_into=sort, move=move, batch_size=3)
    real_write = ResultWriter.write
    calls = []

    def write(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise Killed  # the batch's files are sorted, its rows not written
        real_write(self, rows)

    monkeypatch.setattr(ResultWriter, "write", write)
    with pytest.raises(Killed):
        classify_paths(ClassifyConfig(**config), predictor)
    monkeypatch.setattr(ResultWriter, "write", real_write)
    summary = classify_paths(ClassifyConfig(**config, resume=True), predictor)
    assert not summary.interrupted
    rows = list(iter_records(out))
    assert Counter(Path(r["path"]).name for r in rows) == {f"p{i:02d}.png": 1 for i in range(10)}
    tree = sorted(p.name for p in sort.rglob("*.png"))
    assert tree == [f"p{i:02d}.png" for i in range(10)]  # each file once in the sorted tree
    assert all(Path(r["sorted_to"]).is_file() for r in rows)
    assert len(list(folder.glob("*.png"))) == (0 if move else 10)
    assert not Path(str(out) + ".sorting").exists()


def test_the_same_file_named_three_ways_is_one_row_and_one_copy(predictor, tmp_path, monkeypatch):
    folder = photos(tmp_path / "samples", 3)
    monkeypatch.chdir(tmp_path)
    out, sort = tmp_path / "r.jsonl", tmp_path / "sorted"
    paths = [Path("samples"), Path("samples/p01.png"), Path("samples/../samples/p01.png")]
    summary = classify_paths(ClassifyConfig(paths=paths, output=out, sort_into=sort), predictor)
    rows = [r["path"] for r in iter_records(out)]
    assert len(rows) == 3 and summary.classified == 3
    assert sorted(p.name for p in sort.rglob("*.png")) == ["p00.png", "p01.png", "p02.png"]
    assert list(unique_files([folder / "p00.png", Path("samples/p00.png"), folder / "p02.png"])) == [
        folder / "p00.png",
        folder / "p02.png",
    ]


def test_progress_of_a_resumed_run_counts_its_own_files_and_ends_full(predictor, tmp_path):
    folder = photos(tmp_path / "in", 12)
    out = tmp_path / "r.csv"
    first = sorted(folder.iterdir())[:5]
    classify_paths(ClassifyConfig(paths=first, output=out), predictor)
    calls: list[tuple[int, int | None]] = []
    config = ClassifyConfig(paths=[folder], output=out, resume=True, batch_size=2)
    summary = classify_paths(
        config, predictor, on_progress=lambda d, t: calls.append((d, t)), count_in_background=True
    )
    assert summary.already_done == 5 and summary.classified == 7
    assert calls[-1] == (7, 7)
    assert all(t in (None, 7) for _, t in calls) and all(d <= 7 for d, _ in calls)


def sorted_once(out: Path, sort: Path, count: int) -> None:
    """Every photo has one row, and one full copy in the sorted tree, nothing else there."""
    rows = list(iter_records(out))
    assert Counter(Path(r["path"]).name for r in rows) == {f"p{i:02d}.png": 1 for i in range(count)}
    assert sorted(p.name for p in sort.rglob("*") if p.is_file()) == [f"p{i:02d}.png" for i in range(count)]
    assert all(p.stat().st_size > 0 for p in sort.rglob("*.png"))


def killed_mid_copy(monkeypatch, pid: int, at: int, run) -> Path:
    """Run ``run`` as process ``pid``, killed (no clean-up runs, as under SIGKILL) when its ``at``-th copy is
    written and synced under its hidden name but not yet named; returns that hidden copy."""
    calls: list[Path] = []
    real_link, real_unlink = sorting._link_into_place, Path.unlink

    def link_into_place(tmp, first):
        calls.append(tmp)
        if len(calls) == at:
            raise Killed
        return real_link(tmp, first)

    def unlink(self, missing_ok=False):
        if len(calls) < at or self != calls[-1]:
            real_unlink(self, missing_ok=missing_ok)

    with monkeypatch.context() as m:
        m.setattr(sorting, "_link_into_place", link_into_place)
        m.setattr(Path, "unlink", unlink)
        m.setattr(os, "getpid", lambda: pid)
        with pytest.raises(Killed):
            run()
    return calls[-1]


def test_copies_killed_half_way_leave_no_partial_copy_after_resume(predictor, tmp_path, monkeypatch):
    folder = photos(tmp_path / "in", 6)
    out, sort = tmp_path / "r.jsonl", tmp_path / "sorted"
    config = dict(paths=[folder], output=out, sort_into=sort, batch_size=3)
    first = killed_mid_copy(
        monkeypatch, 4_000_001, 5, lambda: classify_paths(ClassifyConfig(**config), predictor)
    )
    assert first.name.endswith(".partial-4000001")
    assert [p.name for p in sort.rglob(".*.partial-*")] == [first.name]  # the kill left one behind
    resume = ClassifyConfig(**config, resume=True)
    # the resume is killed too, while it completes that copy: its own half-made copy is left instead
    second = killed_mid_copy(monkeypatch, 4_000_002, 1, lambda: classify_paths(resume, predictor))
    assert [p.name for p in sort.rglob(".*.partial-*")] == [second.name] != [first.name]
    classify_paths(resume, predictor)
    sorted_once(out, sort, 6)
    assert not Path(str(out) + ".sorting").exists()


def test_a_move_across_file_systems_names_its_partial_copy_after_the_planned_target(tmp_path, monkeypatch):
    """The journal knows the planned target: a move that falls back to a copy (another file system) and to
    the next free name still writes its partial copy under the planned name, where a resume looks."""
    source, target = tmp_path / "a.png", tmp_path / "sorted" / "a.png"
    source.write_bytes(b"photo")
    target.parent.mkdir()
    target.write_bytes(b"another photo")  # the planned name was taken meanwhile

    def other_file_system(src, dst):  # a taken name may be reported first, as by some file systems
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "File exists")
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", other_file_system)
    tmp = killed_mid_copy(monkeypatch, 4_000_003, 1, lambda: sorting.place_file(source, target, move=True))
    assert tmp == sorting.partial_path(target, 4_000_003) and tmp.read_bytes() == b"photo"
    assert source.read_bytes() == b"photo"  # a move removes its source only once the copy has its name


def test_a_copy_killed_after_reserving_its_name_is_placed_again(predictor, tmp_path, monkeypatch):
    """Without hard links (some network and FAT file systems) a copy reserves its name as an empty file and
    renames the full copy onto it: a kill in between leaves the empty name, which the resume fills."""
    folder = photos(tmp_path / "in", 6)
    out, sort = tmp_path / "r.jsonl", tmp_path / "sorted"
    config = dict(paths=[folder], output=out, sort_into=sort, batch_size=3)
    renames = []

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    def replace(src, dst):
        renames.append(dst)
        if len(renames) == 4:
            raise Killed
        real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr(sorting.os, "link", no_links)
    monkeypatch.setattr(sorting.os, "replace", replace)
    with pytest.raises(Killed):
        classify_paths(ClassifyConfig(**config), predictor)
    monkeypatch.undo()
    assert Path(renames[-1]).stat().st_size == 0  # the reserved, empty name
    classify_paths(ClassifyConfig(**config, resume=True), predictor)
    sorted_once(out, sort, 6)
