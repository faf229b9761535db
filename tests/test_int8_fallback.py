"""int8 that keeps its accuracy budget by itself: the costliest layers stay in fp32, the fewest that suffice.

The models here are built so that int8 quantisation of one known layer is ruinous and fp32 is not: a weight
of 1e6 multiplies a feature that is always exactly 0. In fp32 that product is 0; in int8 the layer's weight
scale becomes 1e6 / 127, every real weight rounds to 0, and the layer's output no longer depends on the
image. Which layer the fallback must keep in fp32, and what accuracy it must reach, is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.conversion.quantize import quantize_model
from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ExportError
from edgecnn.core.onnxfile import load_onnx, read_contract, set_contract

OUTLIER = 1e6
COLOURS = ("red", "green", "blue")
SIZE = 16


def _save(path: Path, nodes: list, weights: dict[str, np.ndarray]) -> Path:
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0, name="mean"), *nodes],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    set_contract(model, ModelContract(labels=COLOURS, input=InputSpec.square(SIZE), arch="test"))
    onnx.save(model, str(path))
    return path


def one_ruinous_layer(path: Path) -> Path:
    """Colour means -> ``features`` (MatMul) -> ``outlier`` (Gemm) -> ``head`` (MatMul) -> softmax.

    ``features`` passes the three channel means (/8) and a fourth feature that is always 0; ``outlier``'s
    weight on that feature is 1e6, which ruins its int8 weights (per channel too: every column holds it).
    A Gemm, because ONNX Runtime re-quantises the float weights of a Gemm fed by a DequantizeLinear.
    """
    features = np.zeros((3, 4))
    features[:, :3] = np.eye(3) / 8
    scores = np.vstack([np.eye(3), np.full((1, 3), OUTLIER)])
    nodes = [
        helper.make_node("MatMul", ["mean", "w_features"], ["features"], name="features"),
        helper.make_node("Gemm", ["features", "w_outlier", "b_outlier"], ["scores"], name="outlier"),
        helper.make_node("MatMul", ["scores", "w_head"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    weights = {"w_features": features, "w_outlier": scores, "b_outlier": np.zeros(3), "w_head": np.eye(3) / 2}
    return _save(path, nodes, weights)


def two_ruinous_layers(path: Path) -> Path:
    """Colour means and three zeros -> ``ruin1`` (MatMul) -> ``ruin2`` (MatMul) -> softmax: both ruinous.

    At least one quantisable layer must stay int8, so the fallback can keep only one of the two in fp32,
    and the other still ruins the output.
    """
    first = np.zeros((6, 6))
    first[:3, :3] = np.eye(3) / 8
    first[3:, :] = OUTLIER  # reads the zeros: its outputs 3-5 stay zeros for ruin2
    second = np.vstack([np.eye(3), np.full((3, 3), OUTLIER)])
    nodes = [
        helper.make_node("Mul", ["mean", "nothing"], ["zeros"], name="zeros"),
        helper.make_node("Concat", ["mean", "zeros"], ["padded"], axis=1, name="padded"),
        helper.make_node("MatMul", ["padded", "w1"], ["hidden"], name="ruin1"),
        helper.make_node("MatMul", ["hidden", "w2"], ["logits"], name="ruin2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    return _save(path, nodes, {"nothing": np.zeros((1, 3)), "w1": first, "w2": second})


@pytest.fixture(scope="module")
def colour_samples(tmp_path_factory) -> list[tuple[Path, int]]:
    """Four images per colour class, each clearly dominated by its colour: fp32 gets all twelve right."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    samples = []
    for label, name in enumerate(COLOURS):
        (root / name).mkdir()
        for k in range(4):
            colour = rng.integers(0, 60, 3)
            colour[label] = rng.integers(150, 256)
            path = root / name / f"{k}.png"
            Image.fromarray(np.full((20, 20, 3), colour, np.uint8)).save(path)
            samples.append((path, label))
    return samples


@pytest.fixture(scope="module")
def rescued(tmp_path_factory, colour_samples):
    """The one-ruinous-layer model quantised with a budget of 0 pp: (result, int8 path)."""
    root = tmp_path_factory.mktemp("rescued")
    model = one_ruinous_layer(root / "colours.onnx")
    output = root / "colours.int8.onnx"
    result = quantize_model(
        model, output, colour_samples, "colours", eval_samples=colour_samples, max_accuracy_drop=0
    )
    return result, output


def producers(model) -> dict[str, object]:
    return {out: node for node in model.graph.node for out in node.output}


def node_named(model, name: str):
    return next(n for n in model.graph.node if n.name == name)


def test_fallback_keeps_exactly_the_ruinous_layer_in_fp32(rescued):
    result, output = rescued
    assert result.chosen.within_budget is False
    assert result.chosen.accuracy == pytest.approx(1 / 3)  # all-int8: one answer for every image
    fallback = result.fallback
    assert fallback is not None and fallback.met
    assert fallback.layers[0].node == "outlier" and fallback.layers[0].op_type == "Gemm"
    assert fallback.layers[0].error > 0.5 and fallback.layers[0].top1_changed > 0.5
    assert all(c.error < 0.01 for c in fallback.layers[1:]), fallback.layers
    assert fallback.fp32_nodes == ["outlier"]
    assert [s.fp32_nodes for s in fallback.steps] == [["outlier"]]  # the first greedy step met it
    assert result.fp32_accuracy == 1.0 and result.int8_accuracy == 1.0 and result.agreement == 1.0
    assert output.is_file()


def test_the_fp32_layer_runs_in_fp32_and_the_others_in_int8(rescued):
    _, output = rescued
    model = load_onnx(output)
    made_by = producers(model)
    weights = {i.name: i for i in model.graph.initializer}
    kept = node_named(model, "outlier")
    assert kept.input[1] in weights and weights[kept.input[1]].data_type == TensorProto.FLOAT
    # it reads the float tensor, not a DequantizeLinear that ONNX Runtime would turn back into int8
    assert made_by[kept.input[0]].op_type != "DequantizeLinear"
    for name in ("features", "head"):
        node = node_named(model, name)
        assert made_by[node.input[0]].op_type == "DequantizeLinear", name
        assert made_by[node.input[1]].op_type == "DequantizeLinear", name
        assert weights[made_by[node.input[1]].input[0]].data_type == TensorProto.INT8, name
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 2


def test_contract_and_json_record_the_fp32_layers_and_their_cost(rescued):
    result, output = rescued
    q = read_contract(load_onnx(output)).quantization
    assert q["fallback"] == "sensitivity" and q["fp32_nodes"] == ["outlier"]
    assert q["plain_int8_accuracy"] == pytest.approx(1 / 3)
    assert q["int8_accuracy"] == 1.0 and q["accuracy_drop_pp"] == 0.0 and q["max_accuracy_drop_pp"] == 0
    assert q["accuracy_gate"] == "passed"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["int8_accuracy"] == 1.0 and data["accuracy_drop_pp"] == 0.0
    assert data["fallback"]["fp32_nodes"] == ["outlier"] and data["fallback"]["met_budget"] is True
    assert data["fallback"]["layers"][0]["node"] == "outlier"
    for key in ("fp32_latency_ms", "int8_latency_ms", "plain_int8_latency_ms"):
        assert data[key] > 0, key


def test_export_output_says_which_layers_stayed_fp32_and_what_they_cost(rescued, capsys):
    from edgecnn.cli.render import print_export

    result, output = rescued
    parity = SimpleNamespace(images=0, max_abs_diff=0.0, top1_agreement=1.0)
    export = SimpleNamespace(output=output, size_bytes=1, parity=parity, int8=result, fp16=None)
    summary = print_export(export)
    text = capsys.readouterr().err
    assert "all-int8 minmax (per-channel) is over budget (accuracy 33.33%)" in text
    assert "1 of 3 quantisable layers kept in fp32" in text
    assert "fp32 outlier (Gemm)" in text
    assert "accuracy on 12 images: fp32 100.00%, int8 100.00% (drop +0.00 pp, budget 0 pp)" in text
    assert "all-int8" in text.splitlines()[-1] and "the fp32 layers cost" in text.splitlines()[-1]
    assert summary["int8"]["fallback"]["fp32_nodes"] == ["outlier"]


def test_info_shows_the_fp32_layers(rescued):
    from edgecnn.tools.info import describe_model, format_info

    _, output = rescued
    info = describe_model(output, probe=False)
    assert info["fp32_nodes"] == [{"node": "outlier", "op_type": "Gemm"}]
    text = format_info(info)
    assert "1 layer(s) kept in fp32 (all-int8 accuracy was 33.33%; chosen by sensitivity)" in text
    assert "outlier (Gemm)" in text
    result = CliRunner().invoke(app, ["info", str(output), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fp32_nodes"] == [{"node": "outlier", "op_type": "Gemm"}]


def test_fallback_off_fails_as_before(tmp_path, colour_samples):
    model = one_ruinous_layer(tmp_path / "colours.onnx")
    output = tmp_path / "colours.int8.onnx"
    with pytest.raises(ExportError, match="for every candidate") as caught:
        quantize_model(
            model,
            output,
            colour_samples,
            "colours",
            eval_samples=colour_samples,
            max_accuracy_drop=0,
            fallback=False,
        )
    assert "nothing was written" in str(caught.value) and "kept in fp32" not in str(caught.value)
    assert "Try --calib-method auto, more --calib-size" in str(caught.value)  # only minmax was tried
    assert not output.exists()


def test_advice_after_every_calibration_method_does_not_suggest_auto():
    from edgecnn.conversion.sensitivity import Candidate, over_budget_error

    tried = [
        Candidate(m, pc, accuracy=0.5) for m in ("minmax", "entropy", "percentile") for pc in (True, False)
    ]
    message = str(over_budget_error(tried, 0.9, 1.0, None))
    assert message.endswith("Try more --calib-size, or a larger budget") and "per-tensor: 50.00%" in message


def test_fallback_that_cannot_meet_the_budget_fails_and_writes_nothing(tmp_path, colour_samples):
    model = two_ruinous_layers(tmp_path / "colours.onnx")
    output = tmp_path / "colours.int8.onnx"
    with pytest.raises(ExportError) as caught:
        quantize_model(
            model, output, colour_samples, "colours", eval_samples=colour_samples, max_accuracy_drop=0
        )
    message = str(caught.value)
    assert "int8 accuracy drops more than 0 pp below fp32 (100.00%)" in message
    assert "even with its 1 most sensitive layer(s) kept in fp32 the accuracy is 33.33%" in message
    assert "nothing was written" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colours.onnx"]


def test_no_fallback_when_int8_is_within_budget(tmp_path, colour_samples):
    model = one_ruinous_layer(tmp_path / "colours.onnx")
    output = tmp_path / "colours.int8.onnx"
    result = quantize_model(
        model, output, colour_samples, "colours", eval_samples=colour_samples, max_accuracy_drop=100
    )
    assert result.fallback is None and result.plain_int8_latency_ms is None
    q = read_contract(load_onnx(output)).quantization
    assert q["fallback"] is None and q["fp32_nodes"] == []
    assert q["plain_int8_accuracy"] == q["int8_accuracy"] == pytest.approx(1 / 3)
    assert result.to_dict()["fallback"] is None


def kill_a_unit_and_ruin_the_last_layer(source: Path, target: Path) -> None:
    """The exported CNN with one dense unit switched off (weights 0, bias -10: its ReLU is always 0) and the
    last layer's weights on that unit set to 1e6: the same fp32 model in every other respect, whose last
    layer alone is ruined by int8."""
    model = load_onnx(source)
    weights = {i.name: i for i in model.graph.initializer}
    dense, last = [n for n in model.graph.node if n.op_type == "MatMul"][-2:]
    bias = next(n for n in model.graph.node if n.op_type == "Add" and n.input[0] == dense.output[0])

    def edit(name: str, change) -> None:
        array = numpy_helper.to_array(weights[name]).copy()
        change(array)
        weights[name].CopyFrom(numpy_helper.from_array(array, name))

    edit(dense.input[1], lambda w: w.__setitem__((slice(None), 0), 0.0))
    edit(bias.input[1], lambda b: b.__setitem__(0, -10.0))
    edit(last.input[1], lambda w: w.__setitem__(0, OUTLIER))
    onnx.save(model, str(target))


def test_default_cnn_with_a_tight_budget_keeps_its_last_layer_in_fp32(exported, synth_dir, tmp_path):
    """The session's trained CNN (tf2onnx graph: Conv, Gemm), judged on its own fp32 answers.

    The budget is 20 pp: the tiny model sits near chance, so int8 rounding anywhere flips near-ties (on some
    training runs 2 of 24 images even with 8 of 9 layers kept fp32); the ruined layer alone costs 65-90 pp.
    """
    from edgecnn.conversion.calibration import decode_batches
    from edgecnn.conversion.quantize import predict_all
    from edgecnn.core.dataset import list_class_folder

    model = tmp_path / "cnn.onnx"
    kill_a_unit_and_ruin_the_last_layer(exported[0], model)
    samples = list_class_folder(synth_dir / "val").samples
    batches, _, _ = decode_batches(samples, read_contract(load_onnx(model)), batch_size=32)
    answers = predict_all(model, batches).argmax(1)
    assert (answers != 0).any(), "the all-int8 model answers class 0 everywhere: it must disagree somewhere"
    labelled = [(path, int(answer)) for (path, _), answer in zip(samples, answers, strict=True)]
    output = tmp_path / "cnn.int8.onnx"
    result = quantize_model(model, output, labelled, "val", eval_samples=labelled, max_accuracy_drop=20)

    assert result.fp32_accuracy == 1.0 and result.chosen.accuracy < 1.0
    fallback = result.fallback
    assert fallback is not None and result.int8_accuracy >= 0.8 and result.accuracy_gate == "passed"
    assert result.chosen.accuracy < 0.8  # the ruined layer alone costs far more than the budget
    assert len(fallback.layers) == 9  # seven Conv, two Gemm
    worst, runner_up = fallback.layers[:2]
    assert "probabilities" in worst.node and worst.op_type == "Gemm"
    assert worst.error > 5 * runner_up.error and worst.top1_changed > 0
    # the ruined layer first; int8 noise elsewhere may flip a near-tie at a 0 pp budget and cost a few more
    assert fallback.fp32_nodes[0] == worst.node and len(fallback.fp32_nodes) < 9
    int8 = load_onnx(output)
    made_by = producers(int8)
    weights = {i.name for i in int8.graph.initializer}
    for node in int8.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if node.name in fallback.fp32_nodes:  # fp32 weights, float input
            assert node.input[1] in weights and made_by[node.input[0]].op_type != "DequantizeLinear"
        else:
            assert made_by[node.input[1]].op_type == "DequantizeLinear", node.name
    assert read_contract(int8).quantization["fp32_nodes"] == fallback.fp32_nodes
    assert result.plain_int8_latency_ms > 0 and result.int8_latency_ms > 0 and result.fp32_latency_ms > 0
