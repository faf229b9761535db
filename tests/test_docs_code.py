"""docs/API.md's examples run as written, from the repository root, and print what the page says they print.

A comment on a ``print(...)`` line is that line's output (``...`` stands for any text, as in doctest), so a
figure quoted on the page cannot drift from what the code prints.
"""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "API.md").read_text(encoding="utf-8"), re.S)
PRINTED = re.compile(r"^\s*print\(.*\)\s+# (?P<expected>.+)$")


def expected_prints(block: str) -> dict[int, str]:
    """Line number -> the output its comment states, for each commented ``print`` line of ``block``."""
    return {
        number: match["expected"]
        for number, line in enumerate(block.splitlines(), 1)
        if (match := PRINTED.match(line))
    }


def matches(expected: str, printed: str) -> bool:
    return doctest.OutputChecker().check_output(expected + "\n", printed + "\n", doctest.ELLIPSIS)


def run_block(index: int) -> dict[int, list[str]]:
    """Run one block; what each of its lines printed."""
    filename = f"docs/API.md block {index + 1}"
    printed: dict[int, list[str]] = {}

    def recording_print(*args, sep=" ", end="\n", file=None, flush=False):
        if file is not None and file is not sys.stdout:
            print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        caller = sys._getframe(1)
        if caller.f_code.co_filename == filename:
            printed.setdefault(caller.f_lineno, []).append(sep.join(map(str, args)))

    code = compile(BLOCKS[index], filename, "exec")
    exec(code, {"__name__": f"api_example_{index}", "print": recording_print})
    return printed


def test_the_page_has_examples():
    assert len(BLOCKS) >= 6
    assert sum(len(expected_prints(b)) for b in BLOCKS) >= 6  # the page states outputs to check


def test_the_output_check_can_fail():
    assert matches("circle (0.961)", "circle (0.961)")
    assert matches("[('square', 0.99...), ...]", "[('square', 0.9931), ('circle', 0.004)]")
    assert not matches("circle (0.998)", "circle (0.961)")
    assert expected_prints("x = 1\nprint(x)  # 1\nprint(x)\n") == {2: "1"}


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_api_example_runs_and_prints_what_the_page_says(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    printed = run_block(index)
    for number, expected in expected_prints(BLOCKS[index]).items():
        assert number in printed, (
            f"block {index + 1}, line {number} printed nothing; the page says {expected!r}"
        )
        for text in printed[number]:
            assert matches(expected, text), (
                f"block {index + 1}, line {number}: printed {text!r}, page says {expected!r}"
            )
