import json

import pytest

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


def test_round_trip_through_json():
    contract = make_contract(quantization={"method": "minmax", "per_channel": True})
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
        (lambda d: d.update(labels=["only"]), "at least two labels"),
        (lambda d: d.update(labels=["a", "a"]), "not unique"),
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
        (lambda d: d.update(input=[1, 2]), "input block"),
        (lambda d: d.update(surprise=True), "unknown fields"),
        (lambda d: d.update(training="fast"), "training"),
        (lambda d: d.update(quantization=[1]), "quantization"),
        (lambda d: d.update(output_activation="sigmoid"), "output activation"),
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
