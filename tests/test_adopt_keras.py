"""``edgecnn export`` of Keras models edgecnn did not train: a notebook's .keras with its own rescaling, and a
Teachable-Machine-style .h5 with its labels.txt; both through the parity gate, then int8 and every command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from foreignmodels import colour_folder, softmax
from typer.testing import CliRunner

import edgecnn
from edgecnn.cli import app
from edgecnn.core.imaging import load_image
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract

pytest.importorskip("tensorflow")
runner = CliRunner()
SIZE = 24


def colour_keras_model(scale_inside: bool, softmax_output: bool):
    """Dominant colour -> class, as a notebook would write it: 1x1 conv, average pool, dense."""
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    layers = [keras.Input((SIZE, SIZE, 3))]
    if scale_inside:
        layers.append(keras.layers.Rescaling(1 / 255))
    layers += [
        keras.layers.Conv2D(3, 1),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax" if softmax_output else None),
    ]
    model = keras.Sequential(layers)
    conv, dense = model.layers[-3], model.layers[-1]
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3), np.zeros(3, np.float32)])
    dense.set_weights([(6 * np.eye(3)).astype(np.float32), np.zeros(3, np.float32)])
    return model


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return colour_folder(tmp_path_factory.mktemp("keras_photos"))


def test_a_notebook_keras_model_with_its_own_rescaling(tmp_path, photos):
    model = colour_keras_model(scale_inside=True, softmax_output=False)
    source = tmp_path / "notebook.keras"
    model.save(source)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    result = runner.invoke(
        app,
        [
            "export",
            str(source),
            "--labels",
            str(tmp_path / "labels.txt"),
            "--preset",
            "raw",
            "--eval",
            str(photos),
        ]
        + ["--int8", "--calib", str(photos), "--json"],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["fp32"]["parity_max_abs_diff"] <= 1e-5 and figures["fp32"]["parity_images"] == 12
    adopted = tmp_path / "notebook.onnx"
    contract = read_contract(load_onnx(adopted))
    assert contract.arch == "adopted" and contract.source["adopted"]["layout"] == "NHWC"
    assert (
        contract.source["adopted"]["output_kind"] == "logits" and "softmax appended" in contract.normalization
    )
    # The adopted file on raw pixels against Keras on the same pixels (the model rescales them itself).
    files = sorted(photos.rglob("*.*"))
    pixels = np.stack([load_image(p, contract.input) for p in files]).astype(np.float32)
    expected = softmax(np.asarray(model(pixels), np.float64))
    got = edgecnn.load(adopted).predictor.predict_batch(pixels)
    assert np.abs(got - expected).max() <= 1e-5
    # int8 from the same command: calibrated on the photos, gated on them, the contract carried forward.
    assert figures["int8"]["int8_accuracy"] == figures["int8"]["fp32_accuracy"] == 1.0
    int8 = load_onnx(tmp_path / "notebook.int8.onnx")
    assert op_counts(int8)["QuantizeLinear"] > 0 and read_contract(int8).arch == "adopted"
    evaluated = runner.invoke(app, ["evaluate", str(tmp_path / "notebook.int8.onnx"), str(photos), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] == 1.0


def test_a_teachable_machine_h5_with_its_labels_txt(tmp_path, photos):
    model = colour_keras_model(scale_inside=False, softmax_output=True)
    source = tmp_path / "keras_model.h5"
    model.save(source)
    (tmp_path / "labels.txt").write_text("0 red\n1 green\n2 blue\n")  # as Teachable Machine writes it
    result = runner.invoke(
        app,
        ["export", str(source), "--labels", str(tmp_path / "labels.txt"), "--preset", "teachable-machine"]
        + ["--eval", str(photos), "-o", str(tmp_path / "tm.onnx"), "--int8", "--calib", str(photos)],
    )
    assert result.exit_code == 0, result.output
    contract = read_contract(load_onnx(tmp_path / "tm.onnx"))
    assert contract.labels == ("red", "green", "blue")
    assert (contract.input.fit, contract.input.crop_fraction) == ("crop", 1.0)  # the centred square
    assert contract.source["adopted"]["output_kind"] == "probabilities"  # its Dense ends in a softmax
    assert contract.source["adopted"]["scale"] == "-1-1"
    files = sorted(photos.rglob("*.*"))
    pixels = np.stack([load_image(p, contract.input) for p in files]).astype(np.float32)
    expected = np.asarray(model(pixels / np.float32(127.5) - np.float32(1.0)), np.float64)
    got = edgecnn.load(tmp_path / "tm.onnx").predictor.predict_batch(pixels)
    assert np.abs(got - expected).max() <= 1e-5
    classify = runner.invoke(
        app, ["classify", str(photos / "blue"), "--model", str(tmp_path / "tm.onnx"), "--json"]
    )
    assert classify.exit_code == 0 and json.loads(classify.stdout)["per_label"] == {"blue": 4}
    evaluated = runner.invoke(app, ["evaluate", str(tmp_path / "tm.int8.onnx"), str(photos), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] == 1.0


def test_a_foreign_keras_model_without_labels_says_what_to_pass(tmp_path):
    source = tmp_path / "keras_model.h5"
    colour_keras_model(scale_inside=False, softmax_output=True).save(source)
    result = runner.invoke(app, ["export", str(source)])
    assert result.exit_code == 2 and "pass --labels FILE" in result.output, result.output
    onnx_source = runner.invoke(
        app, ["export", str(tmp_path / "x.onnx"), "--labels", "l.txt", "--scale", "0-1"]
    )
    assert onnx_source.exit_code == 2 and "edgecnn adopt" in onnx_source.output


def test_without_labelled_images_a_foreign_int8_export_writes_nothing(tmp_path, photos):
    source = tmp_path / "keras_model.h5"
    colour_keras_model(scale_inside=False, softmax_output=True).save(source)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    args = ["export", str(source), "--labels", str(tmp_path / "labels.txt"), "--preset", "keras-tf"]
    result = runner.invoke(app, [*args, "--int8", "--calib", str(photos / "red")])
    assert result.exit_code == 2
    assert "no --eval folder (the model has no training run)" in result.output, result.output
    assert not list(tmp_path.glob("*.onnx"))  # checked before the fp32 file is written


def test_a_keras_normalization_layer_is_folded_into_constants(tmp_path, photos):
    """keras.applications EfficientNet keeps its mean and variance in a Normalization layer, which tf2onnx
    turns into extra graph inputs; they are constants."""
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3000.0, 2900.0, 2800.0]),
            keras.layers.Conv2D(3, 1),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(tmp_path / "normalized.keras")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    result = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "normalized.keras"),
            "--labels",
            str(tmp_path / "labels.txt"),
            "--preset",
            "raw",
        ]
        + ["--eval", str(photos), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fp32"]["parity_max_abs_diff"] <= 1e-5
    graph = load_onnx(tmp_path / "normalized.onnx").graph
    assert [i.name for i in graph.input] == ["image"]
