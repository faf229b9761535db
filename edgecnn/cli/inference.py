"""Commands that run a model: ``info``, ``classify``, ``webcam``."""

from __future__ import annotations

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
    config_from,
    open_predictor,
    resolve_model,
)
from edgecnn.cli.render import (
    both,
    classify_with_progress,
    open_classify_report,
    print_rows,
    render_classify_summary,
)


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
    from edgecnn.apps.classify import ClassifyConfig, classify_paths

    models = [p for p in paths if p.suffix.lower() == ".onnx" and p.is_file()]
    if models:  # `edgecnn classify model.onnx photos/` would classify the photos with the default model
        raise typer.BadParameter(
            f"{models[0]} is a model, not an image: pass it as --model {models[0]}", param_hint="PATHS"
        )
    config = config_from(ClassifyConfig, locals(), move=not copy)
    if ray is not None:
        if report is not None:
            raise typer.BadParameter("--report does not work with --ray yet", param_hint="--report")
        return _classify_on_ray(config, ray, csv, model, provider, fallback, threads, as_json)
    if csv:
        raise typer.BadParameter(
            "--csv goes with --ray (without it, -o FILE.csv writes CSV)", param_hint="--csv"
        )
    predictor = open_predictor(model, provider, fallback, threads)
    page = open_classify_report(report, predictor, resume) if report is not None else None
    runner = page.tap(predictor) if page is not None else predictor  # model inputs become thumbnails
    add_rows = page.add_rows if page is not None else None
    if output is None and not quiet and not as_json:
        rows = both(print_rows, add_rows)  # the rows are the progress
        summary = classify_paths(config, runner, on_rows=rows)
    elif err.is_terminal and not quiet:
        summary = classify_with_progress(config, runner, on_rows=add_rows)
    else:
        summary = classify_paths(config, runner, on_rows=add_rows)
    render_classify_summary(summary)
    written = page.finish(summary, config.output) if page is not None else None  # after Ctrl-C too
    if written is not None:
        say(f"report: {written}")
    if as_json:
        out.print_json(json.dumps({**summary.to_dict(), **({"report": str(written)} if written else {})}))
    if summary.interrupted:
        raise typer.Exit(code=130)
    if summary.skipped or summary.already_skipped:
        raise typer.Exit(code=1)


def _classify_on_ray(
    config: Any,
    address: str,
    csv: bool,
    model: Path | None,
    provider: Provider,
    fallback: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    from edgecnn.apps.cluster import classify_on_ray

    summary = classify_on_ray(
        config,
        resolve_model(model),
        address,
        csv=csv,
        provider=provider.value,
        threads=threads,
        fallback=fallback,
    )
    render_classify_summary(summary)
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    if summary.interrupted:
        raise typer.Exit(code=130)
    if summary.skipped or summary.already_skipped or summary.missing:
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
    from edgecnn.apps.capture import open_source
    from edgecnn.apps.webcam import WebcamConfig, format_summary, run_webcam

    config = config_from(WebcamConfig, locals(), display=not no_display)
    predictor = open_predictor(model, provider, fallback, threads)
    frames = open_source(
        camera=camera,
        source=source,
        width=width,
        height=height,
        realtime=realtime,
        max_retries=retries,
    )
    say(
        f"source: {frames.description} ({'live: newest frame only' if frames.live else 'every frame in order'}); q or Esc quits, space pauses, s saves a snapshot"
    )
    summary = run_webcam(frames, predictor, config)
    say(format_summary(summary))
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    if summary.end_reason == "interrupted":
        raise typer.Exit(code=130)
    if summary.failed:  # the live source was lost or its backend failed
        raise typer.Exit(code=1)
