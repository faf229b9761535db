"""``edgecnn export``: a Keras model to ONNX through its parity gate; int8 and fp16 files with their gates."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.app import app, handle_errors, out
from edgecnn.cli.options import (
    ColorOrderOption,
    CropFractionOption,
    FitOption,
    InterpolationOption,
    LabelsOption,
    LayoutOption,
    MeanOption,
    OutputKindOption,
    PadValueOption,
    PresetOption,
    ScaleOption,
    SizeOption,
    StdOption,
    adopt_options,
)
from edgecnn.cli.render import print_export


class ReduceRange(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


class Tta(str, Enum):
    none = "none"
    flip = "flip"


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
            help="A run folder from `edgecnn train`; a .keras file with report.json beside it; a .keras/.h5 model edgecnn did not train (with --labels); or an edgecnn .onnx file to derive --int8/--fp16 files from."
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
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Also write an fp16 model (float32 input and output) checked against fp32: largest probability difference 1e-2, and the --max-accuracy-drop budget.",
        ),
    ] = False,
    fp16_output: Annotated[
        Path | None, typer.Option(help="fp16 .onnx path [default: beside the fp32 file, *.fp16.onnx].")
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
    reduce_range: Annotated[
        ReduceRange,
        typer.Option(
            help="int8 weights in 7 bits, for x86 CPUs without VNNI (AVX2, AVX-512 without VNNI), whose int8 kernels saturate with 8-bit weights and lose accuracy; off keeps 8 bits (VNNI, AMX and Arm CPUs). auto: on when the CPU running the export is such a CPU, so that the accuracy gate measures what it will run."
        ),
    ] = ReduceRange.auto,
    int8_fallback: Annotated[
        bool,
        typer.Option(
            "--int8-fallback/--no-int8-fallback",
            help="When no calibration candidate meets --max-accuracy-drop, keep the int8 layers that cost the most accuracy in fp32, the fewest that meet it; the contract lists them.",
        ),
    ] = True,
    max_accuracy_drop: Annotated[
        float,
        typer.Option(
            help="Fail the int8 (and fp16) export if accuracy on labelled images drops by more than this many percentage points (0 or more)."
        ),
    ] = 1.0,
    no_accuracy_gate: Annotated[
        bool,
        typer.Option(
            "--no-accuracy-gate",
            help="Write the int8 (and fp16) model without enforcing --max-accuracy-drop (e.g. with no labelled images to check it on); its contract records that.",
        ),
    ] = False,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset (int8 needs 20 or lower).", show_default="17"),
    ] = None,
    tta: Annotated[
        Tta,
        typer.Option(
            help="Test-time augmentation inside the graph: flip averages each image with its mirror (every runtime gets it; one extra image of compute per image)."
        ),
    ] = Tta.none,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the export figures as JSON on stdout.")
    ] = False,
    labels: LabelsOption = None,
    preset: PresetOption = None,
    layout: LayoutOption = None,
    color_order: ColorOrderOption = None,
    scale: ScaleOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output_kind: OutputKindOption = None,
    size: SizeOption = None,
    fit: FitOption = None,
    crop_fraction: CropFractionOption = None,
    pad_value: PadValueOption = None,
    interpolation: InterpolationOption = None,
) -> None:
    """Convert a Keras model to ONNX (checked against Keras), optionally int8 and fp16."""
    from edgecnn import api

    foreign = adopt_options(labels, locals())
    result = api.export(
        source,
        int8=int8,
        foreign=foreign,
        tta=tta.value,
        int8_fallback=int8_fallback,
        reduce_range=reduce_range.value,
        output=output,
        int8_output=int8_output,
        calib_dir=calib,
        calib_size=calib_size,
        calib_method=calib_method.value,
        per_channel=per_channel,
        eval_dir=eval_dir,
        max_accuracy_drop=max_accuracy_drop,
        opset=opset,
        force=force,
        accuracy_gate=not no_accuracy_gate,
        fp16=fp16,
        fp16_output=fp16_output,
    )
    summary = print_export(result)
    if as_json:
        out.print_json(json.dumps(summary))
    if any(part is not None and part.skipped for part in (result.int8, result.fp16)):
        raise typer.Exit(code=1)
