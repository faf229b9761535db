"""How a model from elsewhere wants its pixels, and the same steps as ONNX nodes at the front of its graph.

Every edgecnn command feeds a model raw RGB pixels, 0-255, NHWC, float32. A model trained elsewhere expects
its own form: NCHW or NHWC, RGB or BGR, values scaled to 0-1, 0-255 or -1..1, then a per-channel mean
subtracted and a standard deviation divided. ``Preprocessing`` holds those choices; ``apply`` is the documented
transform in NumPy, and ``nodes`` the same operations, in the same order and float32 arithmetic, as ONNX nodes,
so an adopted file takes raw pixels and gives the original's answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import ConfigError

LAYOUTS = ("auto", "NCHW", "NHWC")
COLOR_ORDERS = ("RGB", "BGR")
#: value range -> (divisor, offset): value = pixel / divisor - offset
SCALES = {"0-1": (255.0, 0.0), "0-255": (1.0, 0.0), "-1-1": (127.5, 1.0)}
OUTPUT_KINDS = ("auto", "logits", "probabilities")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Named recipes of common sources. Each sets the pixel form, and where the source is known for one, the
#: resize policy; any option given beside a preset replaces that part of it.
PRESETS: dict[str, dict[str, Any]] = {
    # torchvision classification weights: ToTensor (0-1), Normalize(ImageNet), Resize(256) + CenterCrop(224)
    "torchvision": {
        "color_order": "RGB",
        "scale": "0-1",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "fit": "crop",
        "interpolation": "pil-bilinear",
    },
    # keras.applications VGG16/VGG19/ResNet50 ("caffe" mode): BGR, 0-255, ImageNet means in BGR order
    "keras-caffe": {"color_order": "BGR", "scale": "0-255", "mean": (103.939, 116.779, 123.68)},
    # keras.applications MobileNet/MobileNetV2/Inception/Xception ("tf" mode): x / 127.5 - 1
    "keras-tf": {"color_order": "RGB", "scale": "-1-1"},
    # Teachable Machine image models: a centred square, x / 127.5 - 1
    "teachable-machine": {"color_order": "RGB", "scale": "-1-1", "fit": "crop", "crop_fraction": 1.0},
    # models that scale their own input (keras.applications EfficientNet, MobileNetV3; edgecnn's own)
    "raw": {"color_order": "RGB", "scale": "0-255"},
}


@dataclass(frozen=True)
class Preprocessing:
    """The pixel form a foreign model expects.

    Attributes:
        layout: NCHW, NHWC, or auto (read from the graph's input shape).
        color_order: RGB or BGR (ignored for one-channel models).
        scale: 0-1 (pixel / 255), 0-255 (pixel), or -1-1 (pixel / 127.5 - 1).
        mean: Per-channel mean subtracted after scaling, in the model's channel order and the scale's units.
        std: Per-channel standard deviation divided after the mean.
        output_kind: logits (a softmax is appended), probabilities, or auto (a final Softmax node, or rows
            that are non-negative and sum to one on the check images, mean probabilities).
    """

    layout: str = "auto"
    color_order: str = "RGB"
    scale: str = "0-255"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    output_kind: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", "auto" if self.layout.lower() == "auto" else self.layout.upper())
        object.__setattr__(self, "color_order", self.color_order.upper())
        _choose("--layout", self.layout, LAYOUTS)
        _choose("--color-order", self.color_order, COLOR_ORDERS)
        _choose("--scale", self.scale, tuple(SCALES))
        _choose("--output-kind", self.output_kind, OUTPUT_KINDS)
        for option, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None:
                if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
                    raise ConfigError(f"{option} takes 1 or 3 finite numbers, got {values}")
                object.__setattr__(self, option[2:], tuple(float(v) for v in values))
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ConfigError(f"--std values must be above 0, got {self.std}")

    def with_layout(self, layout: str) -> Preprocessing:
        return replace(self, layout=layout)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean) if self.mean is not None else None
        data["std"] = list(self.std) if self.std is not None else None
        return data

    def describe(self, channels: int = 3) -> str:
        """The steps in words, for the contract's ``normalization`` field."""
        steps = []
        if channels == 3 and self.color_order == "BGR":
            steps.append("RGB -> BGR")
        divisor, offset = SCALES[self.scale]
        if divisor != 1.0 or offset:
            steps.append(f"x / {divisor:g}" + (f" - {offset:g}" if offset else ""))
        if self.mean is not None:
            steps.append(f"- mean {list(self.mean)}")
        if self.std is not None:
            steps.append(f"/ std {list(self.std)}")
        if self.layout == "NCHW":
            steps.append("NHWC -> NCHW")
        return ", ".join(steps) or "none"

    def apply(self, pixels: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """The documented transform: raw NHWC RGB pixels (float32 0-255) -> what the original model takes."""
        x: np.ndarray = np.asarray(pixels, np.float32)
        if x.shape[-1] == 3 and self.color_order == "BGR":
            x = x[..., ::-1]
        divisor, offset = SCALES[self.scale]
        if divisor != 1.0:
            x = x / np.float32(divisor)
        if offset:
            x = x - np.float32(offset)
        if self.mean is not None:
            x = x - np.asarray(self.mean, np.float32)
        if self.std is not None:
            x = x / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x.astype(dtype))

    def nodes(self, source: str, target: str, channels: int, elem_type: int) -> list[Any]:
        """ONNX nodes that turn ``source`` (raw NHWC pixels) into ``target`` (the original input), as ``apply``.

        Args:
            elem_type: The original input's ONNX element type (float, float16 or uint8: a final Cast).
        """
        from onnx import TensorProto, helper, numpy_helper

        nodes: list[Any] = []
        current = source

        def step(op: str, constant: np.ndarray | None = None, **attrs: Any) -> None:
            nonlocal current
            name = f"edgecnn_pre_{len(nodes)}"
            inputs = [current]
            if constant is not None:
                nodes.append(
                    helper.make_node(
                        "Constant", [], [f"{name}_c"], value=numpy_helper.from_array(constant, f"{name}_c")
                    )
                )
                inputs.append(f"{name}_c")
            nodes.append(helper.make_node(op, inputs, [name], **attrs))
            current = name

        if channels == 3 and self.color_order == "BGR":
            step("Gather", np.array([2, 1, 0], np.int64), axis=3)
        divisor, offset = SCALES[self.scale]
        if divisor != 1.0:
            step("Div", np.array(divisor, np.float32))
        if offset:
            step("Sub", np.array(offset, np.float32))
        if self.mean is not None:
            step("Sub", np.asarray(self.mean, np.float32))
        if self.std is not None:
            step("Div", np.asarray(self.std, np.float32))
        if self.layout == "NCHW":
            step("Transpose", perm=[0, 3, 1, 2])
        if elem_type != TensorProto.FLOAT:
            step("Cast", to=elem_type)
        nodes.append(helper.make_node("Identity", [current], [target]))
        return nodes


@dataclass(frozen=True)
class ResizeOptions:
    """How images of any size meet the model (the contract's input fields)."""

    size: tuple[int, int] | None = None  # (height, width); needed when the graph's input size is dynamic
    fit: str = "stretch"
    crop_fraction: float | None = None
    pad_value: int | None = None
    interpolation: str = "area"


@dataclass
class AdoptOptions:
    """What edgecnn must be told about a model it did not train: its labels, its pixels, its resize policy.

    ``preset`` names a common source's recipe (``preprocess.PRESETS``); every other field given (not None)
    replaces that part of it. ``size`` is (height, width), needed only where the graph does not fix it.
    """

    labels: str | Path | Sequence[str]
    preset: str | None = None
    layout: str | None = None
    color_order: str | None = None
    scale: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    output_kind: str | None = None
    size: tuple[int, int] | None = None
    fit: str | None = None
    crop_fraction: float | None = None
    pad_value: int | None = None
    interpolation: str | None = None

    def resolve(self) -> tuple[Preprocessing, ResizeOptions]:
        """The preprocessing and resize options, a preset's parts replaced by the options given."""
        pre, resize = preprocessing_from(
            self.preset,
            layout=self.layout,
            color_order=self.color_order,
            scale=self.scale,
            mean=self.mean,
            std=self.std,
            output_kind=self.output_kind,
            fit=self.fit,
            crop_fraction=self.crop_fraction,
            pad_value=self.pad_value,
            interpolation=self.interpolation,
        )
        return pre, ResizeOptions(size=self.size, **resize)


def preprocessing_from(preset: str | None, **options: Any) -> tuple[Preprocessing, dict[str, Any]]:
    """The preprocessing and resize options of a preset, with the options given (not None) replacing its parts.

    Returns:
        (Preprocessing, resize options: fit, crop_fraction, pad_value, interpolation).

    Raises:
        ConfigError: An unknown preset, or neither a preset nor ``scale`` (nothing can tell how a foreign
            model scales its pixels, so edgecnn asks rather than guesses).
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; choose from {', '.join(PRESETS)}")
    if preset is None and options.get("scale") is None:
        raise ConfigError(
            "say how the model expects its pixels: --preset "
            + "|".join(PRESETS)
            + ", or --scale 0-1|0-255|-1-1 (with --mean/--std and --color-order as its source documents)"
        )
    given = {k: v for k, v in options.items() if v is not None}
    merged = {**PRESETS.get(preset or "", {}), **given}
    for option, fit in (("crop_fraction", "crop"), ("pad_value", "letterbox")):
        if option in given and merged.get("fit", "stretch") != fit:
            raise ConfigError(f"--{option.replace('_', '-')} goes with --fit {fit}")
    resize: dict[str, Any] = {
        k: merged.pop(k) for k in ("fit", "crop_fraction", "pad_value", "interpolation") if k in merged
    }
    return Preprocessing(**merged), resize


def _choose(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {option} {value!r}; choose from {', '.join(choices)}")
