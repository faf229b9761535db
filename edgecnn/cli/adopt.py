"""``edgecnn adopt``: a classifier from elsewhere gets an edgecnn contract, once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.app import app, handle_errors, out, say
from edgecnn.cli.options import (
    ColorOrderOption,
    CropFractionOption,
    FitOption,
    InterpolationOption,
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


@app.command()
@handle_errors
def adopt(
    model: Annotated[
        Path, typer.Argument(help="An ONNX image classifier from elsewhere (PyTorch, a model zoo, ...).")
    ],
    labels: Annotated[
        Path,
        typer.Option(
            help="Class names in output order: one per line, '0 name' lines (Teachable Machine), or ImageNet-style JSON."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="The adopted .onnx file [default: MODEL.edgecnn.onnx beside MODEL]."
        ),
    ] = None,
    preset: PresetOption = None,
    layout: LayoutOption = None,
    color_order: ColorOrderOption = None,
    scale: ScaleOption = None,
    mean: MeanOption = None,
    std: StdOption = None,
    output_kind: OutputKindOption = None,
    output_name: Annotated[
        str | None, typer.Option(help="The graph output with the class scores, when the model has several.")
    ] = None,
    size: SizeOption = None,
    fit: FitOption = None,
    crop_fraction: CropFractionOption = None,
    pad_value: PadValueOption = None,
    interpolation: InterpolationOption = None,
    check: Annotated[
        Path | None,
        typer.Option(
            help="Images to check the adopted file against the original on [default: generated images]."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON on stdout.")
    ] = False,
) -> None:
    """Give an ONNX classifier from elsewhere an edgecnn contract, its preprocessing moved into the graph.

    The copy is checked against the original on the same images before it is written; then classify, webcam,
    evaluate, benchmark and export --int8/--fp16 work with it.
    """
    from edgecnn.api import adopt as run_adopt

    options = adopt_options(labels, locals())
    result = run_adopt(model, options, output=output, output_name=output_name, check_dir=check, force=force)
    spec, adopted = result.contract.input, result.contract.source["adopted"]
    fit_text = spec.fit + (f" {spec.crop_fraction:g}" if spec.crop_fraction else "")
    fit_text += f" pad {spec.pad_value}" if spec.pad_value is not None else ""
    say(f"wrote {result.output} ({result.size_bytes / 1e6:.2f} MB)")
    say(
        f"contract: {len(result.contract.labels)} labels, input {spec.height}x{spec.width}x{spec.channels}, "
        f"resize {fit_text} ({spec.resize}); {adopted['layout']} input, output read as {adopted['output_kind']}"
    )
    say(f"preprocessing {result.contract.normalization}")
    for note in result.notes:
        say(f"note: {note}")
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
