"""The shipped models and samples work right after install, with no training: the ImageNet default model with
no --model, the shapes model with the samples."""

import csv
import json
from pathlib import Path

from conftest import REPO
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract

runner = CliRunner()
MODELS = REPO / "models"
SAMPLES = REPO / "samples"


def test_classify_samples_with_the_shapes_model(monkeypatch, tmp_path):
    """Every sample is classified as the shape its name carries (circle-1.jpg, square-grey.png, ...)."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "results.csv"
    args = ["classify", "samples/", "--model", "models/shapes-cnn.int8.onnx", "--json", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    images = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    assert summary["classified"] == len(images) >= 9
    with open(out, newline="", encoding="utf-8") as fh:
        labels = {Path(row["path"]).name: row["label"] for row in csv.DictReader(fh)}
    assert sorted(labels) == images
    wrong = {name: label for name, label in labels.items() if label != name.split("-")[0]}
    assert not wrong, wrong


def test_the_default_model_is_the_imagenet_model(monkeypatch, tmp_path):
    """No --model: classify, webcam, edgecnn.load() and edgecnn.classify() use EfficientNet-Lite0 with the
    1,000 ImageNet classes, built from the published weights (their SHA-256 is in the contract)."""
    import edgecnn
    from edgecnn.core.shipped import DEFAULT_MODEL_NAMES, MODEL_ENV, SEVEN_BIT_MODEL_NAME
    from edgecnn.training.efficientnet_lite import VARIANTS

    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, ["classify", "samples/", "--json", "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert "using the shipped default model" in result.stderr and "imagenet-lite0" in result.stderr
    assert json.loads(result.stdout)["classified"] >= 9
    model = edgecnn.load(provider="cpu")
    assert model.path.name in (*DEFAULT_MODEL_NAMES, SEVEN_BIT_MODEL_NAME) and len(model.labels) == 1000
    assert model.labels[281] == "tabby" and model.labels[207] == "golden retriever"
    pretrained = model.contract.training["pretrained"]
    assert (
        pretrained["sha256"] == VARIANTS["efficientnet-lite0"].sha256
        and pretrained["licence"] == "Apache-2.0"
    )
    spec = model.contract.input
    assert (spec.height, spec.fit, spec.crop_fraction, spec.resize) == (224, "crop", 0.875, "cubic")
    summary = edgecnn.classify(str(SAMPLES / "circle-1.jpg"))
    assert summary.classified == 1
    result = runner.invoke(app, ["webcam", "--source", "samples/shapes.mp4", "--no-display", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames_classified"] == summary["frames_read"] > 0


def test_the_seven_bit_file_is_the_default_where_int8_saturates(monkeypatch):
    from edgecnn.core import cpuinfo
    from edgecnn.core.shipped import MODEL_ENV, SEVEN_BIT_MODEL_NAME, default_model_path

    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: True)
    assert default_model_path().name == SEVEN_BIT_MODEL_NAME
    assert read_contract(load_onnx(default_model_path())).quantization["reduce_range"] is True
    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: False)
    assert default_model_path().name == "imagenet-lite0.int8.onnx"


def test_the_imagenet_model_card_is_true():
    """The card's figures are the shipped file's: its name, size, precision and calibration."""
    from edgecnn.core.shipped import default_model_path

    card = json.loads((MODELS / "imagenet-model-card.json").read_text())
    path = default_model_path()
    assert path is not None and path.name in card["models"]
    assert sorted(p.name for p in MODELS.glob("imagenet*.onnx")) == sorted(card["models"])
    drop = card["max_int8_drop"]
    holds = all(card[k]["top1"] >= card["fp32"]["top1"] - drop for k in ("int8", "int8_7bit"))
    assert card["int8_holds"] == holds
    for name in card["models"]:
        contract = read_contract(load_onnx(MODELS / name))
        key = "fp32" if contract.numeric_precision == "fp32" else "int8"
        if contract.quantization:
            assert contract.quantization["calibration_images"] == card["calibration"]["images"]
            key = "int8_7bit" if contract.quantization["reduce_range"] else "int8"
            assert contract.quantization["activations"] == "uint8"
        assert card[key]["bytes"] == (MODELS / name).stat().st_size
    assert card["fp32"]["top1"] >= 0.9 and card["eval"]["images"] >= 1000
    assert "imagenet-lite0" in (MODELS / "README.md").read_text()


def test_shipped_models_carry_the_contract_and_the_card_is_true():
    fp32 = read_contract(load_onnx(MODELS / "shapes-cnn.onnx"))
    int8_model = load_onnx(MODELS / "shapes-cnn.int8.onnx")
    int8 = read_contract(int8_model)
    assert fp32.labels == int8.labels == ("circle", "square", "triangle")
    assert op_counts(int8_model)["QuantizeLinear"] > 0 and int8.quantization["format"] == "QDQ"
    card = json.loads((MODELS / "model-card.json").read_text())
    assert abs(card["fp32_test_accuracy"] - card["int8_test_accuracy"]) <= 0.01
    assert card["int8_test_accuracy"] == int8.quantization["int8_accuracy"]
    assert (MODELS / "shapes-cnn.int8.onnx").stat().st_size < 3_000_000
