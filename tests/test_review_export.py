"""Export gates decided end to end: the int8 accuracy gate, the fp32 parity rule, and unreadable folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.onnxfile import load_onnx, read_contract

runner = CliRunner()


def int8_args(trained_run: Path, target: Path, *more: str) -> list[str]:
    """`edgecnn export RUN --int8` reusing the session's fp32 file, writing the int8 file to ``target``."""
    return ["export", str(trained_run), "--int8", "--int8-output", str(target), "--calib-size", "12", *more]


def one_line_error(result, *needles: str) -> None:
    """Exit code 2, no traceback, and one `error:` line on stderr, the last, holding every needle."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory, synth_dir) -> Path:
    """Images with no class folders: nothing in it says which class an image is."""
    root = tmp_path_factory.mktemp("plain")
    for i, path in enumerate(sorted((synth_dir / "val").rglob("*.jpg"))):
        shutil.copy(path, root / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def fp32_labelled(tmp_path_factory, exported, synth_dir) -> Path:
    """The validation images filed under the fp32 model's own answers: fp32 accuracy there is exactly 100%."""
    from edgecnn.api import load_for_evaluation
    from edgecnn.apps.evaluate import run_on_folder

    result = run_on_folder(load_for_evaluation(exported[0], provider="cpu"), synth_dir / "val")
    labels = read_contract(load_onnx(exported[0])).labels
    root = tmp_path_factory.mktemp("fp32-labelled")
    for path, answer in zip(result.paths, result.probabilities.argmax(1), strict=True):
        (root / labels[answer]).mkdir(exist_ok=True)
        shutil.copy(path, root / labels[answer] / path.name)
    return root


# 1. The int8 accuracy gate is never skipped silently.


def test_int8_refused_when_eval_folder_has_no_labels(exported, trained_run, plain_folder, tmp_path):
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(app, int8_args(trained_run, target, "--eval", str(plain_folder)))
    one_line_error(result, "no labelled images", "--no-accuracy-gate", "--eval")
    assert not target.exists()


@pytest.mark.parametrize("content", ["empty class folders", "only unreadable files"])
def test_int8_refused_when_there_are_no_labelled_images(exported, trained_run, tmp_path, content):
    folder = tmp_path / "eval"
    for label in ("circle", "square"):
        (folder / label).mkdir(parents=True)
        if content == "only unreadable files":
            (folder / label / "broken.jpg").write_bytes(b"not a jpeg")
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(app, int8_args(trained_run, target, "--eval", str(folder)))
    one_line_error(result, "no labelled images", "--no-accuracy-gate")
    assert not target.exists()


def test_no_accuracy_gate_flag_writes_int8_and_records_why(exported, trained_run, plain_folder, tmp_path):
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(
        app, int8_args(trained_run, target, "--eval", str(plain_folder), "--no-accuracy-gate", "--json")
    )
    assert result.exit_code == 0, result.output
    quantization = read_contract(load_onnx(target)).quantization
    assert quantization["accuracy_gate"] == "skipped (no labelled images)"
    assert quantization["int8_accuracy"] is None
    assert "accuracy gate skipped (no labelled images)" in result.stderr
    assert json.loads(result.stdout)["int8"]["accuracy_gate"] == "skipped (no labelled images)"


def test_no_accuracy_gate_flag_with_labels_measures_but_does_not_judge(exported, trained_run, tmp_path):
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(
        app, int8_args(trained_run, target, "--no-accuracy-gate", "--max-accuracy-drop", "0")
    )
    assert result.exit_code == 0, result.output
    quantization = read_contract(load_onnx(target)).quantization
    assert quantization["accuracy_gate"] == "off (budget not enforced)"
    assert quantization["int8_accuracy"] is not None and quantization["accuracy_drop_pp"] is not None


def test_no_accuracy_gate_with_only_unreadable_eval_images_still_writes(exported, trained_run, tmp_path):
    folder = tmp_path / "eval" / "circle"
    folder.mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(
        app, int8_args(trained_run, target, "--eval", str(folder.parent), "--no-accuracy-gate")
    )
    assert result.exit_code == 1, result.output  # written, with a skipped evaluation file
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert read_contract(load_onnx(target)).quantization["accuracy_gate"] == "skipped (no labelled images)"


# 2. The fp32 parity gate accepts a top-1 flip only on a genuine near-tie.


def test_parity_accepts_a_near_tie_flip():
    from edgecnn.conversion.convert import judge_parity

    keras = np.array([[0.5 + 5e-8, 0.5 - 5e-8, 0.0], [0.1, 0.2, 0.7]])
    onnx_ = np.array([[0.5 - 5e-8, 0.5 + 5e-8, 0.0], [0.1, 0.2, 0.7]])
    report = judge_parity(keras, onnx_, "constructed")
    assert report.passed, report.describe()
    assert report.images == 2 and report.flips == 1 and report.top1_agreement == 0.5
    assert "near-tie" in report.describe()


def test_parity_refuses_a_flip_that_is_not_a_near_tie():
    from edgecnn.conversion.convert import PARITY_ATOL, judge_parity

    keras = np.array([[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
    onnx_ = np.array([[0.4, 0.6, 0.0], [0.1, 0.2, 0.7]])
    report = judge_parity(keras, onnx_, "constructed")
    assert not report.passed and report.flips == 1
    # The largest-difference threshold still holds on its own, with no flip at all.
    drift = keras + np.array([[2 * PARITY_ATOL, 0, 0], [0, 0, 0]])
    assert not judge_parity(keras, drift, "constructed").passed
    assert judge_parity(keras, keras + PARITY_ATOL / 2, "constructed").passed


def test_check_parity_uses_the_near_tie_rule(exported, synth_dir, monkeypatch):
    import edgecnn.runtime.predictor as predictor_module
    from edgecnn.conversion.convert import check_parity
    from edgecnn.core.dataset import list_class_folder

    near_tie = np.array([0.5 + 5e-8, 0.5 - 5e-8, 0.0])

    class FakePredictor:
        def __init__(self, *args, **kwargs):
            pass

        def predict_batch(self, batch):
            return np.tile(near_tie[[1, 0, 2]], (len(batch), 1))

    monkeypatch.setattr(predictor_module, "Predictor", FakePredictor)
    samples = list_class_folder(synth_dir / "val").samples[:4]
    contract = read_contract(load_onnx(exported[0]))

    def keras_model(batch, training=False):
        return np.tile(near_tie, (len(batch), 1))

    report = check_parity(keras_model, exported[0], contract, samples, "constructed")
    assert report.passed and report.flips == 4, report.describe()


# 3. The int8 accuracy gate decides, through the CLI.


def roll_classes(model_path: Path) -> None:
    """Rewire a model's output so that every image gets the next class's probabilities (all answers wrong)."""
    model = onnx.load(str(model_path))
    out = model.graph.output[0].name
    classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    for node in model.graph.node:
        node.output[:] = [f"{out}_unrolled" if name == out else name for name in node.output]
    order = onnx.helper.make_tensor(
        "rolled_order", onnx.TensorProto.INT64, [classes], np.roll(range(classes), 1)
    )
    model.graph.initializer.append(order)
    model.graph.node.append(
        onnx.helper.make_node("Gather", [f"{out}_unrolled", "rolled_order"], [out], axis=1)
    )
    onnx.save(model, str(model_path))


def test_cli_int8_gate_refuses_when_over_budget(exported, trained_run, fp32_labelled, tmp_path, monkeypatch):
    import edgecnn.conversion.quantize as quantize_module

    real = quantize_module.quantize_once

    def ruined(pre_path, out_path, *args, **kwargs):
        real(pre_path, out_path, *args, **kwargs)
        roll_classes(out_path)

    monkeypatch.setattr(quantize_module, "quantize_once", ruined)
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(
        app, int8_args(trained_run, target, "--eval", str(fp32_labelled), "--max-accuracy-drop", "1")
    )
    one_line_error(result, "int8 accuracy drops more than 1.0 pp", "(100.00%)", "nothing was written")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_int8_within_generous_budget_records_measured_drop(
    exported, trained_run, fp32_labelled, tmp_path
):
    target = tmp_path / "m.int8.onnx"
    result = runner.invoke(
        app,
        int8_args(trained_run, target, "--eval", str(fp32_labelled), "--max-accuracy-drop", "100", "--json"),
    )
    assert result.exit_code == 0, result.output
    q = read_contract(load_onnx(target)).quantization
    assert q["accuracy_gate"] == "passed" and q["max_accuracy_drop_pp"] == 100
    assert q["fp32_accuracy"] == 1.0
    assert q["accuracy_drop_pp"] == pytest.approx((q["fp32_accuracy"] - q["int8_accuracy"]) * 100, abs=1e-3)
    assert q["accuracy_drop_pp"] == json.loads(result.stdout)["int8"]["accuracy_drop_pp"]
    assert f"budget {100.0} pp" in result.stderr


@pytest.mark.parametrize("budget", ["-1", "nan"])
def test_cli_impossible_budget_is_refused_before_anything_is_written(trained_run, tmp_path, budget):
    target = tmp_path / "m.onnx"
    result = runner.invoke(
        app, ["export", str(trained_run), "-o", str(target), "--int8", "--max-accuracy-drop", budget]
    )
    one_line_error(result, "--max-accuracy-drop must be 0 or more", budget)
    assert list(tmp_path.iterdir()) == []


# 4. A calibration folder that cannot be listed is a one-line error.


@pytest.fixture()
def unlistable(tmp_path, monkeypatch) -> Path:
    """A folder whose listing fails as with `chmod 000` for a user other than root."""
    folder = tmp_path / "locked"
    (folder / "circle").mkdir(parents=True)
    real_scandir, real_listdir = os.scandir, os.listdir

    def refuse(real):
        def listing(path=".", *args):
            if isinstance(path, str | os.PathLike) and Path(path) == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args)

        return listing

    monkeypatch.setattr(os, "scandir", refuse(real_scandir))
    monkeypatch.setattr(os, "listdir", refuse(real_listdir))
    return folder


@pytest.mark.parametrize("kind", ["file", "dangling link", "name too long", "unlistable"])
@pytest.mark.parametrize("int8", [True, False], ids=["int8", "fp32"])
def test_unreadable_calib_folder_is_a_one_line_error(exported, trained_run, tmp_path, request, kind, int8):
    if kind == "file":
        calib, reason = tmp_path / "calib.txt", "not a folder"
        calib.write_text("images go in a folder")
    elif kind == "dangling link":
        calib, reason = tmp_path / "calib", "not found"
        calib.symlink_to(tmp_path / "gone")
    elif kind == "name too long":
        calib, reason = tmp_path / ("x" * 300), "cannot read"
    else:
        calib, reason = request.getfixturevalue("unlistable"), "cannot read"
    out = tmp_path / "out"
    out.mkdir()
    args = (
        int8_args(trained_run, out / "m.int8.onnx")
        if int8
        else ["export", str(trained_run), "-o", str(out / "m.onnx")]
    )
    result = runner.invoke(app, [*args, "--calib", str(calib)])
    one_line_error(result, "--calib", reason)
    assert list(out.iterdir()) == []
