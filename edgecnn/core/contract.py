"""The model contract: everything a runtime needs to feed a model and read its answer.

One JSON document, written by training (into ``report.json``) and by export (into the ONNX file's
``metadata_props`` under the key ``edgecnn``), read by every inference command. Because the labels, the input
size, the colour order and the resize rule travel inside the model file, no inference command takes
``--labels`` or ``--size`` flags and nothing can drift between training and deployment.

Its shape is ``contract.schema.json`` (JSON Schema draft 2020-12), published for other runtimes; every contract
is checked against it when it is built or read, so a malformed field is refused by name, with what was expected.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from functools import cache
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
RESIZE_METHODS = ("area", "linear", "cubic", "pil-bilinear")
FIT_MODES = ("stretch", "crop", "letterbox")
#: torchvision's Resize(256) + CenterCrop(224): the share of the scaled side that ``fit="crop"`` keeps.
DEFAULT_CROP_FRACTION = 0.875
ALPHA_MODES = ("white",)
MAX_LABELS = 100_000
MAX_LABEL_LENGTH = 200
MAX_SIDE = 4096
MAX_JSON_BYTES = 4 * 1024 * 1024
_CHECKED = ContextVar("_CHECKED", default=False)  # True while from_dict builds what it has just validated


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor (N, H, W, C float32 raw pixel values 0-255).

    What each field means and what it may hold: ``contract.schema.json``, ``$defs/input``.
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
    crop_fraction: float | None = None  # fit "crop" only (DEFAULT_CROP_FRACTION when not given)
    pad_value: int | None = None  # fit "letterbox" only (0 when not given)

    @classmethod
    def square(cls, size: int, channels: int = 3) -> InputSpec:
        """An input spec for a square model input of side ``size``."""
        return cls(height=size, width=size, channels=channels, color_order=COLOR_ORDERS.get(channels, "?"))

    def __post_init__(self) -> None:
        if self.fit == "crop" and self.crop_fraction is None:
            object.__setattr__(self, "crop_fraction", DEFAULT_CROP_FRACTION)
        if self.fit == "letterbox" and self.pad_value is None:
            object.__setattr__(self, "pad_value", 0)
        if self.crop_fraction is not None and not math.isfinite(self.crop_fraction):
            raise ContractError(
                f"contract field input.crop_fraction must be a number, got {self.crop_fraction}"
            )
        for name, fit in (("crop_fraction", "crop"), ("pad_value", "letterbox")):
            if getattr(self, name) is not None and self.fit != fit:
                raise ContractError(
                    f"contract field input.{name} applies to fit {fit!r} only; fit is {self.fit!r}"
                )
        if not _CHECKED.get():
            validate_contract(self.to_dict(), part="input")

    def to_dict(self) -> dict[str, Any]:
        """The input block as JSON data; the fit options appear only for the fit that uses them."""
        data = {key: value for key, value in asdict(self).items() if value is not None}
        return {**data, "value_range": _listed(self.value_range)}

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class ModelContract:
    """The labels, input and provenance of one model: the edgecnn contract.

    What each field means and what it may hold: ``contract.schema.json``. ``labels[i]`` names output column i.
    """

    labels: tuple[str, ...]
    input: InputSpec
    arch: str = "cnn"
    normalization: str = "rescale 1/255 (in graph)"
    output_name: str = OUTPUT_NAME
    output_activation: str = "softmax"
    training: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    precision: str | None = None  # written for fp16 models; None: fp32, or int8 with a quantization block
    tta: str | None = None  # test-time augmentation inside the graph ("flip"); None: none
    source: dict[str, Any] = field(default_factory=dict)
    edgecnn_version: str = __version__
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        _check_schema_version(self.schema)
        if not isinstance(self.input, InputSpec):
            raise ContractError(f"contract field input: expected an InputSpec, got {_show(self.input)}")
        if not _CHECKED.get():
            validate_contract(self.to_dict())
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def numeric_precision(self) -> str:
        """fp32, fp16 or int8: the precision field when written, else int8 for a quantised model, else fp32."""
        return self.precision or ("int8" if self.quantization else "fp32")

    def with_updates(self, **changes: Any) -> ModelContract:
        """A copy with some fields replaced (the contract is immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = _listed(self.labels)
        data["input"] = self.input.to_dict()
        for name in ("precision", "tta"):  # absent when unused, as in every file written before they existed
            if data[name] is None:
                del data[name]
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
        _check_schema_version(data.get("schema"))
        validate_contract(data)
        raw_input = dict(data["input"])
        if "value_range" in raw_input:
            raw_input["value_range"] = tuple(float(v) for v in raw_input["value_range"])
        token = _CHECKED.set(True)  # validated once above, against the JSON as written
        try:
            return cls(**{**data, "labels": tuple(data["labels"]), "input": InputSpec(**raw_input)})
        finally:
            _CHECKED.reset(token)

    @classmethod
    def from_json(cls, text: Any) -> ModelContract:
        """Parse the JSON stored in a model file.

        Raises:
            ContractError: Not JSON, too large, or not a valid contract.
        """
        try:
            text = text.decode("utf-8") if isinstance(text, bytes) else text
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
            f"{what} is not an edgecnn model (no '{METADATA_KEY}' metadata); a classifier from elsewhere "
            "gets one with `edgecnn adopt MODEL --labels FILE --preset ...`, an edgecnn Keras model with "
            "`edgecnn export`"
        )
    return ModelContract.from_json(metadata[METADATA_KEY])


def validate_contract(data: Any, part: str | None = None) -> None:
    """Check parsed contract JSON (or its ``input`` block, with ``part="input"``) against the schema.

    Raises:
        ContractError: Names the JSON path of the first bad field, what was expected and what was found.
    """
    block = data if part == "input" else data.get("input") if isinstance(data, dict) else None
    version = block.get("preprocess_version") if isinstance(block, dict) else None
    if _is_int(version) and version != PREPROCESS_VERSION:  # checked first: a newer model is not malformed
        raise ContractError(
            f"the model was made with preprocessing version {version!r}; this edgecnn "
            f"({__version__}) implements version {PREPROCESS_VERSION}: upgrade edgecnn or re-export the model"
        )
    error = _first_error(data, part)
    if error is not None:
        path, keyword, value, schema = error
        raise ContractError(_message(f".{part}{path}" if part else path, keyword, value, schema))
    for i, label in enumerate(data["labels"] if part is None else ()):
        if re.search("[\ud800-\udfff]", label):
            raise ContractError(f"contract field labels[{i}] is not valid Unicode text (a lone surrogate)")


def _first_error(data: Any, part: str | None) -> tuple[str, str | None, Any, Any] | None:
    """The first error in the schema's order as (JSON path, keyword, value found, schema broken), or None."""
    from fastjsonschema import JsonSchemaValueException

    validate, integers = _validator(part)
    try:
        validate(data)
    except JsonSchemaValueException as error:  # its name is the path written from "data": data.labels[1]
        return (error.name or "data")[4:], error.rule, error.value, error.definition
    except RecursionError:  # uniqueItems compares nested lists recursively; json.loads allows deeper ones
        raise ContractError("the edgecnn metadata nests lists or objects too deeply to be checked") from None
    # JSON Schema counts 64.0 as an integer; a tensor shape cannot be a float, so Python's int only.
    for path, schema in integers:
        value = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, float):
            return "".join(f".{key}" for key in path), "type", value, schema
    return None


@cache
def _validator(part: str | None) -> tuple[Callable[[Any], Any], list[tuple[tuple[str, ...], dict[str, Any]]]]:
    """The schema compiled to Python (~20 ms, paid by the first contract read) and its integer fields."""
    from importlib.resources import files

    import fastjsonschema

    schema = json.loads(files(__package__).joinpath("contract.schema.json").read_text(encoding="utf-8"))
    if part is not None:  # the same document, entered at one of its blocks
        schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{part}"}
    integers = list(_integer_fields(schema, schema))  # first: compile rewrites the schema's $refs in place
    # As in JSON Schema 2020-12, a format is an annotation, not a check; and validating must not fill in
    # defaults, which would change the caller's data.
    return fastjsonschema.compile(schema, use_default=False, use_formats=False), integers


def _integer_fields(
    schema: dict[str, Any], root: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if "$ref" in schema:  # every reference in the schema is local: #/$defs/<name>
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    kinds = schema.get("type", [])
    if "integer" in ([kinds] if isinstance(kinds, str) else kinds):
        yield path, schema
    for name, field_schema in schema.get("properties", {}).items():
        yield from _integer_fields(field_schema, root, (*path, name))


def _message(path: str, keyword: str | None, value: Any, schema: Any) -> str:
    where = f"contract field {path[1:]}" if path else "the contract"
    if keyword == "required":
        return f"{where} lacks {', '.join(k for k in schema['required'] if k not in value)}"
    if keyword == "additionalProperties":
        unknown = ", ".join(sorted(map(str, set(value) - set(schema["properties"])))[:5])
        return f"{where} has unknown fields: {unknown}; this edgecnn knows {', '.join(schema['properties'])}"
    got = _show(value)
    if keyword == "uniqueItems":  # name the first repeated item: the list may be too long to show
        repeated = (f"{r[:60]} more than once" for r, n in Counter(map(repr, value)).items() if n > 1)
        got = next(repeated, got)  # 1 and 1.0 are the same JSON value but not the same text
    why = schema.get("description")  # where only some values are allowed, the schema says why
    return f"{where}: expected {_expected(schema)}{f' ({why})' if why else ''}, got {got}"


def _expected(schema: dict[str, Any]) -> str:
    if "const" in schema or "enum" in schema:
        return " or ".join(map(repr, schema["enum"] if "enum" in schema else [schema["const"]]))
    kinds = schema.get("type", [])
    return " or ".join(_describe(kind, schema) for kind in ([kinds] if isinstance(kinds, str) else kinds))


def _describe(kind: str, schema: dict[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind in ("integer", "number"):
        bounds = f" from {low} to {high}" if high is not None else f" >= {low}" if low is not None else ""
        return ("an integer" if kind == "integer" else "a number") + bounds
    if kind == "string":
        most = f" of at most {schema['maxLength']} characters" if "maxLength" in schema else ""
        return f"a {'non-empty ' if schema.get('minLength') else ''}string{most}"
    if kind == "array" and "maxItems" in schema:
        unique, noun = "unique " if schema.get("uniqueItems") else "", schema["items"]["type"] + "s"
        return f"a list of {schema.get('minItems', 0)} to {schema['maxItems']} {unique}{noun}"
    return {"object": "an object", "array": "a list", "boolean": "true or false"}.get(kind, kind)


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_schema_version(schema: Any) -> None:
    if schema != SCHEMA:
        found = f"unknown contract schema {_show(schema)} (this edgecnn reads {SCHEMA!r})"
        found = "no schema field" if schema is None else found
        raise ContractError(f"the edgecnn metadata has {found}; re-export the model with `edgecnn export`")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf, which to_json could not write back
        raise ValueError(f"{text[:20]} is out of range")
    return value
