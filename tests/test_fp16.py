"""fp16 export: conversion (float32 IO, blocked ops), the parity and accuracy gates, the contract, the CLI;
and which file of an export (fp32, fp16, int8) each provider should run.

Gate logic is tested on the mean-colour model (no TensorFlow, answers known in advance); the end-to-end tests
convert the session's tiny trained export, on the CPU provider.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxmodels import mean_colour_model
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.errors import ConfigError, ExportError, OutputError
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract
from edgecnn.runtime.precision import precision_siblings, recommend_files
from edgecnn.runtime.predictor import Predictor

runner = CliRunner()
FP16_MAX_ABS_DIFF = 1e-2  # the documented limit (checked against the module below)


@pytest.fixture()
def fp16():
    """edgecnn.conversion.fp16, imported when a test runs: imported at collection, the subpackage edgecnn.conversion
    would replace the public edgecnn.export() function that docs/API.md's examples call."""
    import edgecnn.conversion.fp16 as module

    assert module.FP16_MAX_ABS_DIFF == FP16_MAX_ABS_DIFF
    return module


def judge_parity(*args):
    from edgecnn.conversion.convert import judge_parity

    return judge_parity(*args)


COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture()
def colour_model(tmp_path: Path) -> tuple[Path, list[tuple[Path, int]]]:
    """The mean-colour model and 4 labelled solid-colour images per class (fp32 accuracy 100%)."""
    model = mean_colour_model(tmp_path / "m.onnx")
    samples = []
    for index, (name, colour) in enumerate(COLOURS.items()):
        for j in range(4):
            path = tmp_path / "data" / name / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), tuple(c + 5 * j for c in colour)).save(path)
            samples.append((path, index))
    return model, samples


def swapping(convert):
    """A 'conversion' that answers the wrong colour: ``convert``, then red and green weights swapped."""

    def swap_classes(model):
        converted = convert(model)
        for init in converted.graph.initializer:
            if init.name == "w":
                w = numpy_helper.to_array(init).copy()
                w[:, [0, 1]] = w[:, [1, 0]]
                init.CopyFrom(numpy_helper.from_array(w, "w"))
        return converted

    return swap_classes


def test_fp16_model_keeps_float32_io_and_blocked_ops(colour_model, tmp_path, fp16):
    model, samples = colour_model
    result = fp16.export_fp16(model, tmp_path / "m.fp16.onnx", samples, "colours")
    written = load_onnx(result.output)
    for value in (*written.graph.input, *written.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name
    dtypes = {i.name: numpy_helper.to_array(i).dtype for i in written.graph.initializer}
    assert dtypes["w"] == np.float16
    produced = {o: n for n in written.graph.node for o in n.output}
    softmax = next(n for n in written.graph.node if n.op_type == "Softmax")
    feeding = produced[softmax.input[0]]
    assert feeding.op_type == "Cast" and feeding.attribute[0].i == onnx.TensorProto.FLOAT
    # the softmax result goes to the float32 output without an fp16 round trip
    assert produced["probabilities"].op_type == "Identity"
    assert produced[produced["probabilities"].input[0]].op_type == "Softmax"
    contract = read_contract(written)
    assert contract.precision == contract.numeric_precision == "fp16"
    q = contract.quantization
    assert q["accuracy_gate"] == "passed" and q["fp32_accuracy"] == q["fp16_accuracy"] == 1.0
    assert q["max_abs_diff"] <= q["max_abs_diff_limit"] == FP16_MAX_ABS_DIFF
    assert q["gate_provider"] == "cpu" and q["io_types"] == "float32" and "Softmax" in q["blocked_ops"]
    assert q["fp32_sha256"] == read_contract(written).quantization["fp32_sha256"] != ""
    assert "format" not in q  # the int8 fields keep their meaning
    with Predictor(result.output, provider="cpu") as fp16, Predictor(model, provider="cpu") as fp32:
        x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.float32)
        assert np.abs(fp16.predict_batch(x) - fp32.predict_batch(x)).max() <= FP16_MAX_ABS_DIFF


def test_a_broken_conversion_fails_the_parity_gate(colour_model, tmp_path, monkeypatch, fp16):
    model, samples = colour_model
    monkeypatch.setattr(fp16, "convert_float16", swapping(fp16.convert_float16))
    target = tmp_path / "m.fp16.onnx"
    with pytest.raises(ExportError, match="fp16 parity gate failed: .*limit 1e-02.*nothing was written"):
        fp16.export_fp16(model, target, samples, "colours")
    assert not target.exists() and not list(tmp_path.glob(".*m.fp16*"))


def test_the_accuracy_budget_is_enforced_after_parity(colour_model, tmp_path, monkeypatch, fp16):
    model, samples = colour_model
    monkeypatch.setattr(fp16, "convert_float16", swapping(fp16.convert_float16))
    monkeypatch.setattr(fp16, "fp16_parity_passed", lambda report: True)  # parity alone is not enough
    target = tmp_path / "m.fp16.onnx"
    with pytest.raises(ExportError, match=r"fp16 accuracy drops 66\.67 pp below fp32 \(100\.00%\)"):
        fp16.export_fp16(model, target, samples, "colours", max_accuracy_drop=50)
    assert not target.exists()
    written = fp16.export_fp16(model, target, samples, "colours", max_accuracy_drop=50, accuracy_gate=False)
    q = read_contract(load_onnx(written.output)).quantization
    assert q["accuracy_gate"] == "off (budget not enforced)" and q["accuracy_drop_pp"] == pytest.approx(
        66.667
    )
    assert q["max_accuracy_drop_pp"] is None


def test_unlabelled_images_need_the_gate_off(colour_model, tmp_path, fp16):
    model, samples = colour_model
    unlabelled = [(path, -1) for path, _ in samples]
    with pytest.raises(ConfigError, match="no labelled images .* --no-accuracy-gate"):
        fp16.export_fp16(model, tmp_path / "a.onnx", unlabelled, "plain folder")
    result = fp16.export_fp16(model, tmp_path / "a.onnx", unlabelled, "plain folder", accuracy_gate=False)
    q = read_contract(load_onnx(result.output)).quantization
    assert q["accuracy_gate"] == "skipped (no labelled images)" and q["fp16_accuracy"] is None


def test_refuses_an_existing_output_and_a_model_that_is_not_fp32(colour_model, tmp_path, fp16):
    model, samples = colour_model
    first = fp16.export_fp16(model, tmp_path / "m.fp16.onnx", samples, "colours")
    with pytest.raises(OutputError, match="--force"):
        fp16.export_fp16(model, first.output, samples, "colours")
    with pytest.raises(ConfigError, match="is fp16; convert the fp32 model"):
        fp16.export_fp16(first.output, tmp_path / "again.onnx", samples, "colours")


@pytest.mark.parametrize(
    ("fp32_rows", "fp16_rows", "passed"),
    [
        ([[0.7, 0.3]], [[0.705, 0.295]], True),
        ([[0.7, 0.3]], [[0.68, 0.32]], False),  # 2e-2: over the limit
        ([[0.502, 0.498]], [[0.498, 0.502]], True),  # a flip on a near-tie
        ([[0.9, 0.1], [0.52, 0.48]], [[0.9, 0.1], [0.515, 0.485]], True),
        ([[0.7, 0.3]], [[np.nan, np.nan]], False),
    ],
)
def test_parity_verdict(fp32_rows, fp16_rows, passed, fp16):
    report = judge_parity(np.array(fp32_rows), np.array(fp16_rows), "t")
    assert fp16.fp16_parity_passed(report) is passed


def test_a_flip_that_is_not_a_near_tie_fails(fp16):
    report = judge_parity(np.array([[0.504, 0.496]]), np.array([[0.496, 0.504]]), "t")
    report.flip_margin = 0.3  # as if fp32 had been sure of its answer
    assert not fp16.fp16_parity_passed(report)


def test_only_float32_round_trips_are_dropped(fp16):
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Cast", ["r"], ["h"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["h"], ["z"], to=TensorProto.FLOAT16),  # not a round trip back to float32
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT16, [2]),
        ],
        value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph)
    assert fp16.drop_round_trips(model) == 0  # h also feeds a Cast to fp16: the pair must stay
    del model.graph.node[3]
    del model.graph.output[1]
    assert fp16.drop_round_trips(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Relu", "Identity"]
    assert list(model.graph.node[1].input) == ["r"]


def test_blocked_ops_name_real_onnx_operators(fp16):
    schemas = {s.name for s in onnx.defs.get_all_schemas()}
    assert set(fp16.BLOCKED_OPS) <= schemas


def test_fp16_export_of_the_trained_model(exported, trained_run, synth_dir, tmp_path, log_lines):
    from edgecnn.conversion.convert import export_all

    fp32, _ = exported
    target = tmp_path / "tiny.fp16.onnx"
    result = export_all(
        trained_run, fp16=True, fp16_output=target, eval_dir=synth_dir / "val", max_accuracy_drop=100
    )
    assert result.notes == ["fp32 file reused (same source model)"] and result.output == fp32
    half = result.fp16
    assert half.output == target and target.is_file()
    assert half.parity.images == 24 and half.parity.max_abs_diff <= FP16_MAX_ABS_DIFF
    assert 0.4 < half.size_ratio < 0.6  # weights in 2 bytes instead of 4
    model = load_onnx(target)
    ops = op_counts(model)
    assert ops["Conv"] > 0 and ops["Cast"] >= 2 and "QuantizeLinear" not in ops
    weights = [
        numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type != onnx.TensorProto.INT64
    ]
    assert sum(w.size for w in weights if w.dtype == np.float16) > 0.95 * sum(w.size for w in weights)
    contract, base = read_contract(model), read_contract(load_onnx(fp32))
    assert contract.labels == base.labels and contract.input == base.input
    assert contract.numeric_precision == "fp16" and base.numeric_precision == "fp32"
    assert any("fp16 parity on 24 images" in line and "(cpu)" in line for line in log_lines)
    from edgecnn.api import load_for_evaluation as load_model
    from edgecnn.apps.evaluate import run_on_folder

    a = run_on_folder(load_model(fp32, provider="cpu"), synth_dir)
    b = run_on_folder(load_model(target, provider="cpu"), synth_dir)
    assert np.abs(a.probabilities - b.probabilities).max() <= FP16_MAX_ABS_DIFF


def test_export_fp16_on_the_command_line(exported, trained_run, tmp_path):
    target = tmp_path / "cli.fp16.onnx"
    args = ["export", str(trained_run), "--fp16", "--fp16-output", str(target), "--json"]
    result = runner.invoke(app, [*args, "--max-accuracy-drop", "100"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["fp16"]["output"] == str(target) and summary["fp16"]["gate_provider"] == "cpu"
    assert (
        summary["fp16"]["parity_limit"] == FP16_MAX_ABS_DIFF and summary["fp16"]["accuracy_gate"] == "passed"
    )
    assert f"wrote {target}" in result.stderr and "fp16 parity on" in result.stderr
    assert "fp16 is for GPUs" in result.stderr
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr
    info = runner.invoke(app, ["info", str(target)])
    assert info.exit_code == 0, info.output
    assert "fp16 (half precision; float32 input and output)" in info.stdout
    assert "max |p_fp32 - p_fp16|" in info.stdout and "cpu: this file" not in info.stdout


def test_benchmark_reads_fp16_precision(tmp_path, fp16):
    from edgecnn.core.onnxfile import save_onnx, set_contract
    from edgecnn.tools.bench import run_benchmark

    fp32 = mean_colour_model(tmp_path / "c.onnx")
    model = load_onnx(fp32)
    half = fp16.convert_float16(model)
    set_contract(
        half, read_contract(model).with_updates(precision="fp16", quantization={"conversion": "float16"})
    )
    save_onnx(half, tmp_path / "c.fp16.onnx")
    report = run_benchmark(
        [fp32, tmp_path / "c.fp16.onnx"], ["cpu"], [1], runs=1, warmup=0, peak_seconds=0.01
    )
    assert [m["precision"] for m in report["models"]] == ["fp32", "fp16"]
    peak = {p["precision"]: p for p in report["peaks"]}["fp16"]
    assert peak["value"] is None and "fp32 and int8" in peak["error"]
    assert {r["ops_unit"] for r in report["rows"]} == {"GFLOP/s"}


def test_recommended_files_per_provider(tmp_path):
    for name in ("m.onnx", "m.int8.onnx"):
        (tmp_path / name).write_bytes(b"")
    int8 = tmp_path / "m.int8.onnx"
    assert precision_siblings(int8) == {"fp32": tmp_path / "m.onnx", "int8": int8}
    rows = {r["provider"]: r for r in recommend_files(int8, "int8")}
    assert rows["cpu"]["this_file"] and not rows["tensorrt"]["this_file"]
    assert "zero point 0" in rows["tensorrt"]["why"]  # edgecnn's int8 files are calibrated for the CPU
    assert rows["cuda"]["file"] == str(tmp_path / "m.onnx") and "no int8 kernel" in rows["cuda"]["why"]
    (tmp_path / "m.fp16.onnx").write_bytes(b"")
    rows = {r["provider"]: r for r in recommend_files(int8, "int8")}
    assert rows["cuda"]["file"] == str(tmp_path / "m.fp16.onnx")
    lone = tmp_path / "lone.int8.onnx"
    lone.write_bytes(b"")
    cuda = {r["provider"]: r for r in recommend_files(lone, "int8")}["cuda"]
    assert cuda["file"] is None and "edgecnn export RUN --fp16" in cuda["why"]
