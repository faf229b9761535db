"""evaluate, --eval and --calib read a train/validation tree exactly as train does."""

import json

import numpy as np
import pytest
from onnxmodels import mean_colour_model
from PIL import Image
from typer.testing import CliRunner

from edgecnn.apps.evaluate import load_onnx_model, resolve_eval_dir, run_on_folder
from edgecnn.cli import app
from edgecnn.conversion.samples import folder_samples
from edgecnn.core.onnxfile import load_onnx, read_contract

runner = CliRunner()
COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def write_class_folders(root, per_class):
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((16, 16, 3), rgb, np.uint8)).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mean_colour_model(tmp_path_factory.mktemp("m") / "colour.onnx")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A ``training/`` + ``validation/`` tree (names ``train`` accepts); validation has 2 images a class."""
    root = tmp_path_factory.mktemp("data")
    write_class_folders(root / "training", per_class=3)
    write_class_folders(root / "validation", per_class=2)
    return root


def test_resolve_eval_dir_takes_the_validation_folder(tree):
    assert resolve_eval_dir(tree) == tree / "validation"


def test_evaluate_runs_on_the_validation_folder(model, tree):
    result = run_on_folder(load_onnx_model(model, provider="cpu"), tree)
    assert result.data_dir == tree / "validation"
    assert result.metrics.count == 6 and result.metrics.accuracy == 1.0


def test_cli_evaluate_accepts_a_training_validation_tree(model, tree):
    result = runner.invoke(app, ["evaluate", str(model), str(tree), "--provider", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["data_dir"] == str(tree / "validation") and data["count"] == 6


def test_calibration_and_eval_folders_use_the_validation_folder(model, tree):
    contract = read_contract(load_onnx(model))
    for option in ("--calib", "--eval"):
        samples = folder_samples(tree, contract, option)
        assert len(samples) == 6
        assert all(path.parent.parent == tree / "validation" for path, _ in samples)
        assert sorted({label for _, label in samples}) == [0, 1, 2]
