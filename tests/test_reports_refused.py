"""A refused rerun leaves the earlier report whole; --resume embeds only the atlases the report writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagefiles import save
from onnxmodels import mean_colour_model, solid
from typer.testing import CliRunner

import edgecnn
import edgecnn.reports.classify as classify_report
import edgecnn.reports.evaluate as evaluate_report
from edgecnn.cli import app
from edgecnn.core.errors import EdgecnnError
from edgecnn.reports.page import files_dir
from edgecnn.reports.thumbs import INDEX, Thumbnailer, read_index

runner = CliRunner()


@pytest.fixture()
def model(tmp_path):
    return mean_colour_model(tmp_path / "colour.onnx")


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(230, 20, 20), (20, 230, 20), (20, 20, 230)] * 2):
        save(solid(colour), folder / f"p{i}.png")
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_refused_classify_rerun_keeps_the_report_and_its_thumbnails(model, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(classify_report, "EMBED_LIMIT", 2)  # thumbnails beside the page
    out, report = tmp_path / "r.jsonl", tmp_path / "m.html"
    base = ["classify", str(photos), "--model", str(model), "-o", str(out), "--report", str(report), "-q"]
    assert runner.invoke(app, base).exit_code == 0
    before, page = snapshot(files_dir(report)), report.read_bytes()
    assert INDEX in before and len(before) >= 2

    refused = runner.invoke(app, base)  # no --force, no --resume
    assert refused.exit_code == 2 and "exists; pass --resume" in refused.output
    assert snapshot(files_dir(report)) == before and report.read_bytes() == page

    with pytest.raises(EdgecnnError, match="exists; pass --resume"):  # the Python API likewise
        edgecnn.classify(photos, model=model, output=out, report=report)
    assert snapshot(files_dir(report)) == before and report.read_bytes() == page

    forced = runner.invoke(app, [*base, "--force"])  # a run that goes ahead replaces the old atlases
    assert forced.exit_code == 0, forced.output
    after = snapshot(files_dir(report))
    assert INDEX in after and not (set(after) - {INDEX}) & (set(before) - {INDEX})


def test_refused_evaluate_keeps_the_report_and_its_thumbnails(model, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_report, "EMBED_LIMIT", 2)
    labelled = tmp_path / "labelled"
    for name, colour in {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}.items():
        (labelled / name).mkdir(parents=True)
        save(solid(colour), labelled / name / "0.png")
    report = tmp_path / "m.html"
    edgecnn.evaluate(model, labelled, report=report)
    before, page = snapshot(files_dir(report)), report.read_bytes()
    assert any(name.endswith(".jpg") for name in before)
    result = runner.invoke(app, ["evaluate", str(model), str(tmp_path / "missing"), "--report", str(report)])
    assert result.exit_code == 2, result.output
    assert snapshot(files_dir(report)) == before and report.read_bytes() == page


def test_index_entries_other_than_our_atlases_are_ignored(tmp_path):
    folder = tmp_path / "m_files"
    with Thumbnailer(folder) as thumbs:
        thumbs.add("a.png", save(np.full((40, 40, 3), 90, np.uint8), tmp_path / "a.png"))
    thumbs.save_index()
    (tmp_path / "secret.txt").write_text("password")
    (folder / "evil.jpg").write_bytes(b"\xff\xd8 not ours")
    index = json.loads((folder / INDEX).read_text())
    index["s.png"] = ["../secret.txt", 0, 0, 8, 8, 8, 8]
    index["e.png"] = ["evil.jpg", 0, 0, 8, 8, 8, 8]
    index["abs.png"] = [str(tmp_path / "secret.txt"), 0, 0, 8, 8, 8, 8]
    (folder / INDEX).write_text(json.dumps(index))
    assert set(read_index(folder)) == {"a.png"}


def test_resumed_report_does_not_embed_files_named_by_the_index(model, photos, tmp_path):
    out, report = tmp_path / "r.jsonl", tmp_path / "m.html"
    (tmp_path / "secret.txt").write_text("top secret password")
    folder = files_dir(report)
    folder.mkdir()
    first = sorted(photos.iterdir())[0]
    row = {"path": str(first), "status": "ok", "label": "red", "confidence": 0.9, "top_k": [], "error": None}
    out.write_text(json.dumps(row) + "\n")  # done by an earlier run: its thumbnail comes from the index
    (folder / INDEX).write_text(json.dumps({str(first): ["../secret.txt", 0, 0, 8, 8, 8, 8]}))
    base = ["classify", str(first), "--model", str(model), "-o", str(out), "--report", str(report), "-q"]
    assert runner.invoke(app, [*base, "--resume"]).exit_code == 0
    import base64

    blob = report.read_text()
    encoded = base64.b64encode(b"top secret password").decode()
    assert "top secret" not in blob and encoded[:16] not in blob
