"""export --tta flip: the ONNX graph itself averages each image with its mirror; the contract records it and
the parity and int8 gates apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import edgecnn
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract

runner = CliRunner()


@pytest.fixture(scope="module")
def tta_files(trained_run, exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("tta") / "model.tta.onnx"
    result = runner.invoke(
        app,
        ["export", str(trained_run), "--tta", "flip", "-o", str(out), "--int8", "--max-accuracy-drop", "100"]
        + ["--fp16", "--json"],
    )
    assert result.exit_code == 0, result.output
    return exported[0], out, json.loads(result.stdout)


def test_the_graph_averages_each_image_and_its_mirror(tta_files):
    plain_path, tta_path, figures = tta_files
    assert figures["fp32"]["parity_max_abs_diff"] <= 1e-4  # against Keras averaging the same two views
    contract = read_contract(load_onnx(tta_path))
    assert contract.tta == "flip"
    plain, tta = edgecnn.load(plain_path).predictor, edgecnn.load(tta_path).predictor
    spec = contract.input
    images = np.random.default_rng(0).integers(0, 256, (5, spec.height, spec.width, spec.channels))
    images = images.astype(np.float32)
    expected = (
        plain.predict_batch(images) + plain.predict_batch(np.ascontiguousarray(images[:, :, ::-1]))
    ) / 2
    got = tta.predict_batch(images)
    assert got.shape == expected.shape == (5, contract.num_classes)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(got - plain.predict_batch(images)).max() > 1e-4  # the mirror really changes the answer
    info = runner.invoke(app, ["info", str(tta_path)])
    assert "tta        flip: the graph averages each image and its mirror" in info.stdout
    # One image in, one probability vector out, at any batch size.
    assert tta.predict_batch(images[:1]).shape == (1, contract.num_classes)


def test_int8_and_fp16_of_a_tta_model_keep_the_tta(tta_files):
    _, tta_path, figures = tta_files
    int8 = load_onnx(tta_path.with_name("model.tta.int8.onnx"))
    assert read_contract(int8).tta == "flip" and op_counts(int8)["QuantizeLinear"] > 0
    assert figures["int8"]["top1_agreement"] is not None
    fp16 = load_onnx(tta_path.with_name("model.tta.fp16.onnx"))
    assert read_contract(fp16).tta == "flip" and read_contract(fp16).precision == "fp16"
    assert op_counts(fp16)["Slice"] == 1 and op_counts(fp16)["ReduceMean"] >= 1


def test_tta_is_not_reused_from_a_plain_export(trained_run, exported):
    from edgecnn.conversion.convert import current_fp32

    model_keras = trained_run / "model.keras"
    assert current_fp32(exported[0], model_keras) is not None
    assert current_fp32(exported[0], model_keras, "flip") is None  # --tta flip --int8 converts again


def test_unknown_tta_and_tta_on_other_sources_are_refused(tmp_path):
    from edgecnn.conversion.tta import check_tta

    with pytest.raises(ConfigError, match="unknown --tta 'rotate'; choose from none, flip"):
        check_tta("rotate")
    result = runner.invoke(app, ["export", str(tmp_path / "m.onnx"), "--tta", "flip", "--int8"])
    assert result.exit_code == 2 and "--tta applies to models edgecnn trained" in result.output
