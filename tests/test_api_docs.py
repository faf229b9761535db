"""docs/API.md's examples run as written, from the repository root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "API.md").read_text(encoding="utf-8"), re.S)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_api_example_runs(index, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = compile(BLOCKS[index], f"docs/API.md block {index + 1}", "exec")
    exec(code, {"__name__": f"api_example_{index}"})
