"""The ``edgecnn`` command line: parse options, call one library function, render the result.

This is the only module that knows exit codes: 0 success, 1 some inputs failed (files skipped), 2 usage,
model or environment errors, 130 interrupted. Heavy imports (TensorFlow, ONNX Runtime, OpenCV) happen inside
the command bodies so that ``edgecnn --help`` and the inference commands start fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from edgecnn import __version__
from edgecnn.errors import EdgecnnError

app = typer.Typer(
    name="edgecnn",
    help="From a folder of labelled photos to a small, fast ONNX image classifier at the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn library errors into one line on stderr and their exit code; Ctrl-C into exit code 130."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgecnnError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """From a folder of labelled photos to a small, fast ONNX image classifier at the edge."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:  # file names that are not valid UTF-8 must print, not crash
                stream.reconfigure(errors="surrogateescape")
            except (ValueError, OSError):
                pass
    _graceful_sigterm()


def _graceful_sigterm() -> None:
    """SIGTERM (kill, docker stop) stops like Ctrl-C: results so far are kept and the exit code is 130."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        try:
            signal.signal(signal.SIGTERM, interrupt)
        except (ValueError, OSError):
            pass


def say(message: str) -> None:
    err.print(message, markup=False)


class Arch(str, Enum):
    cnn = "cnn"
    vgg16 = "vgg16"


@app.command()
@handle_errors
def train(
    data_dir: Annotated[
        Path,
        typer.Argument(help="Folder of class folders, or a folder with train/ and val/ of class folders."),
    ],
    arch: Annotated[
        Arch, typer.Option(help="Model: a CNN from scratch, or VGG16 transfer learning.")
    ] = Arch.cnn,
    img_size: Annotated[
        int | None, typer.Option(help="Square input side in pixels [default: 96 for cnn, 224 for vgg16].")
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Maximum training epochs (early stopping may end sooner).")
    ] = 40,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 32,
    learning_rate: Annotated[
        float | None, typer.Option(help="Peak learning rate [default: 1e-3 for cnn, 5e-4 for vgg16].")
    ] = None,
    val_dir: Annotated[
        Path | None, typer.Option(help="Separate folder of class folders for validation.")
    ] = None,
    val_split: Annotated[
        float | None, typer.Option(help="Fraction of each class held out for validation [default: 0.2].")
    ] = None,
    no_augment: Annotated[
        bool,
        typer.Option(
            "--no-augment", help="Turn off augmentation (flip, rotation, zoom, shift, contrast, brightness)."
        ),
    ] = False,
    grayscale: Annotated[
        bool, typer.Option("--grayscale", help="Train on grey images (one channel).")
    ] = False,
    weights: Annotated[
        str, typer.Option(help="vgg16 base weights: imagenet, none, or PATH to a weights file.")
    ] = "imagenet",
    fine_tune_epochs: Annotated[
        int, typer.Option(help="vgg16: epochs of fine-tuning block5 after the frozen-base phase.")
    ] = 0,
    seed: Annotated[
        int, typer.Option(help="Random seed for the split, initialisation, shuffling and augmentation.")
    ] = 42,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder [default: runs/<timestamp>].")] = None,
    patience: Annotated[
        int, typer.Option(help="Early stopping: epochs without a better validation loss.")
    ] = 10,
    base_filters: Annotated[
        int, typer.Option(help="cnn: filters of the first block (later blocks double it).")
    ] = 32,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop after the last epoch that fits in this many minutes.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch progress.")] = False,
) -> None:
    """Train a CNN or VGG16 transfer model on a folder of labelled photos."""
    from edgecnn.report import format_metrics
    from edgecnn.train import TrainConfig
    from edgecnn.train import train as run_training

    config = TrainConfig(
        data_dir=data_dir,
        out_dir=out,
        arch=arch.value,
        img_size=img_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        val_dir=val_dir,
        val_split=val_split,
        augment=not no_augment,
        grayscale=grayscale,
        weights=weights,
        fine_tune_epochs=fine_tune_epochs,
        seed=seed,
        patience=patience,
        base_filters=base_filters,
        max_minutes=max_minutes,
        verbose=0 if quiet else (1 if sys.stdout.isatty() else 2),
    )
    result = run_training(config, log=say)
    report = result.report
    say(format_metrics(result.metrics))
    say(
        f"\n{'interrupted after' if result.interrupted else 'trained'} {report['epochs_run']} epoch(s) in "
        f"{report['train_seconds']:.0f} s ({report['train_images_per_second']:.0f} images/s); "
        f"best epoch {report['best_epoch']}; validation accuracy {report['val_accuracy'] * 100:.2f}%"
    )
    say(
        f"run folder: {result.run_dir}  (model.keras, report.json, curves.png, confusion_matrix.png, misclassified.png)"
    )
    say(f"next: edgecnn export {result.run_dir} --int8")
    if result.interrupted:
        raise typer.Exit(code=130)
    if result.skipped:
        say(f"{len(result.skipped)} file(s) were skipped (listed in report.json)")
        raise typer.Exit(code=1)


@app.command()
@handle_errors
def evaluate(
    model: Annotated[
        Path, typer.Argument(help="A .keras model (with report.json beside it) or an edgecnn .onnx model.")
    ],
    data_dir: Annotated[
        Path,
        typer.Argument(help="Folder of class folders (its val/ folder is used if it has train/ and val/)."),
    ],
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    workers: Annotated[int | None, typer.Option(help="Decoding threads [default: CPU count].")] = None,
    provider: Annotated[
        str, typer.Option(help="ONNX models: execution provider (auto, cpu, cuda, tensorrt).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of a model on a labelled folder."""
    from edgecnn.evaluate import evaluate_model
    from edgecnn.report import format_metrics

    result = evaluate_model(model, data_dir, batch_size=batch_size, workers=workers, provider=provider)
    for path, reason in result.skipped[:10]:
        say(f"skipped {path}: {reason}")
    if len(result.skipped) > 10:
        say(f"... and {len(result.skipped) - 10} more skipped file(s)")
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
    else:
        say(
            f"model: {model} ({result.kind}{', ' + result.provider if result.provider else ''}); data: {result.data_dir}"
        )
        out.print(format_metrics(result.metrics), markup=False)
    if result.skipped:
        raise typer.Exit(code=1)


class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"
    auto = "auto"


@app.command()
@handle_errors
def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run folder from `edgecnn train`, or a .keras file with report.json beside it."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="fp32 .onnx path [default: RUN_DIR/model.onnx].")
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write a static int8 (QDQ) model calibrated on real images.")
    ] = False,
    int8_output: Annotated[
        Path | None, typer.Option(help="int8 .onnx path [default: beside the fp32 file, *.int8.onnx].")
    ] = None,
    calib: Annotated[
        Path | None,
        typer.Option(
            "--calib",
            help="Images for calibration (class folders or a plain folder) [default: the run's training images].",
        ),
    ] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration images, sampled evenly across classes.")] = 300,
    calib_method: Annotated[
        CalibMethod,
        typer.Option(
            help="Calibration: minmax, entropy, percentile, or auto (try all, per-channel on and off, keep the most accurate within the budget)."
        ),
    ] = CalibMethod.minmax,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Per-channel or per-tensor weight scales.")
    ] = True,
    eval_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            help="Labelled folder to measure accuracy after export [default: the run's validation images].",
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        float,
        typer.Option(help="Fail the int8 export if accuracy drops by more than this many percentage points."),
    ] = 1.0,
    opset: Annotated[int, typer.Option(help="ONNX opset (int8 needs 20 or lower).")] = 17,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the export figures as JSON on stdout.")
    ] = False,
) -> None:
    """Convert a trained Keras model to ONNX (checked against Keras), optionally int8."""
    from edgecnn.export import export_all

    result = export_all(
        source,
        output=output,
        int8=int8,
        int8_output=int8_output,
        calib_dir=calib,
        calib_size=calib_size,
        calib_method=calib_method.value,
        per_channel=per_channel,
        eval_dir=eval_dir,
        max_accuracy_drop=max_accuracy_drop,
        opset=opset,
        force=force,
        log=say,
    )
    summary: dict[str, Any] = {
        "fp32": {
            "output": str(result.output),
            "bytes": result.size_bytes,
            "parity_images": result.parity.images,
            "parity_max_abs_diff": result.parity.max_abs_diff,
            "parity_top1_agreement": result.parity.top1_agreement,
        }
    }
    say(f"wrote {result.output} ({result.size_bytes / 1e6:.2f} MB)")
    q = result.int8
    if q is not None:
        summary["int8"] = q.to_dict()
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
        say(f"wrote {q.output} ({q.int8_size / 1e6:.2f} MB, {q.size_ratio * 100:.0f}% of fp32)")
        if q.fp32_accuracy is not None and q.int8_accuracy is not None:
            say(
                f"accuracy on {q.eval_images} images: fp32 {q.fp32_accuracy * 100:.2f}%, int8 {q.int8_accuracy * 100:.2f}% "
                f"(drop {(q.fp32_accuracy - q.int8_accuracy) * 100:+.2f} pp, budget {q.max_accuracy_drop} pp); "
                f"top-1 agreement {q.agreement * 100:.2f}%"
            )
        say(
            f"speed on this machine (CPU, batch {q.latency_batch}): fp32 {q.fp32_latency_ms:.1f} ms, "
            f"int8 {q.int8_latency_ms:.1f} ms ({q.speedup:.2f}x)"
        )
    if as_json:
        out.print_json(json.dumps(summary))
    if q is not None and q.skipped:
        raise typer.Exit(code=1)


@app.command()
@handle_errors
def info(
    model: Annotated[Path, typer.Argument(help="An .onnx model.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Show a model's contract (labels, input, preprocessing), graph facts and usable providers."""
    from edgecnn.info import describe_model, format_info

    data = describe_model(model)
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(format_info(data), markup=False)


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


def resolve_model(model: Path | None) -> Path:
    """The --model given, or the shipped default model (announced on stderr)."""
    from edgecnn.errors import ModelFileError
    from edgecnn.shipped import default_model_path

    if model is not None:
        return model
    path = default_model_path()
    if path is None:
        raise ModelFileError("no --model given and no shipped default model found; pass --model MODEL.onnx")
    say(f"using the shipped default model {path} (pass --model to use your own)")
    return path


def open_predictor(model: Path | None, provider: Provider, fallback: bool, threads: int | None) -> Any:
    from edgecnn.runtime import Predictor

    predictor = Predictor(resolve_model(model), provider=provider.value, threads=threads, fallback=fallback)
    spec = predictor.contract.input
    say(
        f"model: {predictor.path.name} ({len(predictor.labels)} classes, {spec.height}x{spec.width}); {predictor.info.describe()}"
    )
    return predictor


@app.command()
@handle_errors
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders.")],
    model: Annotated[
        Path | None, typer.Option(help="An edgecnn .onnx model [default: the shipped default model].")
    ] = None,
    provider: Annotated[
        Provider,
        typer.Option(
            help="Execution provider: auto (CUDA when it really works, else CPU), cpu, cuda, tensorrt."
        ),
    ] = Provider.auto,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback", help="If the requested provider cannot run, use the CPU instead of failing."
        ),
    ] = False,
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
    workers: Annotated[int | None, typer.Option(help="Decoding threads [default: CPU count].")] = None,
    threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime intra-op threads [default: one per physical core].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-file lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Classify image files and folders with an ONNX model; write results, sort files."""
    from edgecnn.classify import ClassifyConfig, classify_paths

    config = ClassifyConfig(
        paths=paths,
        batch_size=batch_size,
        top_k=top_k,
        recursive=recursive,
        output=output,
        sort_into=sort_into,
        move=not copy,
        min_confidence=min_confidence,
        resume=resume,
        force=force,
        workers=workers,
    )
    predictor = open_predictor(model, provider, fallback, threads)
    if output is None and not quiet and not as_json:
        summary = classify_paths(config, predictor, on_rows=_print_rows)  # the rows are the progress
    elif err.is_terminal and not quiet:
        summary = _classify_with_progress(config, predictor)
    else:
        summary = classify_paths(config, predictor)
    _render_classify_summary(summary)
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    if summary.interrupted:
        raise typer.Exit(code=130)
    if summary.skipped or summary.already_skipped:
        raise typer.Exit(code=1)


def _classify_with_progress(config: Any, predictor: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from edgecnn.classify import classify_paths

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
        started = [0.0]

        def update(done: int, total: int | None) -> None:
            import time

            now = time.perf_counter()
            if not started[0]:
                started[0] = now
            elapsed = now - started[0]
            progress.update(task, completed=done, total=total, rate=done / elapsed if elapsed > 0 else 0.0)

        return classify_paths(config, predictor, on_progress=update, count_in_background=True)


def _print_rows(rows: list[Any]) -> None:
    for row in rows:
        if row.status == "ok":
            alts = "  ".join(f"{lab} {p:.3f}" for lab, p in row.top_k[1:])
            text = f"{row.path}\t{row.label}\t{row.confidence:.3f}" + (f"\t{alts}" if alts else "")
        else:
            text = f"{row.path}\tskipped\t{row.error}"
        out.print(text, markup=False, highlight=False)


def _render_classify_summary(summary: Any) -> None:
    from rich.table import Table

    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("label")
    table.add_column("files", justify="right")
    for label, count in sorted(summary.per_label.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(label, str(count))
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
    if summary.output:
        say(f"results: {summary.output}")
    if summary.sort_into:
        say(f"sorted into: {summary.sort_into}")
    if summary.interrupted:
        say("interrupted: the results file holds every finished batch; rerun with --resume to complete it")


class Crop(str, Enum):
    CENTER = "center"
    NONE = "none"


@app.command()
@handle_errors
def webcam(
    model: Annotated[
        Path | None, typer.Option(help="An edgecnn .onnx model [default: the shipped default model].")
    ] = None,
    camera: Annotated[int, typer.Option(help="Camera index.")] = 0,
    source: Annotated[
        str | None,
        typer.Option(
            help="A video file, an image sequence pattern (img_%04d.png) or a stream URL, instead of a camera."
        ),
    ] = None,
    provider: Annotated[
        Provider, typer.Option(help="Execution provider: auto, cpu, cuda, tensorrt.")
    ] = Provider.auto,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback", help="If the requested provider cannot run, use the CPU instead of failing."
        ),
    ] = False,
    width: Annotated[int | None, typer.Option(help="Capture width to request from the camera.")] = None,
    height: Annotated[int | None, typer.Option(help="Capture height to request from the camera.")] = None,
    crop: Annotated[
        Crop,
        typer.Option(
            help="How a non-square frame meets a square model input: center crop, or none (stretch)."
        ),
    ] = Crop.CENTER,
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
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime intra-op threads.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing --record/--jsonl files.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout at exit.")] = False,
) -> None:
    """Classify a live camera, video file or stream with an overlay; optional recording."""
    from edgecnn.capture import open_source
    from edgecnn.webcam import WebcamConfig, format_summary, run_webcam

    config = WebcamConfig(
        crop=crop.value,
        top_k=top_k,
        every=every,
        smooth=smooth,
        display=not no_display,
        record=record,
        jsonl=jsonl,
        max_frames=max_frames,
        force=force,
    )
    predictor = open_predictor(model, provider, fallback, threads)
    frames = open_source(
        camera=camera,
        source=source,
        width=width,
        height=height,
        realtime=realtime,
        max_retries=retries,
        on_event=say,
    )
    say(
        f"source: {frames.description} ({'live: newest frame only' if frames.live else 'every frame in order'}); q or Esc quits, space pauses, s saves a snapshot"
    )
    summary = run_webcam(frames, predictor, config, on_event=say)
    say(format_summary(summary))
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    if summary.end_reason == "interrupted":
        raise typer.Exit(code=130)


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
    from edgecnn.demo import run_demo

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
    threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime intra-op threads [default: one per physical core].")
    ] = None,
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
    from edgecnn.bench import format_accuracy, format_table, run_benchmark
    from edgecnn.errors import ConfigError

    try:
        sizes = [int(b) for b in _csv_list(batch_sizes, "batch size")]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}") from None
    report = run_benchmark(
        models,
        _csv_list(provider, "provider"),
        sizes,
        threads=threads,
        data_dir=data,
        runs=runs,
        warmup=warmup,
        peak_seconds=peak_seconds,
        progress=say,
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
        json_file.write_text(text + "\n", encoding="utf-8")
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
    from edgecnn.doctor import format_doctor, run_doctor

    report = run_doctor(probe_cameras=cameras)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        out.print(format_doctor(report), markup=False, highlight=False)
    if not report.get("ok"):
        raise typer.Exit(code=1)
