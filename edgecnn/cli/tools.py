"""Commands around the product: ``demo``, ``benchmark``, ``doctor``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.app import app, err, handle_errors, out, say
from edgecnn.cli.options import ThreadsOption


@app.command()
@handle_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data, run and results.")] = Path(
        "demo"
    ),
    samples: Annotated[Path, typer.Option(help="Sample images and video (generated when missing).")] = Path(
        "samples"
    ),
) -> None:
    """The whole product offline: generate data, train, export fp32 and int8, classify, webcam (headless)."""
    from edgecnn.tools.demo import run_demo

    run_demo(workdir, samples, log=lambda m: out.print(m, markup=False, highlight=False))


def _csv_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"give at least one {what}")
    return items


@app.command()
@handle_errors
def benchmark(
    models: Annotated[
        list[Path], typer.Argument(help="edgecnn .onnx models; the first is the baseline of the ratios.")
    ],
    provider: Annotated[str, typer.Option(help="Comma-separated providers: cpu, cuda, tensorrt.")] = "cpu",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    threads: ThreadsOption = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled folder: time real images, and measure accuracy and agreement."),
    ] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per row (after warm-up).")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs per row.")] = 5,
    peak_seconds: Annotated[
        float,
        typer.Option(help="Seconds spent measuring the machine's peak per precision (0: skip the roofline)."),
    ] = 2.0,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the full report as JSON to this file ('-' for stdout)."),
    ] = None,
) -> None:
    """Latency, throughput, memory and roofline of models x providers x batch sizes, side by side."""
    from edgecnn.core.atomic import check_writable, write_atomic
    from edgecnn.core.errors import ConfigError
    from edgecnn.tools.bench import format_accuracy, format_table, run_benchmark

    try:
        sizes = [int(b) for b in _csv_list(batch_sizes, "batch size")]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}") from None
    if json_file is not None and str(json_file) != "-":
        check_writable(json_file)  # fail before the benchmark runs, not after
    report = run_benchmark(
        models,
        _csv_list(provider, "provider"),
        sizes,
        threads=threads,
        data_dir=data,
        runs=runs,
        warmup=warmup,
        peak_seconds=peak_seconds,
    )
    text = json.dumps(report, allow_nan=False)
    if json_file is not None and str(json_file) == "-":
        out.print_json(text)
        return
    err.print(format_table(report))
    accuracy = format_accuracy(report)
    if accuracy is not None:
        err.print(accuracy)
    if json_file is not None:
        write_atomic(json_file, text + "\n")
        say(f"wrote {json_file}")


@app.command()
@handle_errors
def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (for bug reports).")
    ] = False,
    cameras: Annotated[int, typer.Option(help="Camera indices to try opening.")] = 2,
) -> None:
    """Why is it not using my GPU? ONNX Runtime, providers, CUDA libraries, OpenCV, cameras, CPU."""
    from edgecnn.tools.doctor import format_doctor, run_doctor

    report = run_doctor(probe_cameras=cameras)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        out.print(format_doctor(report), markup=False, highlight=False)
    if not report.get("ok"):  # no working CPU provider: an environment error, like every exit code 2
        raise typer.Exit(code=2)
