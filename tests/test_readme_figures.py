"""The README's quoted model output is what the shipped model prints, so the figures cannot go stale."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from edgecnn.core.cpuinfo import int8_saturates

README = (REPO / "README.md").read_text(encoding="utf-8")
LOAD = re.compile(r'^(\w+) = edgecnn\.load\("([^"]+)"\)', re.MULTILINE)
PREDICT = re.compile(r'^print\((\w+)\.predict\("([^"]+)"\)\)\s+#\s*(.+)$', re.MULTILINE)
#: The shipped model's int8 output moves in steps of 1/255: where int8 sums clip (x86 without VNNI, see
#: ``int8_saturates``) a probability may land one step away from the figure measured on other CPUs.
OUTPUT_STEP = 1 / 255


def quoted_predictions() -> list[tuple[str, str, str]]:
    """(model file, image, quoted output) for every ``print(model.predict(...))  # output`` in the README."""
    found = []
    for match in PREDICT.finditer(README):
        loads = [m for m in LOAD.finditer(README, 0, match.start()) if m.group(1) == match.group(1)]
        assert loads, f"README: {match.group(0)!r} has no `{match.group(1)} = edgecnn.load(...)` before it"
        found.append((loads[-1].group(2), match.group(2), match.group(3).strip()))
    return found


def test_the_readme_quotes_a_prediction():
    assert quoted_predictions(), "the README's Python example no longer quotes what predict prints"


@pytest.mark.parametrize(("model_file", "image", "quoted"), quoted_predictions())
def test_readme_prediction_figures_are_what_the_shipped_model_prints(model_file, image, quoted):
    import edgecnn

    printed = str(edgecnn.load(REPO / model_file).predict(REPO / image))
    if not int8_saturates():
        assert quoted == printed, f"README.md quotes {quoted!r}; {model_file} prints {printed!r}"
        return
    label, figure = re.fullmatch(r"(.+) \(([\d.]+)\)", quoted).groups()
    printed_label, printed_figure = re.fullmatch(r"(.+) \(([\d.]+)\)", printed).groups()
    assert label == printed_label
    assert abs(float(figure) - float(printed_figure)) <= OUTPUT_STEP + 0.0005  # + the 3-decimal rounding


#: How a result file's number is written in the README's figures table.
UNIT = re.compile(r"(\d+(?:\.\d+)?) ?(%|x\b|ms\b|MB\b|min\b)")


def renderings(value: float) -> set[str]:
    """Every way the figures table may write one number of a result file."""
    shown = {f"{value:.2f}x", f"{value:.1f} ms", f"{value / 1e6:.1f} MB", f"{value / 60:.1f} min"}
    if 0 <= value <= 1:
        shown |= {f"{value * 100:.1f}%", f"{value * 100:.0f}%"}
    return shown


def figure_rows() -> list[tuple[str, str]]:
    """(figure cell, result file name) for each row of the README's "What it gets" table."""
    section = README.split("## What it gets", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    return [(cells[1].strip(), cells[2].strip().strip("`")) for cells in rows[1:]]


def test_the_readme_quotes_figures_with_their_result_files():
    rows = figure_rows()
    assert len(rows) >= 2
    assert any("%" in figure for figure, _ in rows) and any("x)" in figure for figure, _ in rows)


@pytest.mark.parametrize(("figure", "source"), figure_rows())
def test_readme_figures_come_from_the_result_files(figure, source):
    import json

    result = json.loads((REPO / "benchmarks" / "results" / source).read_text(encoding="utf-8"))
    shown = set().union(*(renderings(v) for v in result.values() if isinstance(v, (int, float))))
    quoted = [
        f"{number}{' ' if unit in ('ms', 'MB', 'min') else ''}{unit}" for number, unit in UNIT.findall(figure)
    ]
    assert quoted, f"no figure in {figure!r}"
    for text in quoted:
        assert text in shown, f"README quotes {text} from {source}, which holds no such figure"


def test_a_figure_not_in_the_result_file_is_caught():
    assert "1.92x" in renderings(1.922) and "99.1%" in renderings(0.991) and "7.0 min" in renderings(419.4)
    assert "2.00x" not in renderings(1.922) and "99.2%" not in renderings(0.991)
