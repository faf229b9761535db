"""Tables of an ``edgecnn benchmark`` report for the terminal: timing rows and accuracy.

They read only the JSON-ready report that ``run_benchmark`` returns, so a saved report renders the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = (
    "model",
    "precision",
    "provider",
    "batch",
    "median ms",
    "p95 ms",
    "p99 ms",
    "img/s",
    "vs first",
    "peak MB",
    "MMAC/img",
    "achieved",
    "% peak",
)


def format_table(report: dict[str, Any]) -> Any:
    """A rich Table with one row per model, provider and batch size."""
    from rich.markup import escape
    from rich.table import Table

    from edgecnn.tools.machine import describe_gpu

    gpu = describe_gpu(report["machine"].get("gpu"))
    where = report["machine"]["cpu"] + (f"; GPU {gpu}" if gpu else "")
    table = Table(title=f"edgecnn benchmark ({escape(where)})", title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("model", "precision", "provider") else "right")
    table.add_column("note", overflow="fold")
    names = {m["index"]: m["name"] for m in report["models"]}
    peaks = [
        f"{p['provider']} {p['precision']} {p['value']:,.1f} {p['unit']}"
        for p in report["peaks"]
        if p["value"]
    ]
    if peaks:
        table.caption = f"measured peak: {'; '.join(peaks)}"
        table.caption_justify = "left"
    for r in report["rows"]:
        ran = r["status"] == "ok"
        note = r["reason"] if not ran else (r["memory_note"] or "")
        table.add_row(
            escape(names.get(r["model_index"], r["model"])),
            r["precision"],
            r["provider"],
            str(r["batch_size"]),
            _num(r["median_ms"], ".2f"),
            _num(r["p95_ms"], ".2f"),
            _num(r["p99_ms"], ".2f"),
            _num(r["images_per_second"], ",.1f"),
            _num(r["throughput_vs_first"], ".2f", "x"),
            _num(r["peak_rss_mb"], ",.0f"),
            _num(r["macs_per_image"] / 1e6 if r["macs_per_image"] is not None else None, ",.2f"),
            _num(r["achieved_gops"], ",.2f", " " + r["ops_unit"]),
            _num(r["peak_share"] * 100 if r["peak_share"] is not None else None, ".1f", "%"),
            f"[red]{escape(r['status'])}[/red]: {escape(note)}" if not ran else escape(note),
        )
    return table


def format_accuracy(report: dict[str, Any]) -> Any:
    """A rich Table of accuracy and top-1 agreement, or None when the benchmark had no --data."""
    from rich.markup import escape
    from rich.table import Table

    if not report.get("accuracy"):
        return None
    table = Table(
        title=f"accuracy on {escape(str(report['settings']['data_dir']))} (cpu)", title_justify="left"
    )
    for name in ("model", "images", "accuracy", "agrees with first"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for entry in report["accuracy"]:
        if entry["error"]:
            table.add_row(escape(Path(entry["model"]).name), "-", f"[red]{escape(entry['error'])}[/red]", "-")
            continue
        table.add_row(
            escape(Path(entry["model"]).name),
            str(entry["images"]),
            _num(entry["accuracy"] * 100, ".2f", "%"),
            _num(
                entry["agreement_with_first"] * 100 if entry["agreement_with_first"] is not None else None,
                ".2f",
                "%",
            ),
        )
    return table


def _num(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"
