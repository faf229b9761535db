import json
import subprocess
import sys

import onnx
import pytest
from onnxmodels import mean_colour_model
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import (
    METADATA_KEY,
    PREPROCESS_VERSION,
    SCHEMA,
    InputSpec,
    ModelContract,
    contract_from_metadata,
)
from edgecnn.core.errors import ContractError


def make_contract(**changes):
    base = ModelContract(labels=("cat", "dog"), input=InputSpec.square(64), training={"val_accuracy": 0.9})
    return base.with_updates(**changes) if changes else base


# The nested blocks exactly as export (convert.py) and int8 export (quantize.py) write them.
SOURCE = {
    "model_file": "model.keras",
    "model_sha256": "5" * 64,
    "created": "2026-11-23T12:28:49+00:00",
    "exporter": "edgecnn 0.1.0 (tf2onnx.convert.from_function)",
    "opset": 17,
}
QUANTIZATION = {
    "format": "QDQ",
    "weights": "int8",
    "activations": "int8",
    "per_channel": True,
    "calibration_method": "minmax",
    "calibration_images": 300,
    "calibration_source": "training images of the run (data)",
    "tool": "onnxruntime.quantization 1.20.0",
    "fp32_accuracy": 0.93,
    "int8_accuracy": None,
    "top1_agreement": 1.0,
    "eval_images": 300,
    "fp32_sha256": "8" * 64,
}
TRAINING = {"val_accuracy": 0.9, "val_images": 30, "dataset": "data", "epochs_run": 3, "best_epoch": None}


def test_round_trip_through_json():
    contract = make_contract(quantization=QUANTIZATION, source=SOURCE, training=TRAINING)
    again = ModelContract.from_json(contract.to_json())
    assert again == contract
    assert again.to_dict()["schema"] == SCHEMA
    assert again.input.shape == (64, 64, 3)
    assert again.labels == ("cat", "dog")


def test_grey_spec_uses_grey_colour_order():
    spec = InputSpec.square(32, channels=1)
    assert spec.color_order == "GRAY"
    assert ModelContract.from_json(make_contract(input=spec).to_json()).input.channels == 1


def test_missing_metadata_says_not_an_edgecnn_model():
    with pytest.raises(ContractError, match="not an edgecnn model.*edgecnn export"):
        contract_from_metadata({}, what="x.onnx")


def test_metadata_key_round_trip():
    contract = make_contract()
    assert contract_from_metadata({METADATA_KEY: contract.to_json()}) == contract


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("schema"), "no schema"),
        (lambda d: d.update(schema="edgecnn.contract/99"), "unknown contract schema"),
        (lambda d: d.update(labels=["only"]), "labels: expected a list of 2 to 100000 unique strings"),
        (lambda d: d.update(labels=["a", "a"]), "'a' more than once"),
        (lambda d: d.update(labels=["a", 3]), "non-empty string"),
        (lambda d: d.update(labels="ab"), "labels"),
        (lambda d: d.update(labels=["a", "b\x00"]), "control characters"),
        (lambda d: d["input"].update(height=0), "height"),
        (lambda d: d["input"].update(height="64"), "height"),
        (lambda d: d["input"].update(width=True), "width"),
        (lambda d: d["input"].update(channels=4), "channels"),
        (lambda d: d["input"].update(color_order="BGR"), "colour order"),
        (lambda d: d["input"].update(resize="lanczos"), "resize"),
        (lambda d: d["input"].update(value_range=[0, "x"]), "value_range"),
        (lambda d: d["input"].update(preprocess_version=PREPROCESS_VERSION + 1), "preprocessing version"),
        (lambda d: d["input"].pop("width"), "lacks width"),
        (lambda d: d["input"].update(extra=1), "unknown fields"),
        (lambda d: d.update(input=[1, 2]), "input: expected an object"),
        (lambda d: d.update(surprise=True), "unknown fields"),
        (lambda d: d.update(training="fast"), "training"),
        (lambda d: d.update(quantization=[1]), "quantization"),
        (lambda d: d.update(output_activation="sigmoid"), "output_activation: expected 'softmax'"),
    ],
)
def test_malformed_contracts_are_refused_clearly(mutate, message):
    data = make_contract().to_dict()
    mutate(data)
    with pytest.raises(ContractError, match=message):
        ModelContract.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("x" * (5 * 1024 * 1024), "at most"),
        ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ],
)
def test_non_json_metadata_is_refused_clearly(text, message):
    with pytest.raises(ContractError, match=message):
        ModelContract.from_json(text)


def write_model_with_contract(path, mutate):
    """The mean-colour test model with its contract JSON changed by ``mutate`` (written without checks)."""
    model = onnx.load(str(mean_colour_model(path)))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    data = json.loads(entry.value)
    mutate(data)
    entry.value = json.dumps(data)
    onnx.save(model, str(path))
    return path


def test_info_on_malformed_nested_contract_fields_says_what_is_wrong(tmp_path):
    def mutate(data):
        data["training"] = {"val_accuracy": 0.9, "val_images": 30}
        data["quantization"] = {
            "format": "QDQ",
            "calibration_images": "x",
            "fp32_accuracy": "high",
            "int8_accuracy": 0.9,
        }

    path = write_model_with_contract(tmp_path / "bad.onnx", mutate)
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2, result.output or repr(result.exception)
    assert result.stderr.strip() == (
        "error: contract field quantization.calibration_images: expected an integer >= 1, got 'x'"
    )
    assert "Traceback" not in result.output


def test_value_range_other_than_pixels_is_refused(tmp_path):
    data = make_contract().to_dict()
    data["input"]["value_range"] = [0.0, 1.0]
    with pytest.raises(ContractError, match=r"input\.value_range: expected \[0, 255\].*got \[0\.0, 1\.0\]"):
        ModelContract.from_json(json.dumps(data))
    with pytest.raises(ContractError, match="value_range"):
        InputSpec(height=8, width=8, value_range=(-1.0, 1.0))
    path = write_model_with_contract(tmp_path / "m.onnx", lambda d: d["input"].update(value_range=[0, 1]))
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2 and "input.value_range: expected [0, 255]" in result.stderr


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["training"].update(val_accuracy=93.3),
            "training.val_accuracy: expected a number from 0 to 1 or null, got 93.3",
        ),
        (lambda d: d["training"].update(val_accuracy="high"), "training.val_accuracy: expected a number"),
        (
            lambda d: d["training"].update(epochs_run=-1),
            "training.epochs_run: expected an integer >= 0, got -1",
        ),
        (
            lambda d: d["quantization"].update(calibration_images=0),
            "quantization.calibration_images: expected an integer >= 1, got 0",
        ),
        (
            lambda d: d["quantization"].update(per_channel="yes"),
            "quantization.per_channel: expected true or false, got 'yes'",
        ),
        (
            lambda d: d["quantization"].update(format="QOperator"),
            "quantization.format: expected 'QDQ', got 'QOperator'",
        ),
        (
            lambda d: d["quantization"].update(top1_agreement=True),
            "quantization.top1_agreement: expected a number",
        ),
        (
            lambda d: d["quantization"].update(fp32_sha256="abc"),
            r"quantization.fp32_sha256: expected a string \(64 lowercase hex digits\)",
        ),
        (lambda d: d["source"].update(opset="17"), "source.opset: expected an integer >= 1, got '17'"),
        (
            lambda d: d["input"].update(height=64.0),
            "input.height: expected an integer from 1 to 4096, got 64.0",
        ),
        (
            lambda d: d["input"].update(channels=1),
            r"input.color_order: expected 'GRAY' \(the colour order of 1-channel input\), got 'RGB'",
        ),
        (lambda d: d["input"].update(value_range=[0, 255, 0]), r"input.value_range: expected \[0, 255\]"),
        (
            lambda d: d.update(labels=["a", "b", "a"] + [f"l{i}" for i in range(100)]),
            "labels: .*got 'a' more than once",
        ),
        (lambda d: d.update(labels=["a", "b\ud800"]), r"labels\[1\] is not valid Unicode"),
        (
            lambda d: d.update(surprise=1),
            "the contract has unknown fields: surprise; this edgecnn knows schema, labels",
        ),
        (lambda d: d.pop("labels"), "the contract lacks labels"),
    ],
)
def test_malformed_fields_are_named_by_their_json_path(mutate, message):
    data = make_contract(
        quantization=dict(QUANTIZATION), source=dict(SOURCE), training=dict(TRAINING)
    ).to_dict()
    mutate(data)
    with pytest.raises(ContractError, match=message) as info:
        ModelContract.from_json(json.dumps(data))
    assert "\n" not in str(info.value)


def test_provenance_blocks_may_carry_more_fields_than_edgecnn_writes():
    data = make_contract(
        quantization={**QUANTIZATION, "note": "by hand"}, training={"val_accuracy": 1}
    ).to_dict()
    assert ModelContract.from_dict(data).quantization["note"] == "by hand"


def test_contracts_built_in_python_are_checked_too():
    with pytest.raises(ContractError, match="training.val_accuracy: expected a number from 0 to 1"):
        make_contract(training={"val_accuracy": 1.5})
    with pytest.raises(ContractError, match="labels: expected a list"):
        ModelContract(labels="ab", input=InputSpec.square(8))
    with pytest.raises(ContractError, match="input.height: expected an integer from 1 to 4096, got 0"):
        InputSpec(height=0, width=8)


def test_schema_file_agrees_with_the_code():
    from importlib.resources import files

    from edgecnn.conversion.quantize import METHODS
    from edgecnn.core import contract as c

    schema = json.loads((files("edgecnn.core") / "contract.schema.json").read_text(encoding="utf-8"))
    spec, labels = schema["$defs"]["input"]["properties"], schema["properties"]["labels"]
    assert schema["properties"]["schema"]["const"] == c.SCHEMA
    assert spec["preprocess_version"]["const"] == c.PREPROCESS_VERSION
    assert (spec["height"]["maximum"], spec["width"]["maximum"]) == (c.MAX_SIDE, c.MAX_SIDE)
    assert sorted(spec["channels"]["enum"]) == sorted(c.COLOR_ORDERS)
    assert (tuple(spec["resize"]["enum"]), tuple(spec["fit"]["enum"]), tuple(spec["alpha"]["enum"])) == (
        c.RESIZE_METHODS,
        c.FIT_MODES,
        c.ALPHA_MODES,
    )
    assert (labels["maxItems"], labels["items"]["maxLength"]) == (c.MAX_LABELS, c.MAX_LABEL_LENGTH)
    assert tuple(schema["$defs"]["quantization"]["properties"]["calibration_method"]["enum"]) == METHODS
    assert set(schema["$defs"]["input"]["properties"]) == set(InputSpec.__dataclass_fields__)
    assert set(schema["properties"]) == set(ModelContract.__dataclass_fields__)


def test_schema_file_is_valid_json_schema_2020_12():
    """The published schema, read by a reference implementation as other runtimes would read it."""
    jsonschema = pytest.importorskip("jsonschema")  # not an edgecnn dependency: checked where installed
    from importlib.resources import files

    schema = json.loads((files("edgecnn.core") / "contract.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    contract = make_contract(quantization=QUANTIZATION, source=SOURCE, training=TRAINING).to_dict()
    assert jsonschema.Draft202012Validator(schema).is_valid(contract)
    contract["input"]["width"] = 0
    assert not jsonschema.Draft202012Validator(schema).is_valid(contract)


@pytest.mark.parametrize(
    ("block", "name", "value"),
    [
        ("input", "width", 48.0),
        ("input", "channels", 3.0),
        ("input", "preprocess_version", 1.0),
        ("training", "epochs_run", 3.0),
        ("training", "best_epoch", 2.0),
        ("quantization", "calibration_images", 300.0),
        ("source", "opset", 17.0),
    ],
)
def test_whole_floats_are_not_integers(block, name, value):
    data = make_contract(
        quantization=dict(QUANTIZATION), source=dict(SOURCE), training=dict(TRAINING)
    ).to_dict()
    data[block][name] = value
    with pytest.raises(ContractError, match=rf"{block}\.{name}: expected .*got {value}"):
        ModelContract.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["cat\n", "dog"], r"labels\[0\]: .*no control characters"),  # not even as the last character
        ([1, 1.0], r"labels: expected a list of 2 to 100000 unique strings, got \[1, 1\.0\]"),
        ([json.loads("[" * 600 + "]" * 600)] * 2, "nests lists or objects too deeply"),
    ],
)
def test_awkward_labels_are_refused_clearly(labels, message):
    data = make_contract().to_dict()
    data["labels"] = labels
    with pytest.raises(ContractError, match=message):
        ModelContract.from_json(json.dumps(data))


def test_checking_leaves_the_data_as_it_was():
    data = {"schema": SCHEMA, "labels": ["cat", "dog"], "input": {"height": 8, "width": 8}, "source": {}}
    before = json.dumps(data)
    contract = ModelContract.from_dict(data)
    assert json.dumps(data) == before  # no schema defaults written into the caller's dict
    assert contract.input.color_order == "RGB"


def test_formats_are_annotations_not_checks():
    source = {**SOURCE, "created": "2026-11-23 12:28"}  # not RFC 3339 date-time, still a string
    assert ModelContract.from_json(make_contract(source=source).to_json()).source == source


def test_the_schema_is_compiled_on_first_use_without_jsonschema():
    code = (
        "import sys; import edgecnn.core.contract as c; assert 'fastjsonschema' not in sys.modules; "
        "c.InputSpec.square(8); assert 'jsonschema' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_schema_is_compiled_once_not_on_every_read(monkeypatch):
    import fastjsonschema

    import edgecnn.core.contract as contract_module

    compiled = []
    real = fastjsonschema.compile
    monkeypatch.setattr(fastjsonschema, "compile", lambda *a, **k: compiled.append(1) or real(*a, **k))
    contract_module._validator.cache_clear()
    text = make_contract(quantization=QUANTIZATION, source=SOURCE, training=TRAINING).to_json()
    assert ModelContract.from_json(text).to_json() == text
    first = len(compiled)
    for _ in range(5):
        assert ModelContract.from_json(text).to_json() == text
    assert first >= 1 and len(compiled) == first  # about 20 ms a schema: paid by the first read only
    contract_module._validator.cache_clear()  # later tests compile with the real function
