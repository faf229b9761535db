"""The model contract: everything a runtime needs to feed a model and read its answer.

One JSON document, written by training (into ``report.json``) and by export (into the ONNX file's
``metadata_props`` under the key ``edgecnn``), read by every inference command. Because the labels, the input
size, the colour order and the resize rule travel inside the model file, no inference command takes
``--labels`` or ``--size`` flags and nothing can drift between training and deployment.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgecnn.core.errors import ContractError
from edgecnn.core.version import __version__

SCHEMA = "edgecnn.contract/1"
METADATA_KEY = "edgecnn"
#: Bumped whenever imaging.load_image would turn the same file into a different tensor.
PREPROCESS_VERSION = 1

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"

COLOR_ORDERS = {3: "RGB", 1: "GRAY"}
RESIZE_METHODS = ("area",)
FIT_MODES = ("stretch",)
ALPHA_MODES = ("white",)
MAX_LABELS = 100_000
MAX_LABEL_LENGTH = 200
MAX_SIDE = 4096
MAX_JSON_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor (N, H, W, C float32 raw pixel values 0-255).

    Attributes:
        height: Input height in pixels.
        width: Input width in pixels.
        channels: 3 (RGB) or 1 (grey).
        resize: Interpolation used to reach (height, width); "area" is OpenCV's INTER_AREA.
        fit: How the aspect ratio is handled; "stretch" resizes the whole image to the input size.
        alpha: How transparency is removed; "white" composites transparent pixels over white.
        orientation: "exif" rotates photos as their EXIF orientation tag says.
        preprocess_version: The imaging.load_image version the model was trained with.
    """

    height: int
    width: int
    channels: int = 3
    name: str = INPUT_NAME
    layout: str = "NHWC"
    dtype: str = "float32"
    color_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 255.0)
    resize: str = "area"
    fit: str = "stretch"
    alpha: str = "white"
    orientation: str = "exif"
    preprocess_version: int = PREPROCESS_VERSION

    @classmethod
    def square(cls, size: int, channels: int = 3) -> InputSpec:
        """An input spec for a square model input of side ``size``."""
        return cls(height=size, width=size, channels=channels, color_order=COLOR_ORDERS.get(channels, "?"))

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= MAX_SIDE:
                raise ContractError(f"input {name} must be an integer from 1 to {MAX_SIDE}, got {value!r}")
        if self.channels not in COLOR_ORDERS:
            raise ContractError(f"input channels must be 1 or 3, got {self.channels!r}")
        if self.color_order != COLOR_ORDERS[self.channels]:
            raise ContractError(
                f"colour order {self.color_order!r} does not fit {self.channels} channel(s); "
                f"expected {COLOR_ORDERS[self.channels]!r}"
            )
        _check_choice("input layout", self.layout, ("NHWC",))
        _check_choice("input dtype", self.dtype, ("float32",))
        _check_choice("resize method", self.resize, RESIZE_METHODS)
        _check_choice("fit mode", self.fit, FIT_MODES)
        _check_choice("alpha mode", self.alpha, ALPHA_MODES)
        _check_choice("orientation mode", self.orientation, ("exif",))
        if not isinstance(self.name, str) or not self.name:
            raise ContractError(f"input name must be a non-empty string, got {self.name!r}")
        if self.preprocess_version != PREPROCESS_VERSION:
            raise ContractError(
                f"the model was made with preprocessing version {self.preprocess_version!r}; this edgecnn "
                f"({__version__}) implements version {PREPROCESS_VERSION}: upgrade edgecnn or re-export the model"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class ModelContract:
    """The labels, input and provenance of one model.

    Attributes:
        labels: Class names; index i is output column i (sorted class-folder names at training time).
        input: How images become the input tensor.
        arch: The architecture that produced the model ("cnn", "vgg16").
        normalization: What the graph does to raw pixels before the first layer (it lives in the graph).
        output_name: Name of the probabilities output.
        output_activation: "softmax": the output rows are probabilities that sum to one.
        training: Summary of the training run (accuracy, dataset, epochs).
        quantization: None for float models; the settings used for int8 models.
        source: Provenance: hash of the source model, creation time.
        edgecnn_version: The edgecnn version that wrote the contract.
    """

    labels: tuple[str, ...]
    input: InputSpec
    arch: str = "cnn"
    normalization: str = "rescale 1/255 (in graph)"
    output_name: str = OUTPUT_NAME
    output_activation: str = "softmax"
    training: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    edgecnn_version: str = __version__
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        if self.schema != SCHEMA:
            raise ContractError(
                f"unknown contract schema {self.schema!r} (this edgecnn reads {SCHEMA!r}); "
                "re-export the model with `edgecnn export`"
            )
        labels = self.labels
        if not isinstance(labels, (list, tuple)) or len(labels) < 2:
            raise ContractError("the contract must list at least two labels")
        if len(labels) > MAX_LABELS:
            raise ContractError(
                f"the contract lists {len(labels)} labels; at most {MAX_LABELS} are supported"
            )
        for label in labels:
            if not isinstance(label, str) or not label or len(label) > MAX_LABEL_LENGTH:
                raise ContractError(
                    f"every label must be a non-empty string of at most {MAX_LABEL_LENGTH} characters, "
                    f"got {str(label)[:60]!r}"
                )
            if any(ord(ch) < 32 for ch in label):
                raise ContractError(f"label {label!r} contains control characters")
            if not _is_utf8(label):
                raise ContractError(f"label {label!r} is not valid Unicode text (a lone surrogate)")
        if len(set(labels)) != len(labels):
            raise ContractError("the contract's labels are not unique")
        object.__setattr__(self, "labels", tuple(labels))
        if not isinstance(self.input, InputSpec):
            raise ContractError("the contract's input block is missing or malformed")
        for name in ("arch", "normalization", "output_name", "edgecnn_version"):
            if not isinstance(getattr(self, name), str):
                raise ContractError(f"contract field {name!r} must be a string")
        _check_choice("output activation", self.output_activation, ("softmax",))
        for name in ("training", "source"):
            if not isinstance(getattr(self, name), dict):
                raise ContractError(f"contract field {name!r} must be an object")
        if self.quantization is not None and not isinstance(self.quantization, dict):
            raise ContractError("contract field 'quantization' must be an object or null")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def with_updates(self, **changes: Any) -> ModelContract:
        """A copy with some fields replaced (the contract is immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input"]["value_range"] = list(self.input.value_range)
        # Keep the schema first so that a human reading the metadata sees it at once.
        return {"schema": data.pop("schema"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> ModelContract:
        """Build a contract from parsed JSON, with a clear error for anything malformed.

        Raises:
            ContractError: The data is not a valid edgecnn contract.
        """
        if not isinstance(data, dict):
            raise ContractError("the edgecnn metadata is not a JSON object")
        if "schema" not in data:
            raise ContractError(
                "the edgecnn metadata has no schema field; re-export the model with `edgecnn export`"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContractError(
                f"the edgecnn metadata has unknown fields: {', '.join(map(str, unknown[:5]))}"
            )
        if "labels" not in data or "input" not in data:
            raise ContractError("the edgecnn metadata lacks 'labels' or 'input'")
        raw_input = data["input"]
        if not isinstance(raw_input, dict):
            raise ContractError("the contract's input block is not an object")
        input_known = set(InputSpec.__dataclass_fields__)
        unknown_input = sorted(set(raw_input) - input_known)
        if unknown_input:
            raise ContractError(
                f"the contract's input block has unknown fields: {', '.join(unknown_input[:5])}"
            )
        missing = [k for k in ("height", "width") if k not in raw_input]
        if missing:
            raise ContractError(f"the contract's input block lacks {', '.join(missing)}")
        raw_input = dict(raw_input)
        value_range = raw_input.get("value_range", (0.0, 255.0))
        if (
            not isinstance(value_range, (list, tuple))
            or len(value_range) != 2
            or not all(_is_number(v) for v in value_range)
        ):
            raise ContractError(f"input value_range must be two numbers, got {value_range!r}")
        raw_input["value_range"] = (float(value_range[0]), float(value_range[1]))
        for key in ("height", "width", "channels", "preprocess_version"):
            if key in raw_input and not _is_int(raw_input[key]):
                raise ContractError(f"input {key} must be an integer, got {raw_input[key]!r}")
        try:
            spec = InputSpec(**raw_input)
            fields = dict(data)
            fields["input"] = spec
            labels = fields["labels"]
            if not isinstance(labels, list):
                raise ContractError("the contract's labels must be a list of strings")
            fields["labels"] = tuple(labels)
            return cls(**fields)
        except TypeError as exc:  # a field of the wrong kind reached the constructor
            raise ContractError(f"the edgecnn metadata is malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: Any) -> ModelContract:
        """Parse the JSON stored in a model file.

        Raises:
            ContractError: Not JSON, too large, or not a valid contract.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ContractError("the edgecnn metadata is not UTF-8 text") from None
        if not isinstance(text, str):
            raise ContractError("the edgecnn metadata is not text")
        if len(text) > MAX_JSON_BYTES:
            raise ContractError(
                f"the edgecnn metadata is {len(text)} bytes; at most {MAX_JSON_BYTES} are accepted"
            )
        try:
            data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            raise ContractError(f"the edgecnn metadata is not valid JSON ({str(exc)[:80]})") from None
        return cls.from_dict(data)


def contract_from_metadata(metadata: dict[str, str], what: str = "this model") -> ModelContract:
    """Read the contract from an ONNX file's metadata_props.

    Raises:
        ContractError: The key is missing ("not an edgecnn model") or its value is not a valid contract.
    """
    if METADATA_KEY not in metadata:
        raise ContractError(
            f"{what} is not an edgecnn model (no '{METADATA_KEY}' metadata); "
            "re-export it with `edgecnn export`"
        )
    return ModelContract.from_json(metadata[METADATA_KEY])


def _check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ContractError(f"unknown {what} {value!r}; this edgecnn knows {', '.join(choices)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf, which to_json could not write back
        raise ValueError(f"{text[:20]} is out of range")
    return value
