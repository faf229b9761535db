"""The shipped models and samples work right after install, with no training and no --model."""

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


def test_classify_samples_with_the_default_model(monkeypatch, tmp_path):
    """Every sample is classified as the shape its name carries (circle-1.jpg, square-grey.png, ...)."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "results.csv"
    result = runner.invoke(app, ["classify", "samples/", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "using the shipped default model" in result.stderr
    summary = json.loads(result.stdout)
    images = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    assert summary["classified"] == len(images) >= 9
    with open(out, newline="", encoding="utf-8") as fh:
        labels = {Path(row["path"]).name: row["label"] for row in csv.DictReader(fh)}
    assert sorted(labels) == images
    wrong = {name: label for name, label in labels.items() if label != name.split("-")[0]}
    assert not wrong, wrong


def test_webcam_on_the_sample_video_with_the_default_model(monkeypatch):
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, ["webcam", "--source", "samples/shapes.mp4", "--no-display", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames_classified"] == summary["frames_read"] > 0


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
