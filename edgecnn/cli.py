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
    ] = 30,
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
    ] = 8,
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
