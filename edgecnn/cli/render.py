"""How results look on a terminal: export figures, the classify summary table, per-file lines, the classify
progress bar."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.markup import escape

from edgecnn.cli.app import err, out, say


def print_export(result: Any) -> dict[str, Any]:
    """Say what an export wrote and proved; returns the same figures as a JSON-ready dict."""
    summary: dict[str, Any] = {
        "fp32": {
            "output": str(result.output),
            "bytes": result.size_bytes,
            "parity_images": result.parity.images,
            "parity_max_abs_diff": result.parity.max_abs_diff,
            "parity_top1_agreement": result.parity.top1_agreement,
        }
    }
    kept = [n for n in getattr(result, "notes", []) if n.startswith(("derived from", "fp32 file reused"))]
    say(
        f"{'source' if kept else 'wrote'} {result.output} ({result.size_bytes / 1e6:.2f} MB{'; ' + kept[0] if kept else ''})"
    )
    q = result.int8
    if q is not None:
        summary["int8"] = q.to_dict()
        _print_int8(q)
    h = result.fp16
    if h is not None:
        summary["fp16"] = h.to_dict()
        say(f"wrote {h.output} ({h.fp16_size / 1e6:.2f} MB, {h.size_ratio * 100:.0f}% of fp32)")
        if h.fp32_accuracy is not None and h.fp16_accuracy is not None:
            gate = (
                f"budget {h.max_accuracy_drop} pp"
                if h.accuracy_gate == "passed"
                else f"accuracy gate {h.accuracy_gate}"
            )
            say(
                f"accuracy on {h.eval_images} images: fp32 {h.fp32_accuracy * 100:.2f}%, fp16 {h.fp16_accuracy * 100:.2f}% "
                f"(drop {(h.fp32_accuracy - h.fp16_accuracy) * 100:+.2f} pp, {gate}); "
                f"max |p_fp32 - p_fp16| {h.parity.max_abs_diff:.1e} on {h.parity.images} images ({h.gate_provider})"
            )
        say(
            f"speed on this machine (CPU, batch {h.latency_batch}): fp32 {h.fp32_latency_ms:.1f} ms, "
            f"fp16 {h.fp16_latency_ms:.1f} ms ({h.speedup:.2f}x; the CPU provider runs most fp16 nodes in "
            "float32: fp16 is for GPUs)"
        )
    return summary


def _print_int8(q: Any) -> None:
    if len(q.candidates) > 1:
        say("calibration candidates:")
        for c in q.candidates:
            acc = f"{c.accuracy * 100:6.2f}%" if c.accuracy is not None else "   n/a "
            agree = f"{c.agreement * 100:6.2f}%" if c.agreement is not None else "   n/a "
            mark = " <- chosen" if c is q.chosen else ""
            status = c.error or (
                "within budget" if c.within_budget else "over budget" if c.within_budget is False else ""
            )
            say(
                f"  {c.method:<10} {'per-channel' if c.per_channel else 'per-tensor ':<11} accuracy {acc} agreement {agree} {status}{mark}"
            )
    fb = q.fallback
    if fb is not None:
        plain = f"{q.chosen.accuracy * 100:.2f}%" if q.chosen.accuracy is not None else "n/a"
        say(
            f"all-int8 {q.chosen.method} ({'per-channel' if q.chosen.per_channel else 'per-tensor'}) is over budget "
            f"(accuracy {plain}): {len(fb.fp32_nodes)} of {len(fb.layers)} quantisable layers kept in fp32, "
            f"the most costly first (each measured alone on {fb.probe_images} calibration images, {fb.seconds:.1f} s):"
        )
        costs = {c.node: c for c in fb.layers}
        for node in fb.fp32_nodes:
            cost = costs[node]
            say(
                f"  fp32 {node} ({cost.op_type}): quantised alone it moves {cost.error * 100:.2f}% of the "
                f"probability and changes {cost.top1_changed * 100:.1f}% of top-1 answers"
            )
    say(f"wrote {q.output} ({q.int8_size / 1e6:.2f} MB, {q.size_ratio * 100:.0f}% of fp32)")
    if q.fp32_accuracy is not None and q.int8_accuracy is not None:
        say(
            f"accuracy on {q.eval_images} images: fp32 {q.fp32_accuracy * 100:.2f}%, int8 {q.int8_accuracy * 100:.2f}% "
            f"(drop {(q.fp32_accuracy - q.int8_accuracy) * 100:+.2f} pp, "
            f"{'budget ' + str(q.max_accuracy_drop) + ' pp' if q.accuracy_gate == 'passed' else 'accuracy gate ' + q.accuracy_gate}); "
            f"top-1 agreement {q.agreement * 100:.2f}%"
        )
    speed = (
        f"speed on this machine (CPU, batch {q.latency_batch}): fp32 {q.fp32_latency_ms:.1f} ms, "
        f"int8 {q.int8_latency_ms:.1f} ms ({q.speedup:.2f}x)"
    )
    if q.plain_int8_latency_ms is not None:
        cost = q.int8_latency_ms - q.plain_int8_latency_ms
        speed += (
            f"; all-int8 {q.plain_int8_latency_ms:.1f} ms ({q.fp32_latency_ms / q.plain_int8_latency_ms:.2f}x): "
            f"the fp32 layers cost {cost:+.2f} ms"
        )
    say(speed)


def print_rows(rows: list[Any]) -> None:
    for row in rows:
        if row.status == "ok":
            alts = "  ".join(f"{lab} {p:.3f}" for lab, p in row.top_k[1:])
            text = f"{row.path}\t{row.label}\t{row.confidence:.3f}" + (f"\t{alts}" if alts else "")
        else:
            text = f"{row.path}\tskipped\t{row.error}"
        out.print(text, markup=False, highlight=False)


def render_classify_summary(summary: Any) -> None:
    from rich.table import Table

    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("label")
    table.add_column("files", justify="right")
    for label, count in sorted(summary.per_label.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(escape(label), str(count))
    if summary.skipped:
        table.add_row("(skipped)", str(summary.skipped))
    err.print(table)
    if summary.output:
        for path, reason in summary.skipped_examples[:10]:
            say(f"skipped {path}: {reason}")
        if summary.skipped > 10:
            say(f"... {summary.skipped - 10} more skipped (see {summary.output})")
    extra = f", {summary.already_done} already in {summary.output}" if summary.already_done else ""
    say(
        f"{summary.classified} classified, {summary.skipped} skipped{extra} in {summary.seconds:.2f} s "
        f"({summary.images_per_second:.1f} images/s, {summary.workers} decode workers, batch {summary.batch_size}); "
        f"provider {summary.provider}" + (f" ({summary.provider_note})" if summary.provider_note else "")
    )
    if summary.nothing_found:
        say(summary.nothing_found)
    if summary.output:
        say(f"results: {summary.output}")
    if summary.sort_into:
        say(f"sorted into: {summary.sort_into}")
    if summary.interrupted:
        say("interrupted: the results file holds every finished batch; rerun with --resume to complete it")


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[int, int | None], None]]:
    """A transient progress bar on stderr for classify; yields its ``on_progress(done, total)`` callback.

    The rate counts from the first call (the library makes one, ``(0, None)``, as the run starts), so the
    decoding of the first batch is in it.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} img/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("classify", total=None, rate=0.0)
        started: list[float] = []

        def update(done: int, total: int | None) -> None:
            if not started:
                started.append(time.perf_counter())
            elapsed = time.perf_counter() - started[0]
            progress.update(task, completed=done, total=total, rate=done / elapsed if elapsed > 0 else 0.0)

        yield update
