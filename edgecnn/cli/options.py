"""Option types shared by several commands: one declaration each, so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


ModelOption = Annotated[
    Path | None,
    typer.Option(
        help="An edgecnn .onnx model [default: the shipped ImageNet model, EfficientNet-Lite0 int8 with the 1,000 ImageNet classes (models/README.md)]."
    ),
]
ProviderOption = Annotated[
    Provider,
    typer.Option(help="Execution provider: auto (CUDA when it really works, else CPU), cpu, cuda, tensorrt."),
]
FallbackOption = Annotated[
    bool,
    typer.Option("--fallback", help="If the requested provider cannot run, use the CPU instead of failing."),
]
ThreadsOption = Annotated[
    int | None, typer.Option(help="ONNX Runtime intra-op threads [default: one per physical core].")
]
WorkersOption = Annotated[int | None, typer.Option(help="Decoding threads [default: CPU count].")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def api_options(given: dict[str, Any], drop: Collection[str] = (), **overrides: Any) -> dict[str, Any]:
    """A command's options (its ``locals()`` on entry) as the keywords of its one API call: choices as their
    plain value, ``drop`` left out (options only the terminal uses), ``overrides`` for those renamed or
    inverted."""
    values = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items() if k not in drop}
    return {**values, **overrides}


# How a model edgecnn did not train takes its pixels: `adopt` (ONNX) and `export` (Keras) share these.
class Preset(str, Enum):
    torchvision = "torchvision"
    keras_caffe = "keras-caffe"
    keras_tf = "keras-tf"
    teachable_machine = "teachable-machine"
    raw = "raw"


class Layout(str, Enum):
    auto = "auto"
    nchw = "nchw"
    nhwc = "nhwc"


class ColorOrder(str, Enum):
    rgb = "rgb"
    bgr = "bgr"


class Scale(str, Enum):
    unit = "0-1"
    pixels = "0-255"
    symmetric = "-1-1"


class OutputKind(str, Enum):
    auto = "auto"
    logits = "logits"
    probabilities = "probabilities"


class Fit(str, Enum):
    stretch = "stretch"
    crop = "crop"
    letterbox = "letterbox"


class Interpolation(str, Enum):
    area = "area"
    linear = "linear"
    cubic = "cubic"
    pil_bilinear = "pil-bilinear"


FOREIGN = "A model edgecnn did not train"
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        help="Class names in output order: one per line, '0 name' lines (Teachable Machine), or ImageNet-style JSON.",
        rich_help_panel=FOREIGN,
    ),
]
PresetOption = Annotated[
    Preset | None,
    typer.Option(
        help="The source's pixel recipe: torchvision (RGB, 0-1, ImageNet mean/std, crop 0.875, pil-bilinear), keras-caffe (BGR, 0-255, ImageNet means), keras-tf (RGB, -1-1), teachable-machine (RGB, -1-1, centre square), raw (RGB 0-255: the model scales itself). Options below replace parts of it.",
        rich_help_panel=FOREIGN,
    ),
]
LayoutOption = Annotated[
    Layout | None,
    typer.Option(help="Input layout [default: auto, read from the graph].", rich_help_panel=FOREIGN),
]
ColorOrderOption = Annotated[
    ColorOrder | None,
    typer.Option(help="Channel order the model expects [default: rgb].", rich_help_panel=FOREIGN),
]
ScaleOption = Annotated[
    Scale | None,
    typer.Option(
        help="Pixel values the model expects: 0-1 (x/255), 0-255, or -1-1 (x/127.5 - 1); before --mean/--std.",
        rich_help_panel=FOREIGN,
    ),
]
MeanOption = Annotated[
    str | None,
    typer.Option(
        help="Per-channel mean subtracted after scaling, comma-separated, in the model's channel order.",
        rich_help_panel=FOREIGN,
    ),
]
StdOption = Annotated[
    str | None,
    typer.Option(
        help="Per-channel standard deviation divided after the mean, comma-separated.",
        rich_help_panel=FOREIGN,
    ),
]
OutputKindOption = Annotated[
    OutputKind | None,
    typer.Option(
        help="What the output holds: logits (a softmax is added), probabilities, or auto (a final Softmax, or rows summing to one).",
        rich_help_panel=FOREIGN,
    ),
]
SizeOption = Annotated[
    str | None,
    typer.Option(
        help="Input size HxW (or one number for a square), when the graph does not fix it.",
        rich_help_panel=FOREIGN,
    ),
]
FitOption = Annotated[
    Fit | None,
    typer.Option(
        help="Resize policy: stretch, crop (shorter side to size/crop-fraction, centre crop), letterbox (fit inside, pad) [default: stretch].",
        rich_help_panel=FOREIGN,
    ),
]
CropFractionOption = Annotated[
    float | None,
    typer.Option(
        help="For --fit crop: the share of the scaled side kept [default: 0.875].", rich_help_panel=FOREIGN
    ),
]
PadValueOption = Annotated[
    int | None,
    typer.Option(
        help="For --fit letterbox: the padding's pixel value 0-255 [default: 0].", rich_help_panel=FOREIGN
    ),
]
InterpolationOption = Annotated[
    Interpolation | None,
    typer.Option(
        help="Resize interpolation: OpenCV's area, linear, cubic, or Pillow's bilinear (pil-bilinear: torchvision's, antialiased when shrinking) [default: area].",
        rich_help_panel=FOREIGN,
    ),
]


#: The options of a model edgecnn did not train, as `adopt` and `export` name their parameters.
FOREIGN_OPTIONS = (
    "preset",
    "layout",
    "color_order",
    "scale",
    "mean",
    "std",
    "output_kind",
    "size",
    "fit",
    "crop_fraction",
    "pad_value",
    "interpolation",
)


def adopt_options(labels: Path | None, options: dict[str, Any]) -> Any:
    """The library's AdoptOptions from a command's options (its ``locals()``): None when there is no --labels
    and none of ``FOREIGN_OPTIONS`` is given.

    Raises:
        ConfigError: A preprocessing option without --labels, or a malformed --mean, --std or --size.
    """
    from edgecnn.api import AdoptOptions
    from edgecnn.core.errors import ConfigError

    given = {name: options[name] for name in FOREIGN_OPTIONS}
    values = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items() if v is not None}
    if labels is None:
        if values:
            named = ", ".join("--" + k.replace("_", "-") for k in values)
            raise ConfigError(f"{named} describe a model edgecnn did not train: pass --labels FILE too")
        return None
    for name in ("mean", "std"):
        if name in values:
            values[name] = _numbers(f"--{name}", values[name])
    if "size" in values:
        values["size"] = _size(values["size"])
    return AdoptOptions(labels=labels, **values)


def _numbers(option: str, text: str) -> tuple[float, ...]:
    from edgecnn.core.errors import ConfigError

    try:
        return tuple(float(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(
            f"{option} takes comma-separated numbers (0.485,0.456,0.406), got {text!r}"
        ) from None


def _size(text: str) -> tuple[int, int]:
    from edgecnn.core.errors import ConfigError

    parts = text.lower().replace(" ", "").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or not all(1 <= s <= 4096 for s in sides):
        raise ConfigError(f"--size takes HxW or one side, 1 to 4096 pixels (224x224, 224), got {text!r}")
    return (sides[0], sides[-1])
