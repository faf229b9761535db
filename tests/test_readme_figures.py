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
