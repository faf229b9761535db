"""Commands that run a model: ``info``, ``classify``, ``webcam``."""

from __future__ import annotations

import contextlib
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.app import app, err, handle_errors, out, say
from edgecnn.cli.options import (
    FallbackOption,
    ModelOption,
    Provider,
    ProviderOption,
    ThreadsOption,
    WorkersOption,
    api_options,
)
from edgecnn.cli.render import print_rows, progress_bar, render_classify_summary


@app.command()
@handle_errors
def info(
    model: Annotated[Path, typer.Argument(help="An .onnx model.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Show a model's contract (labels, input, preprocessing), graph facts and usable providers."""
    from edgecnn.tools.info import describe_model, format_info

    data = describe_model(model)
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(format_info(data), markup=False)


@app.command()
@handle_errors
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders.")],
    model: ModelOption = None,
    provider: ProviderOption = Provider.auto,
    fallback: FallbackOption = False,
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    top_k: Annotated[int, typer.Option(help="Labels to report per image.")] = 1,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk sub-folders.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Results file: .csv, .jsonl or .json (by extension)."),
    ] = None,
    sort_into: Annotated[
        Path | None, typer.Option(help="Copy (or move) each file into DIR/<label>/.")
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy/--move", help="With --sort-into: copy (default) or move files.")
    ] = True,
    min_confidence: Annotated[
        float, typer.Option(help="With --sort-into: files below this confidence go to DIR/_uncertain/.")
    ] = 0.0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run: skip files already in --output.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file.")] = False,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-file lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write an HTML report: thumbnails by label, least confident first, filters, skipped files "
            "(thumbnails in REPORT_files/ beside it); with --resume it covers the whole --output file."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on a Ray cluster: auto (the running one: ray start, RAY_ADDRESS), local (start one on "
            "this machine) or HOST:PORT; --output is then a folder of Parquet results (docs/SCALING.md).",
        ),
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="With --ray: also write OUTPUT/results.csv.")] = False,
) -> None:
    """Classify image files and folders with an ONNX model; write results, sort files."""
    options = api_options(locals(), drop=("paths", "copy", "quiet", "as_json"), move=not copy)
    from edgecnn import api

    models = [p for p in paths if p.suffix.lower() == ".onnx" and p.is_file()]
    if models:  # `edgecnn classify model.onnx photos/` would classify the photos with the default model
        raise typer.BadParameter(
            f"{models[0]} is a model, not an image: pass it as --model {models[0]}", param_hint="PATHS"
        )
    local = ray is None
    on_rows = print_rows if local and output is None and not quiet and not as_json else None  # rows: progress
    with_bar = local and on_rows is None and err.is_terminal and not quiet
    with progress_bar() if with_bar else contextlib.nullcontext() as on_progress:
        summary: Any = api.classify(paths, on_rows=on_rows, on_progress=on_progress, **options)
    render_classify_summary(summary)
    if report is not None and report.exists():  # written after Ctrl-C too
        say(f"report: {report}")
    if as_json:
        out.print_json(json.dumps({**summary.to_dict(), **({"report": str(report)} if report else {})}))
    if summary.interrupted:
        raise typer.Exit(code=130)
    if summary.skipped or summary.already_skipped or getattr(summary, "missing", 0):
        raise typer.Exit(code=1)


class Crop(str, Enum):
    CENTER = "center"
    NONE = "none"


@app.command()
@handle_errors
def webcam(
    model: ModelOption = None,
    camera: Annotated[int, typer.Option(help="Camera index.")] = 0,
    source: Annotated[
        str | None,
        typer.Option(
            help="A video file, an image sequence pattern (img_%04d.png) or a stream URL, instead of a camera."
        ),
    ] = None,
    provider: ProviderOption = Provider.auto,
    fallback: FallbackOption = False,
    width: Annotated[int | None, typer.Option(help="Capture width to request from the camera.")] = None,
    height: Annotated[int | None, typer.Option(help="Capture height to request from the camera.")] = None,
    crop: Annotated[
        Crop | None,
        typer.Option(
            help="How a non-square frame meets the model input: center crop, or none (stretch) "
            "[default: the fit the model was trained with, from its contract]."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="Labels shown on the overlay.")] = 3,
    every: Annotated[
        int, typer.Option(help="Classify every Nth frame; the overlay keeps the last result.")
    ] = 1,
    smooth: Annotated[int, typer.Option(help="Average the last N probability vectors.")] = 1,
    no_display: Annotated[
        bool,
        typer.Option("--no-display", help="No window (headless); also automatic when there is no display."),
    ] = False,
    record: Annotated[
        Path | None, typer.Option(help="Write the annotated frames to a video (.mp4, .avi or .mkv).")
    ] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Write one JSON line per classified frame.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    realtime: Annotated[
        bool | None,
        typer.Option(
            "--realtime/--no-realtime",
            help="Pace a file like a live source (dropping frames) [default: live for cameras and streams, every frame for files].",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Reconnection attempts when a live source stops delivering.")
    ] = 3,
    threads: ThreadsOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing --record/--jsonl files.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout at exit.")] = False,
) -> None:
    """Classify a live camera, video file or stream with an overlay; optional recording."""
    options = api_options(locals(), drop=("no_display", "as_json"), display=not no_display)
    from edgecnn import api

    summary = api.webcam(**options)
    say(api.webcam_summary_text(summary))
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    if summary.end_reason == "interrupted":
        raise typer.Exit(code=130)
    if summary.failed:  # the live source was lost or its backend failed
        raise typer.Exit(code=1)
