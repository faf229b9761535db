"""HTML reports without a browser: thumbnails, the page data, escaping, resume, Ctrl-C, the API and the CLI.

The browser tests (clicks, filters, lazy loading, what is shown) are in tests/test_reports_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from imagefiles import save
from onnxmodels import mean_colour_model, solid
from PIL import Image
from typer.testing import CliRunner

import edgecnn
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError
from edgecnn.reports.page import EMBED_LIMIT, files_dir, script_json
from edgecnn.reports.rows import read_rows
from edgecnn.reports.thumbs import ATLAS_PATTERN, INDEX, THUMB_SIDE, Thumbnailer, make_thumbnail

runner = CliRunner()
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
#: Hostile file names. A name cannot hold "/", so ``<script>alert(1)</script>.png`` is a folder ``<script>alert(1)<``
#: holding ``script>.png``: the path the report shows is exactly that string.
HOSTILE = ("<script>alert(1)</script>.png", "\"quote'&amp;.png", "<img src=x onerror=alert(2)>.png")


def page_data(report: Path) -> dict:
    """The JSON the page's script reads (the same parse the browser does)."""
    html = report.read_text(encoding="utf-8")
    blob = html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    return json.loads(blob)


def thumbnail(report: Path, item: dict) -> np.ndarray:
    """An item's thumbnail as the page shows it: its window onto its atlas (embedded, or a file beside)."""
    import base64
    import io
    from urllib.parse import unquote

    atlas, x, y, w, h = item["t"][:5]
    url = page_data(report)["atlases"][atlas]
    if url.startswith("data:image/jpeg;base64,"):
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    else:
        image = Image.open(report.parent / unquote(url))
    return np.asarray(image.convert("RGB").crop((x, y, x + w, y + h)))


def colour_folder(root: Path, per_colour: int, size: int = 20, hostile: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(per_colour):
        for name, colour in COLOURS.items():
            save(solid(colour, size), root / f"{name}_{i:04d}.png")
    if hostile:
        for name, colour in zip(HOSTILE, COLOURS.values()):
            (root / name).parent.mkdir(exist_ok=True)
            save(solid(colour, size), root / name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture()
def model(tmp_path):
    return mean_colour_model(tmp_path / "colour.onnx")


def test_script_json_cannot_close_its_element():
    text = script_json({"p": "</script><script>alert(1)</script><!-- &amp; \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["p"] == "</script><script>alert(1)</script><!-- &amp; \u2028"


def test_thumbnail_from_a_large_model_input_keeps_the_photo_aspect(tmp_path):
    photo = save(np.full((100, 300, 3), 200, np.uint8), tmp_path / "wide.png")  # 300 x 100
    model_input = np.zeros((96, 96, 3), np.uint8)
    model_input[:] = (10, 200, 30)
    thumb, shown = make_thumbnail(photo, model_input)
    assert thumb.size == (96, 96) and shown == (THUMB_SIDE, round(THUMB_SIDE / 3))  # the page scales it
    assert np.asarray(thumb)[5, 5].tolist() == [10, 200, 30]  # made from the model input, not the file
    thumb, shown = make_thumbnail(photo, np.zeros((224, 224, 3), np.uint8))
    assert thumb.size == shown == (THUMB_SIDE, round(THUMB_SIDE / 3))  # a large input is resized


def test_thumbnail_from_the_file_when_the_model_input_is_small(tmp_path):
    photo = save(np.full((400, 200, 3), (0, 0, 250), np.uint8), tmp_path / "tall.png")
    thumb, shown = make_thumbnail(photo, np.zeros((16, 16, 3), np.uint8))
    assert thumb.size == shown == (64, 128)
    assert np.asarray(thumb)[60, 30].tolist() == [0, 0, 250]


def test_thumbnail_of_an_exif_rotated_photo_is_upright(tmp_path):
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: the stored 200 x 100 image is shown 100 x 200
    Image.fromarray(np.full((100, 200, 3), 128, np.uint8)).save(photo, exif=exif)
    assert make_thumbnail(photo, np.zeros((96, 96, 3), np.uint8))[1] == (64, 128)
    assert make_thumbnail(photo)[0].size == (64, 128)


def test_thumbnailer_packs_atlases_and_counts_failures(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with Thumbnailer(tmp_path / "thumbs") as thumbs:
        for i in range(27):
            thumbs.add(f"key{i}", save(np.full((50, 40, 3), 9 * i, np.uint8), tmp_path / f"{i}.png"))
        thumbs.add("bad", bad)
    assert thumbs.written == 27 and thumbs.failed == 1 and not thumbs.has("bad")
    atlases = sorted(p.name for p in (tmp_path / "thumbs").iterdir())
    assert len(atlases) == 2 and all(ATLAS_PATTERN.match(name) for name in atlases)  # 25 + 2, no temporary
    name, x, y, w, h, shown_w, shown_h = thumbs.placed["key26"]
    assert (w, h) == (shown_w, shown_h) == (40, 50) and name == atlases[1] and (x, y) == (128, 0)
    pixels = np.asarray(Image.open(tmp_path / "thumbs" / name))[y : y + h, x : x + w]
    assert abs(int(pixels.mean()) - 9 * 26) <= 2


def test_classify_report_small_run_is_one_file_with_everything(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", 4, hostile=True)
    report = tmp_path / "out" / "report.html"
    result = runner.invoke(
        app, ["classify", str(photos), "-r", "--model", str(model), "--report", str(report), "-q"]
    )
    assert result.exit_code == 1, result.output  # broken.jpg was skipped
    assert "report: " in result.output and report.exists()
    assert not files_dir(report).exists()  # a small run embeds its thumbnails
    data = page_data(report)
    assert len(data["items"]) == 15 and all(item["t"] for item in data["items"])
    assert all(url.startswith("data:image/jpeg;base64,") for url in data["atlases"])
    assert [s["p"].rsplit("/", 1)[-1] for s in data["skipped"]] == ["broken.jpg"]
    labels = data["labels"]
    for item in data["items"]:
        name = Path(item["p"]).name
        if name.split("_")[0] in COLOURS:
            assert labels[item["y"]] == name.split("_")[0]
    groups = [labels[item["y"]] for item in data["items"]]
    assert groups == sorted(groups, key=labels.index)  # grouped by label, in label order
    assert {str(photos / name) for name in HOSTILE} <= {item["p"] for item in data["items"]}
    html = report.read_text(encoding="utf-8")
    for name in HOSTILE:
        assert name.split("/")[0][:12] not in html  # the names are only inside the JSON, escaped
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_thumbnails_come_from_the_right_files(tmp_path):
    """The model inputs handed to the report are paired with their own rows: a red file gets a red thumbnail."""
    big = mean_colour_model(tmp_path / "big.onnx", size=96)
    photos = colour_folder(tmp_path / "photos", 3, size=120)
    report = tmp_path / "report.html"
    result = runner.invoke(
        app,
        ["classify", str(photos), "--model", str(big), "--report", str(report), "--batch-size", "4", "-q"],
    )
    assert result.exit_code == 1, result.output
    for item in page_data(report)["items"]:
        pixels = thumbnail(report, item)
        expected = COLOURS[Path(item["p"]).name.split("_")[0]]
        assert np.abs(pixels[10, 10].astype(int) - expected).max() < 30, item["p"]


def test_classify_report_of_a_larger_run_keeps_thumbnails_beside_it(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", EMBED_LIMIT // 3 + 5)
    report = tmp_path / "my report.html"
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "--report", str(report), "-q"]
    )
    assert result.exit_code == 1, result.output
    data = page_data(report)
    folder = files_dir(report)
    count = len(data["items"])
    assert count > EMBED_LIMIT and len(list(folder.glob("*.jpg"))) == -(-count // 25) == len(data["atlases"])
    assert all(url.startswith("my%20report_files/") for url in data["atlases"])  # URLs relative to the page
    assert sorted(p.name for p in folder.iterdir() if not ATLAS_PATTERN.match(p.name)) == [INDEX]
    for item in data["items"][:: count // 7]:
        expected = COLOURS[Path(item["p"]).name.split("_")[0]]
        assert np.abs(thumbnail(report, item)[5, 5].astype(int) - expected).max() < 30


def test_resume_report_covers_the_whole_output_file(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", EMBED_LIMIT // 3 + 10)
    out = tmp_path / "results.jsonl"
    report = tmp_path / "report.html"
    later = sorted(photos.glob("blue_*"))[-10:]
    hidden = tmp_path / "later"
    hidden.mkdir()
    for path in later:
        path.rename(hidden / path.name)
    base = ["classify", str(photos), "--model", str(model), "-o", str(out), "--report", str(report), "-q"]
    assert runner.invoke(app, base).exit_code == 1
    first = page_data(report)
    kept = files_dir(report) / first["atlases"][0].split("/", 1)[1]
    stamp = kept.stat().st_mtime_ns
    for path in later:
        (hidden / path.name).rename(path)
    result = runner.invoke(app, [*base, "--resume"])
    assert result.exit_code == 1, result.output
    data = page_data(report)
    assert (
        len(data["items"]) == len(first["items"]) + 10 == len([r for r in read_rows(out) if r.status == "ok"])
    )
    assert len(data["skipped"]) == 1  # broken.jpg, recorded by the first run, not duplicated
    assert kept.stat().st_mtime_ns == stamp  # the first run's thumbnails were kept, not made again
    assert first["atlases"][0] in data["atlases"] and all(item["t"] for item in data["items"])
    for item in data["items"][-12:]:
        expected = COLOURS[Path(item["p"]).name.split("_")[0]]
        assert np.abs(thumbnail(report, item)[5, 5].astype(int) - expected).max() < 30


def test_report_is_written_after_ctrl_c(model, tmp_path, monkeypatch):
    from edgecnn.runtime.predictor import Predictor

    photos = colour_folder(tmp_path / "photos", 10)
    calls = {"n": 0}
    original = Predictor.predict

    def interrupt_second_batch(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(Predictor, "predict", interrupt_second_batch)
    report = tmp_path / "report.html"
    args = [
        "classify",
        str(photos),
        "--model",
        str(model),
        "--report",
        str(report),
        "--batch-size",
        "8",
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert len(page_data(report)["items"]) == 8
    assert "The run was interrupted" in report.read_text(encoding="utf-8")


def test_report_path_must_be_html(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", 1)
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "--report", str(tmp_path / "r.txt")]
    )
    assert result.exit_code == 2 and "--report must name an .html file" in result.output
    with pytest.raises(ConfigError):
        edgecnn.classify(photos, model=model, report=tmp_path / "r.csv")


def test_read_rows_takes_the_latest_row_and_ignores_a_torn_line(tmp_path):
    csv_file = tmp_path / "r.csv"
    csv_file.write_text(
        "path,status,label,confidence,top_k,error\n"
        "a.jpg,skipped,,,,cannot sort: disk full\n"
        "b.jpg,ok,dogs,0.700000,dogs:0.700000;c:ats:0.300000,\n"
        "a.jpg,ok,cats,0.900000,cats:0.900000,\n"
        "c.jpg,ok,ca"
    )
    rows = read_rows(csv_file)
    assert [(r.path, r.status, r.label) for r in rows] == [("b.jpg", "ok", "dogs"), ("a.jpg", "ok", "cats")]
    assert rows[0].top_k == [("dogs", 0.7), ("c:ats", 0.3)]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps({"path": "x.png", "status": "ok", "label": "red", "confidence": 0.5}) + "\n{")
    assert read_rows(jsonl)[0].confidence == 0.5


def test_python_api_reports(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", 2)
    summary = edgecnn.classify(photos, model=model, report=tmp_path / "c.html")
    assert summary.classified == 6 and len(page_data(tmp_path / "c.html")["items"]) == 6
    with edgecnn.classify(photos, model=model, iterate=True, report=tmp_path / "i.html") as run:
        for _ in run:
            break  # leaving early still writes the page, with what was done
    assert (tmp_path / "i.html").exists()

    labelled = tmp_path / "labelled"
    for name, colour in COLOURS.items():
        (labelled / name).mkdir(parents=True)
        for i in range(3):
            save(solid(colour), labelled / name / f"{i}.png")
    save(solid(COLOURS["green"]), labelled / "red" / "looks-green.png")
    other = mean_colour_model(tmp_path / "other.onnx")
    result = edgecnn.evaluate(model, labelled, report=tmp_path / "e.html", compare=other)
    assert result.report == tmp_path / "e.html" and result.compare is not None
    assert result.compare["agreement"] == 1.0 and result.to_dict()["compare"]["images"] == 10
    data = page_data(tmp_path / "e.html")
    wrong = [item for item in data["items"] if item["g"] != item["y"]]
    assert [Path(item["p"]).name for item in wrong] == ["looks-green.png"]


def test_compare_with_other_labels_is_refused(model, tmp_path):
    labelled = tmp_path / "labelled"
    (labelled / "red").mkdir(parents=True)
    save(solid(COLOURS["red"]), labelled / "red" / "0.png")
    other = mean_colour_model(tmp_path / "other.onnx", labels=("a", "b", "c"))
    result = runner.invoke(app, ["evaluate", str(model), str(labelled), "--compare", str(other)])
    assert result.exit_code == 2 and "--compare model has labels a, b, c" in result.output


def test_training_writes_report_html(trained_run):
    report = trained_run / "report.html"
    data = page_data(report)
    run = json.loads((trained_run / "report.json").read_text())
    assert data["labels"] == run["classes"] and len(data["items"]) == run["data"]["val_images"]
    assert all(Path(item["p"]).exists() for item in data["items"])  # the real validation files, in order
    html = report.read_text(encoding="utf-8")
    assert 'class="line series-0"' in html and "Settings" in html and 'id="confusion"' in html


def test_hostile_labels_and_undecodable_names_stay_text(tmp_path):
    import os

    model = mean_colour_model(tmp_path / "m.onnx", labels=("<b>red</b>", "green & co", "blue"))
    photos = tmp_path / "photos"
    photos.mkdir()
    save(solid(COLOURS["red"]), photos / "red.png")
    save(solid(COLOURS["green"]), Path(os.fsdecode(photos / "green") + os.fsdecode(b"\xff.png")))
    report = tmp_path / "report.html"
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "--report", str(report), "-q"]
    )
    assert result.exit_code == 0, result.output
    html = report.read_text(encoding="utf-8")
    assert "<b>red</b>" not in html and "&lt;b&gt;red&lt;/b&gt;" in html and "green &amp; co" in html
    data = page_data(report)
    assert data["labels"][:2] == ["<b>red</b>", "green & co"]
    assert sorted(Path(item["p"]).name for item in data["items"]) == ["green\udcff.png", "red.png"]


def test_thumbnails_survive_move_into_sorted_folders(model, tmp_path):
    photos = colour_folder(tmp_path / "photos", 2)
    report = tmp_path / "report.html"
    args = ["classify", str(photos), "--model", str(model), "--sort-into", str(tmp_path / "sorted"), "--move"]
    result = runner.invoke(app, [*args, "--report", str(report), "-q"])
    assert result.exit_code == 1, result.output  # broken.jpg
    data = page_data(report)
    assert len(data["items"]) == 6 and not list(photos.glob("*.png"))  # moved away before the thumbnails
    for item in data["items"]:
        expected = COLOURS[Path(item["p"]).name.split("_")[0]]
        assert np.abs(thumbnail(report, item)[5, 5].astype(int) - expected).max() < 30
