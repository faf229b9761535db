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


def numbers(value) -> list[float]:
    """Every number in a result file, however deeply nested."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        value = list(value.values())
    return [n for item in value for n in numbers(item)] if isinstance(value, list) else []


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
    shown = set().union(*(renderings(v) for v in numbers(result)))
    quoted = [
        f"{number}{' ' if unit in ('ms', 'MB', 'min') else ''}{unit}" for number, unit in UNIT.findall(figure)
    ]
    assert quoted, f"no figure in {figure!r}"
    for text in quoted:
        assert text in shown, f"README quotes {text} from {source}, which holds no such figure"


def test_a_figure_not_in_the_result_file_is_caught():
    assert "1.92x" in renderings(1.922) and "99.1%" in renderings(0.991) and "7.0 min" in renderings(419.4)
    assert "2.00x" not in renderings(1.922) and "99.2%" not in renderings(0.991)


# Every measured figure on the site says where it comes from. A figure is a decimal percentage, a decimal
# ratio (``1.92x``), a latency, a throughput, a time or size with decimals, or a measured difference written
# with a mantissa (``9.9e-04``; a round ``1e-4`` is a bound). Its paragraph, list item, or table with the
# paragraph that introduces it, must name a results file that exists, the Benchmarks page, or "measured ...
# YYYY-MM-DD". Fenced blocks show what a command prints and are checked by tests/test_docs_code.py. A paragraph
# whose numbers are not measurements (a projection from measured figures, a budget) follows a
# ``<!-- figures: REASON -->`` line.
#: docs/BENCHMARKS.md is rendered from the results files by benchmarks/report.py and names its commands.
FIGURE_PAGES = [p for p in sorted((REPO / "docs").glob("*.md")) if p.name != "BENCHMARKS.md"] + [
    REPO / "README.md"
]
RESULTS = {p.name for p in (REPO / "benchmarks" / "results").iterdir()}
FIGURE = re.compile(
    r"\d+\.\d+ ?%"
    r"|\b\d+\.\d+x\b"
    r"|\b\d+(?:\.\d+)? ?(?:ms|µs)\b"
    r"|\b\d+\.\d+ ?(?:s|min|minutes|MB|GB|KB|MiB|GiB|KiB)\b"
    r"|\bimages/s\b|\brequests/s\b|\b\d+(?:\.\d+)? ?FPS\b"
    r"|\b\d\.\d+e-\d+"
)
PAGE_OR_DATE = re.compile(r"BENCHMARKS\.md|\bmeasured\b[^|]*?\b20\d\d-\d\d-\d\d\b", re.IGNORECASE)
RESULT_FILE = re.compile(r"\b[\w.-]+\.json\b")
EXEMPT = re.compile(r"^<!-- figures: \S.*-->$")
ITEM = re.compile(r"^\s*(?:[-*]|\d+\.) ")


def prose_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each paragraph, list item and table outside fenced blocks; a table is read
    with the paragraph just before it (its lead), and a block after a ``<!-- figures: ... -->`` line is left out."""
    found: list[tuple[int, int, list[str]]] = []  # (first line, last line, lines)
    current: list[str] = []
    start = 0
    fenced = exempt = False
    exempt_end = -1

    def close(last: int) -> None:
        nonlocal current, exempt_end
        if current and not exempt:
            found.append((start, last, current))
        elif current:
            exempt_end = last
        current = []

    for number, line in enumerate(text.splitlines(), 1):
        is_table = line.lstrip().startswith("|")
        if line.lstrip().startswith("```"):
            close(number - 1)
            fenced = not fenced
        elif fenced:
            continue
        elif not line.strip():
            if current:  # a marker holds until the block after it has ended
                close(number - 1)
                exempt = False
        elif EXEMPT.match(line.strip()):
            close(number - 1)
            exempt = True
        elif line.startswith("#"):  # a heading is a block of its own
            close(number - 1)
            start, current = number, [line]
            close(number + 1)
        else:
            in_table = bool(current) and current[-1].lstrip().startswith("|")
            if current and (ITEM.match(line) or in_table != is_table):
                close(number - 1)
            if not current:
                start = number
                if is_table and exempt_end == number - 2:
                    exempt = True  # the table of a lead paragraph left out
                elif is_table and found and found[-1][1] == number - 2:
                    start, _, current = found.pop()
            current.append(line)
    close(0)
    return [(first, "\n".join(lines)) for first, _, lines in found]


def names_a_source(block: str) -> bool:
    """Whether a block names the Benchmarks page, "measured ... YYYY-MM-DD" or a results file that exists."""
    return bool(PAGE_OR_DATE.search(block)) or any(name in RESULTS for name in RESULT_FILE.findall(block))


def unsourced_figures(text: str) -> list[str]:
    """``line: figures in 'block'`` for each block that quotes a figure and names no source."""
    problems = []
    for start, block in prose_blocks(text):
        figures = FIGURE.findall(block)
        if figures and not names_a_source(block):
            problems.append(f"{start}: {', '.join(figures[:3])} in {block[:90]!r}")
    return problems


@pytest.mark.parametrize("page", FIGURE_PAGES, ids=lambda p: p.name)
def test_every_figure_on_the_site_names_its_source(page):
    problems = unsourced_figures(page.read_text(encoding="utf-8"))
    assert not problems, (
        f"{page.name}: figures without a results file, the Benchmarks page or 'measured with ..., YYYY-MM-DD':\n"
        + "\n".join(problems)
    )


def test_an_unsourced_figure_is_caught():
    assert unsourced_figures("Intro.\n\nIt ran 1.92x as fast, 17.8 ms per batch.\n")
    assert unsourced_figures("- a list item at 99.1%\n- another, see BENCHMARKS.md\n")
    assert unsourced_figures("Intro.\n\n| what | figure |\n|---|---|\n| speed | 396 images/s |\n")
    assert unsourced_figures("It ran 1.92x as fast (`no_such_result.json`).\n")
    assert unsourced_figures("Measured 2026-11-23.\n\nIt then ran 1.92x as fast.\n")
    assert not unsourced_figures(
        "It ran 1.92x as fast (`transfer_int8_cats_dogs_efficientnet-lite0.json`).\n"
    )
    assert not unsourced_figures("It took 4.5 s (measured with `time make demo`, 2026-11-23).\n")
    assert not unsourced_figures(
        "See [Benchmarks](BENCHMARKS.md):\n\n| what | figure |\n|---|---|\n| a | 1.5x |\n"
    )
    assert not unsourced_figures("<!-- figures: a projection -->\n\nAbout 1.6 ms per image.\n")
    assert not unsourced_figures(
        "<!-- figures: a projection -->\nProjected:\n\n| a | b |\n|---|---|\n| c | 9.0 min |\n"
    )
    assert unsourced_figures("<!-- figures: a projection -->\nProjected.\n\nThen 2.5x faster.\n")
    assert not unsourced_figures("```text\nspeed 17.5 ms\n```\n")
    assert not unsourced_figures("Within 1 percentage point, a bound of 1e-4, 20% held out by default.\n")
