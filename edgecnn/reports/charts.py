"""Chart geometry for the report templates: learning curves, the reliability diagram, the confusion grid.

Everything here is numbers; the templates draw them as inline SVG and HTML, so a report needs no plotting
library and no script to show its charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

WIDTH, HEIGHT = 420, 240
MARGIN = {"left": 48, "right": 12, "top": 12, "bottom": 36}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _frame(x_ticks: list[float], y_ticks: list[float]) -> dict[str, Any]:
    left, top = MARGIN["left"], MARGIN["top"]
    plot_w = WIDTH - left - MARGIN["right"]
    plot_h = HEIGHT - top - MARGIN["bottom"]
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return round(left + (x - x0) / ((x1 - x0) or 1) * plot_w, 1)

    def sy(y: float) -> float:
        return round(top + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h, 1)

    return {
        "sx": sx,
        "sy": sy,
        "width": WIDTH,
        "height": HEIGHT,
        "left": left,
        "top": top,
        "right": left + plot_w,
        "bottom": top + plot_h,
        "x_ticks": [{"x": sx(t), "label": f"{t:g}"} for t in x_ticks],
        "y_ticks": [{"y": sy(t), "label": f"{t:g}"} for t in y_ticks],
    }


def line_chart(
    series: dict[str, Sequence[float]], title: str, phase_starts: Sequence[int] = ()
) -> dict[str, Any]:
    """A line chart of per-epoch values (epochs from 1); ``series`` maps a legend name to its values."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    epochs = max((len(vs) for vs in series.values()), default=1)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    frame = _frame(nice_ticks(1, max(2, epochs), min(8, max(1, epochs - 1))), nice_ticks(low, high))
    lines = []
    for index, (name, vs) in enumerate(series.items()):
        points = [
            (frame["sx"](i + 1), frame["sy"](v))
            for i, v in enumerate(vs)
            if v is not None and math.isfinite(v)
        ]
        if points:
            lines.append(
                {
                    "name": name,
                    "index": index,
                    "points": " ".join(f"{x},{y}" for x, y in points),
                    "dots": [{"x": x, "y": y} for x, y in points],
                }
            )
    phases = [frame["sx"](start + 0.5) for start in phase_starts]
    return {
        **{k: v for k, v in frame.items() if k not in ("sx", "sy")},
        "title": title,
        "lines": lines,
        "phases": phases,
    }


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """The reliability diagram: per confidence bin, the share of correct answers, and the calibration error.

    Args:
        confidence: The top-1 probability of each image.
        correct: Whether the top-1 label was right.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    frame = _frame(nice_ticks(0, 1), nice_ticks(0, 1))
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece, total = [], 0.0, len(confidence)
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        lo, hi = float(edges[b]), float(edges[b + 1])
        row: dict[str, Any] = {"lo": lo, "hi": hi, "count": n, "accuracy": None, "confidence": None}
        if n:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += n / total * abs(acc - conf)
            row.update(
                accuracy=acc,
                confidence=conf,
                x=frame["sx"](lo) + 1,
                width=max(1.0, frame["sx"](hi) - frame["sx"](lo) - 2),
                y=frame["sy"](acc),
                height=round(frame["bottom"] - frame["sy"](acc), 1),
                gap_y=frame["sy"](max(acc, conf)),
                gap_height=round(abs(frame["sy"](acc) - frame["sy"](conf)), 1),
            )
        rows.append(row)
    diagonal = f"{frame['sx'](0)},{frame['sy'](0)} {frame['sx'](1)},{frame['sy'](1)}"
    return {
        **{k: v for k, v in frame.items() if k not in ("sx", "sy")},
        "bins": rows,
        "diagonal": diagonal,
        "ece": ece if total else None,
        "count": total,
    }


def confusion_grid(confusion: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str]) -> dict[str, Any]:
    """Rows of cells with counts, each row's share and a colour strength (0-1) for the template's grid."""
    matrix = np.asarray(confusion, dtype=np.int64)
    rows = []
    for i, name in enumerate(classes):
        total = int(matrix[i].sum()) if matrix.size else 0
        cells = []
        for j in range(len(classes)):
            count = int(matrix[i, j]) if matrix.size else 0
            share = count / total if total else 0.0
            cells.append(
                {"pred": j, "count": count, "share": share, "strength": round(share, 3), "diagonal": i == j}
            )
        rows.append({"true": i, "name": name, "total": total, "cells": cells})
    return {"classes": list(classes), "rows": rows}
