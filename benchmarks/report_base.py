"""What every section of docs/BENCHMARKS.md uses: reading a result file, percentages, verdicts, provenance."""

from __future__ import annotations

import json
from typing import Any

from common import RESULTS


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def provenance(r: dict[str, Any]) -> str:
    m = r["machine"]
    return f"Command: `{r['command']}` (measured {r['measured']}, {m['cpu']}, {m['usable_cores']} cores)."
