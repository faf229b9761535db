"""The HTML reports in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Each test opens a report from ``file://``, counts what is shown, clicks a filter or a confusion-matrix cell
and checks the result, and saves a screenshot. Without Playwright or a browser that starts, they skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefiles import save
from onnxmodels import mean_colour_model, solid
from test_reports import COLOURS, HOSTILE, colour_folder, page_data
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()
CHUNK = 96  # cards the page renders at a time (report.js)


@pytest.fixture()
def open_page(browser, tmp_path):
    """Open a report; the page fails the test on any script error or alert, and leaves a screenshot."""
    pages = []

    def open_report(report: Path, color_scheme: str = "light", height: int = 900):
        context = browser.new_context(viewport={"width": 1280, "height": height}, color_scheme=color_scheme)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("dialog", lambda dialog: (page.errors.append("dialog: " + dialog.message), dialog.dismiss()))
        page.on("request", lambda r: r.url.startswith(("http:", "https:")) and page.errors.append(r.url))
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        pages.append(page)
        return page

    yield open_report
    for i, page in enumerate(pages):
        page.screenshot(path=str(tmp_path / f"screenshot-{i}.png"), full_page=True)
        assert (tmp_path / f"screenshot-{i}.png").stat().st_size > 1000
        assert not page.errors, page.errors
        page.context.close()


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def loaded_thumbnails(page) -> int:
    return page.evaluate(
        "[...document.querySelectorAll('.card img')].filter(i => i.complete && i.naturalWidth > 0).length"
    )


def classify_report(tmp_path: Path, per_colour: int, hostile: bool = False) -> Path:
    model = mean_colour_model(tmp_path / "colour.onnx")
    photos = colour_folder(tmp_path / "photos", per_colour, hostile=hostile)
    report = tmp_path / "report.html"
    args = [
        "classify",
        str(photos),
        "-r",
        "--model",
        str(model),
        "--top-k",
        "2",
        "--report",
        str(report),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    return report


def test_classify_report_counts_filters_and_names(open_page, tmp_path):
    report = classify_report(tmp_path, 5, hostile=True)
    page = open_page(report)
    assert page.locator(".card").count() == 18 and page.locator("section.group").count() == 3
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert loaded_thumbnails(page) == 18  # every thumbnail is a real image (embedded in the page)
    assert texts(page, "#count-skipped") == ["1"] and "broken.jpg" in page.locator("#skipped").inner_text()

    # Hostile names are text: the whole path in the card's title, the name on the card, no alert, no element.
    titles = page.eval_on_selector_all(".card", "cards => cards.map(c => c.title)")
    for name in HOSTILE:
        assert str(tmp_path / "photos" / name) in titles
    assert "\"quote'&amp;.png" in texts(page, ".card .name")
    assert page.locator("main script, main img:not(.frame img)").count() == 0

    # The label filter shows one group, least confident first.
    page.locator("[data-filter-label]", has_text="green").click()
    assert texts(page, "section.group h3") == ["green (6)"]
    metas = texts(page, ".card .meta")
    assert len(metas) == 6 and all(m.startswith("green ") for m in metas)
    confidences = [float(m.split()[1]) for m in metas]
    assert confidences == sorted(confidences)
    assert page.get_attribute("[data-filter-label='-1']", "aria-pressed") == "false"

    # The confidence range hides what is outside it.
    page.locator("[data-filter-label='-1']").click()
    page.fill("#conf-max", "0.3")
    page.wait_for_function("() => document.getElementById('shown-count').textContent.startsWith('0 of')")
    assert page.locator(".card").count() == 0
    page.fill("#conf-max", "1")
    page.wait_for_function("() => document.querySelectorAll('.card').length === 18")


def test_a_500_image_report_loads_lazily(open_page, tmp_path):
    report = classify_report(tmp_path, 167)  # 501 images: thumbnails in report_files/
    assert len(page_data(report)["items"]) == 501
    page = open_page(report)
    shown = page.locator(".card").count()
    assert 0 < shown <= 3 * CHUNK  # a chunk per label group, not 501 cards
    page.wait_for_function("() => document.querySelectorAll('.card img').length > 0")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].slice(0, 8).every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator("[data-filter-label]", has_text="red").click()
    assert page.locator(".card").count() == CHUNK
    page.locator("section.group .more").scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelectorAll('.card').length > {CHUNK}")
    page.mouse.wheel(0, 100_000)
    page.wait_for_function("() => document.querySelectorAll('.card').length === 167", timeout=10_000)


def test_dark_mode_follows_the_system(open_page, tmp_path):
    report = classify_report(tmp_path, 2)
    light = open_page(report).evaluate("getComputedStyle(document.body).backgroundColor")
    dark = open_page(report, color_scheme="dark").evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(255, 255, 255)" and dark != light


def labelled_folder(root: Path, per_class: int) -> Path:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            save(solid(colour), root / name / f"{name}-{i}.png")
    return root


@pytest.fixture()
def evaluation(tmp_path):
    """A labelled folder with two mistakes (a green-looking and a blue-looking file in red/), evaluated."""
    labelled = labelled_folder(tmp_path / "labelled", 4)
    save(solid((90, 130, 80)), labelled / "red" / "looks-green-1.png")
    save(solid((100, 100, 140)), labelled / "red" / "looks-blue-1.png")
    model = mean_colour_model(tmp_path / "model.onnx")
    report = tmp_path / "eval.html"
    result = runner.invoke(app, ["evaluate", str(model), str(labelled), "--report", str(report)])
    assert result.exit_code == 0, result.output
    return report


def test_evaluate_report_confusion_cell_shows_its_images(open_page, evaluation):
    page = open_page(evaluation)
    data = page_data(evaluation)
    labels = data["labels"]
    red, green = labels.index("red"), labels.index("green")
    assert page.locator("#accuracy").inner_text() == "85.71%"  # 12 of 14
    cell = page.locator(f".cell[data-true='{red}'][data-pred='{green}']")
    assert cell.inner_text() == "1"
    cell.click()
    assert page.locator("#cell-title").inner_text().startswith("true red, predicted green: 1 image")
    assert texts(page, "#cell-gallery .card .name") == ["looks-green-1.png"]
    page.locator(f".cell[data-true='{red}'][data-pred='{red}']").click()
    assert page.locator("#cell-gallery .card").count() == 4
    assert texts(page, "#mistakes .card .name") == sorted(
        ["looks-green-1.png", "looks-blue-1.png"],
        key=lambda n: -next(i["c"] for i in data["items"] if i["p"].endswith(n)),
    )
    assert page.locator("#reliability rect.bin").count() >= 1


def test_evaluate_report_shows_where_two_models_disagree(open_page, tmp_path):
    import onnx
    from onnx import numpy_helper

    labelled = labelled_folder(tmp_path / "labelled", 3)
    model = mean_colour_model(tmp_path / "model.onnx")
    # Same labels, but its weights tell red from blue the other way round: the two disagree on red and blue.
    graph = onnx.load(str(model))
    weight = next(t for t in graph.graph.initializer if t.name == "w")
    array = numpy_helper.to_array(weight)[[2, 1, 0]]
    weight.CopyFrom(numpy_helper.from_array(array, "w"))
    onnx.save(graph, str(tmp_path / "fp32.onnx"))
    report = tmp_path / "compare.html"
    args = [
        "evaluate",
        str(model),
        str(labelled),
        "--compare",
        str(tmp_path / "fp32.onnx"),
        "--report",
        str(report),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 33.33% (6 of 9 images differ)" in result.output
    page = open_page(report)
    names = texts(page, "#disagreements .card .name")
    assert sorted(names) == sorted(f"{c}-{i}.png" for c in ("red", "blue") for i in range(3))
    assert all("other model: " in t for t in texts(page, "#disagreements .card figcaption"))


def test_training_report_in_the_browser(open_page, trained_run):
    page = open_page(trained_run / "report.html")
    data = page_data(trained_run / "report.html")
    assert page.locator("svg.chart polyline.line").count() >= 2  # training and validation loss at least
    wrong = sum(item["g"] != item["y"] for item in data["items"])
    assert page.locator("#mistakes .card").count() == min(wrong, CHUNK)
    cell = page.locator(".cell[data-true='0'][data-pred='0']")
    cell.click()
    assert page.locator("#cell-gallery .card").count() == min(int(cell.inner_text()), CHUNK)
    assert "learning_rate" in page.locator("table.settings").inner_text()
