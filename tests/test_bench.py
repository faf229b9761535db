"""The benchmark library: exact MAC counts, the report's schema and arithmetic, honest provider rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ConfigError, ContractError
from edgecnn.core.onnxfile import set_contract
from edgecnn.tools.bench import SCHEMA, count_macs, format_accuracy, format_table, measure_peak, run_benchmark

SIZE = 16
FILTERS = 8
# Conv 3x3, stride 2, pad 1 on 16x16x3 -> 8x8x8: each output value takes 3*3*3 MACs; Gemm 8 -> 2.
CONV_MACS = (8 * 8 * FILTERS) * (3 * 3 * 3)
GEMM_MACS = FILTERS * 2
TINY_MACS = CONV_MACS + GEMM_MACS


def _init(array: np.ndarray, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _qdq(name: str, dtype: type = np.int8) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """QuantizeLinear -> DequantizeLinear on an activation, as static QDQ quantisation inserts them."""
    nodes = [
        helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
        helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"]),
    ]
    inits = [_init(np.array(0.05, np.float32), f"{name}_s"), _init(np.array(0, dtype), f"{name}_z")]
    return nodes, inits, f"{name}_dq"


def _weight(
    array: np.ndarray, name: str, qdq: bool
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    if not qdq:
        return [], [_init(array, name)], name
    q = np.clip(np.round(array / 0.01), -127, 127).astype(np.int8)
    node = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"])
    inits = [
        _init(q, f"{name}_q"),
        _init(np.array(0.01, np.float32), f"{name}_s"),
        _init(np.array(0, np.int8), f"{name}_z"),
    ]
    return [node], inits, f"{name}_dq"


def tiny_graph(qdq: bool = False, batch: int | str = "batch", seed: int = 0) -> onnx.ModelProto:
    """NHWC image -> Transpose -> Conv(3x3, stride 2) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2])]
    inits: list[onnx.TensorProto] = []
    x = "nchw"
    if qdq:
        n, i, x = _qdq("nchw")
        nodes += n
        inits += i
    wn, wi, w = _weight(rng.normal(0, 0.1, (FILTERS, 3, 3, 3)).astype(np.float32), "conv_w", qdq)
    nodes += wn
    inits += wi + [_init(np.zeros(FILTERS, np.float32), "conv_b")]
    nodes += [
        helper.make_node(
            "Conv", [x, w, "conv_b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
    ]
    x = "flat"
    if qdq:
        n, i, x = _qdq("flat")
        nodes += n
        inits += i
    wn, wi, w = _weight(rng.normal(0, 0.5, (FILTERS, 2)).astype(np.float32), "fc_w", qdq)
    nodes += wn
    inits += wi + [_init(np.zeros(2, np.float32), "fc_b")]
    nodes += [
        helper.make_node("Gemm", [x, w, "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 2])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def write_tiny_model(path: Path, qdq: bool = False, seed: int = 0) -> Path:
    """A tiny edgecnn model file: the graph above with a contract (labels a, b; 16x16 RGB)."""
    model = tiny_graph(qdq=qdq, seed=seed)
    set_contract(model, ModelContract(labels=("a", "b"), input=InputSpec.square(SIZE), arch="test"))
    onnx.save(model, str(path))
    return path


def single_node_model(
    node: onnx.NodeProto, inputs: list, output: onnx.ValueInfoProto, inits: list
) -> onnx.ModelProto:
    graph = helper.make_graph([node], "one", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


# ------------------------------------------------------------------------------------------ count_macs


def test_count_macs_of_conv_and_gemm_is_exact():
    assert count_macs(tiny_graph()) == TINY_MACS == 13_840


def test_qdq_model_counts_the_same_macs_as_its_float_source():
    model = tiny_graph(qdq=True)
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) == 4
    assert count_macs(model) == count_macs(tiny_graph()) == TINY_MACS


def test_fixed_batch_counts_per_image():
    assert count_macs(tiny_graph(batch=4)) == TINY_MACS


def test_depthwise_and_dilated_convs_use_the_inferred_shapes():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 10, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = _init(np.ones((8, 1, 3, 3), np.float32), "w")
    depthwise = helper.make_node("Conv", ["x", "w"], ["y"], group=8, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    # 8 channels x 10 x 10 outputs, each over 1 input channel x 3 x 3
    assert count_macs(single_node_model(depthwise, [x], y, [w])) == (8 * 10 * 10) * 9
    dilated = helper.make_node("Conv", ["x", "w2"], ["y"], dilations=[2, 2], strides=[1, 2])
    w2 = _init(np.ones((4, 8, 3, 3), np.float32), "w2")
    # no padding, effective kernel 5: height 10-5+1 = 6, width (10-5)//2+1 = 3
    assert count_macs(single_node_model(dilated, [x], y, [w2])) == (4 * 6 * 3) * (8 * 9)


def test_integer_and_qlinear_convs():
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 3, SIZE, SIZE])
    y_int = helper.make_tensor_value_info("y", TensorProto.INT32, None)
    w = _init(np.ones((FILTERS, 3, 3, 3), np.int8), "w")
    conv_integer = helper.make_node("ConvInteger", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    assert count_macs(single_node_model(conv_integer, [x], y_int, [w])) == CONV_MACS
    scales = [
        _init(np.array(0.1, np.float32), "xs"),
        _init(np.array(128, np.uint8), "xz"),
        _init(np.array(0.01, np.float32), "ws"),
        _init(np.array(0, np.int8), "wz"),
        _init(np.array(0.2, np.float32), "ys"),
        _init(np.array(128, np.uint8), "yz"),
    ]
    qlinear = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        ["y"],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    y_u8 = helper.make_tensor_value_info("y", TensorProto.UINT8, None)
    assert count_macs(single_node_model(qlinear, [x], y_u8, [w, *scales])) == CONV_MACS


def test_matmul_family_and_transposed_gemm():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    b = _init(np.ones((5, 6), np.float32), "b")
    # (4 x 6) outputs, each a dot product of length 5
    assert (
        count_macs(single_node_model(helper.make_node("MatMul", ["a", "b"], ["y"]), [a], y, [b])) == 4 * 6 * 5
    )
    a8 = helper.make_tensor_value_info("a", TensorProto.UINT8, ["batch", 4, 5])
    b8 = _init(np.ones((5, 6), np.int8), "b")
    y32 = helper.make_tensor_value_info("y", TensorProto.INT32, None)
    model = single_node_model(helper.make_node("MatMulInteger", ["a", "b"], ["y"]), [a8], y32, [b8])
    assert count_macs(model) == 4 * 6 * 5
    a2 = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 7])
    nodes = [
        helper.make_node("Transpose", ["a"], ["at"], perm=[1, 0]),  # K x M, read back with transA
        helper.make_node("Gemm", ["at", "b"], ["y"], transA=1, transB=1),
    ]
    bt = _init(np.ones((3, 7), np.float32), "b")  # transB: N x K
    graph = helper.make_graph(nodes, "gemm", [a2], [y], initializer=[bt])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    assert count_macs(model) == 1 * 3 * 7


# ------------------------------------------------------------------------------------------ run_benchmark


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("bench")
    return [write_tiny_model(root / "first.onnx"), write_tiny_model(root / "second.onnx", qdq=True, seed=1)]


@pytest.fixture(scope="module")
def report(two_models: list[Path]) -> dict:
    return run_benchmark(two_models, ["cpu", "cuda"], [1, 4], threads=1, runs=2, warmup=1, peak_seconds=0.02)


ROW_TYPES = {
    "model": str,
    "model_index": int,
    "provider": str,
    "batch_size": int,
    "status": str,
    "precision": str,
    "median_ms": float,
    "p95_ms": float,
    "p99_ms": float,
    "images_per_second": float,
    "throughput_vs_first": float,
    "macs_per_image": int,
    "achieved_gops": float,
    "ops_unit": str,
}


def test_report_has_the_documented_schema(report: dict):
    assert report["schema"] == SCHEMA == "edgecnn.benchmark/1"
    assert {"created", "machine", "settings", "models", "peaks", "rows", "accuracy"} <= set(report)
    machine = report["machine"]
    assert {"cpu", "logical_cores", "int8_flags", "python", "onnxruntime", "numpy"} <= set(machine)
    assert isinstance(machine["logical_cores"], int)
    assert all(isinstance(v, bool) for v in machine["int8_flags"].values())
    assert [m["macs_per_image"] for m in report["models"]] == [TINY_MACS, TINY_MACS]
    assert [m["precision"] for m in report["models"]] == ["fp32", "int8"]
    assert len(report["rows"]) == 2 * 2 * 2  # models x providers x batch sizes
    for row in (r for r in report["rows"] if r["provider"] == "cpu"):
        assert row["status"] == "ok", row["reason"]
        for key, kind in ROW_TYPES.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert row["median_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["peak_rss_mb"] is not None or row["memory_note"]
    assert report["accuracy"] is None
    json.dumps(report, allow_nan=False)


def test_timings_are_of_the_model_runs(two_models: list[Path], monkeypatch):
    """Model runs of known length (10, 50 and 20 ms): the row's figures come from them, not from each other."""
    import time

    from edgecnn.runtime.predictor import Predictor

    durations = iter([0.010, 0.050, 0.020])
    real = Predictor.predict_batch

    def timed(self, batch):
        out = real(self, batch)
        time.sleep(next(durations))
        return out

    monkeypatch.setattr(Predictor, "predict_batch", timed)
    result = run_benchmark(two_models[:1], ["cpu"], [4], threads=1, runs=3, warmup=0, peak_seconds=0)
    (row,) = result["rows"]
    assert 20 <= row["median_ms"] < 24  # the middle run (not the mean, 27 ms), plus the tiny model's own time
    assert 4 / 0.024 < row["images_per_second"] <= 4 / 0.020  # 4 images in about 20 ms: about 200 images/s
    assert 20 < row["p95_ms"] <= row["p99_ms"] < 55


def test_throughput_ratios_are_against_the_first_model(report: dict):
    cpu = {(r["model_index"], r["batch_size"]): r for r in report["rows"] if r["provider"] == "cpu"}
    for batch in (1, 4):
        first, second = cpu[(0, batch)], cpu[(1, batch)]
        assert first["throughput_vs_first"] == 1.0
        expected = second["images_per_second"] / first["images_per_second"]
        assert second["throughput_vs_first"] == pytest.approx(expected, rel=1e-3)


def test_roofline_fields(report: dict):
    peaks = {(p["provider"], p["precision"]): p for p in report["peaks"]}
    assert set(peaks) == {("cpu", "fp32"), ("cpu", "int8")}
    assert peaks[("cpu", "int8")]["unit"] == "GOP/s"
    for row in (r for r in report["rows"] if r["status"] == "ok"):
        expected = 2 * row["macs_per_image"] * row["images_per_second"] / 1e9
        assert row["achieved_gops"] == pytest.approx(expected, rel=1e-3)
        assert row["ops_unit"] == ("GOP/s" if row["precision"] == "int8" else "GFLOP/s")
        peak = peaks[(row["provider"], row["precision"])]["value"]
        assert row["peak_gops"] == peak > 0
        assert row["peak_share"] == pytest.approx(row["achieved_gops"] / peak, rel=1e-3)


def test_provider_that_cannot_start_is_unavailable_not_replaced(report: dict):
    from edgecnn.runtime.providers import probe_providers

    if any(s.works for s in probe_providers(["cuda"])):
        pytest.skip("CUDA works on this machine")
    cuda = [r for r in report["rows"] if r["provider"] == "cuda"]
    assert len(cuda) == 4
    for row in cuda:
        assert row["status"] == "unavailable"
        assert "cuda" in row["reason"] and row["reason"]
        assert (
            row["median_ms"] is None
            and row["images_per_second"] is None
            and row["throughput_vs_first"] is None
        )


def test_table_shows_every_row(report: dict):
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(format_table(report))
    text = console.export_text()
    assert text.count("unavailable") >= 4
    assert "first.onnx" in text and "second.onnx" in text
    assert format_accuracy(report) is None


def test_measure_peak_fp32_and_int8():
    from edgecnn.runtime.providers import import_onnxruntime

    ort = import_onnxruntime()
    assert measure_peak(ort, "fp32", 1, 0.01) > 0.1
    assert measure_peak(ort, "int8", 1, 0.01) > 0.1
    with pytest.raises(ConfigError, match="fp32, int8"):
        measure_peak(ort, "fp16", 1, 0.01)


def _write_images(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(3)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_data_dir_gives_accuracy_and_agreement(tmp_path: Path, two_models: list[Path]):
    data = _write_images(tmp_path / "data")
    copy = tmp_path / "copy.onnx"
    shutil.copy(two_models[0], copy)
    result = run_benchmark(
        [two_models[0], copy], ["cpu"], [2], threads=1, data_dir=data, runs=1, warmup=0, peak_seconds=0
    )
    assert result["settings"]["data_dir"] == str(data)
    assert [r["status"] for r in result["rows"]] == ["ok", "ok"]
    assert all(p["value"] is None and p["error"] for p in result["peaks"])
    first, second = result["accuracy"]
    assert first["images"] == second["images"] == 6
    assert 0.0 <= first["accuracy"] <= 1.0 and second["accuracy"] == first["accuracy"]
    assert first["agreement_with_first"] == second["agreement_with_first"] == 1.0
    assert format_accuracy(result) is not None


def test_bad_settings_and_models_are_refused(tmp_path: Path, two_models: list[Path]):
    with pytest.raises(ConfigError, match="unknown provider 'gpu'; choose from cpu, cuda, tensorrt"):
        run_benchmark(two_models, ["gpu"], [1], runs=1, warmup=0)
    with pytest.raises(ConfigError, match="--batch-sizes"):
        run_benchmark(two_models, ["cpu"], [0], runs=1, warmup=0)
    bare = tiny_graph()
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ContractError, match="not an edgecnn model"):
        run_benchmark([tmp_path / "bare.onnx"], ["cpu"], [1], runs=1, warmup=0)


def test_static_qdq_quantisation_keeps_the_count(tmp_path: Path):
    from onnxruntime import quantization as q

    source = write_tiny_model(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(0)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"image": rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)} for _ in range(4)]
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    target = tmp_path / "int8.onnx"
    q.quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
    )
    quantized = onnx.load(str(target))
    assert any(n.op_type == "DequantizeLinear" for n in quantized.graph.node)
    assert count_macs(quantized) == count_macs(onnx.load(str(source))) == TINY_MACS


def test_a_row_that_fails_is_an_error_row(tmp_path: Path):
    model = tiny_graph(batch=4)
    set_contract(model, ModelContract(labels=("a", "b"), input=InputSpec.square(SIZE), arch="test"))
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    result = run_benchmark(
        [tmp_path / "fixed.onnx"], ["cpu"], [4, 2], threads=1, runs=1, warmup=0, peak_seconds=0
    )
    ok, failed = result["rows"]
    assert ok["status"] == "ok" and ok["macs_per_image"] == TINY_MACS
    assert failed["status"] == "error" and "batches of 4" in failed["reason"]
    assert failed["images_per_second"] is None and failed["throughput_vs_first"] is None


def test_peak_memory_says_why_when_it_cannot_be_reset(
    monkeypatch: pytest.MonkeyPatch, two_models: list[Path]
):
    import edgecnn.tools.bench as bench

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bench.Path, "write_text", refuse)
    before, note = bench.reset_peak_memory()
    assert before is None and note
    result = run_benchmark(two_models[:1], ["cpu"], [1], threads=1, runs=1, warmup=0, peak_seconds=0)
    row = result["rows"][0]
    assert row["peak_rss_mb"] is None and row["memory_note"] == note
