"""Export: parity gate, contract in the file, int8 QDQ, atomic and no-overwrite writes, and `edgecnn info`."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import METADATA_KEY, ModelContract
from edgecnn.core.errors import ExportError, OutputError
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract

runner = CliRunner()


def test_export_writes_fp32_with_contract_and_names(exported, trained_run):
    fp32, _ = exported
    model = load_onnx(fp32)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [32, 32, 3]
    contract = read_contract(model)
    report = json.loads((trained_run / "report.json").read_text())
    assert contract.labels == tuple(report["classes"])
    assert contract.source["model_sha256"] and contract.source["opset"] == 17
    assert contract.quantization is None
    assert contract.training["val_accuracy"] == pytest.approx(report["val_accuracy"])


def test_fp32_matches_keras_within_1e4(exported, trained_run, synth_dir):
    from edgecnn.api import load_for_evaluation as load_model
    from edgecnn.apps.evaluate import run_on_folder

    keras_result = run_on_folder(load_model(trained_run / "model.keras"), synth_dir)
    onnx_result = run_on_folder(load_model(exported[0], provider="cpu"), synth_dir)
    assert np.abs(keras_result.probabilities - onnx_result.probabilities).max() <= 1e-4
    assert keras_result.metrics.accuracy == onnx_result.metrics.accuracy


def test_int8_is_qdq_keeps_contract_and_agrees(exported, synth_dir):
    fp32, int8 = exported
    model = load_onnx(int8)
    ops = op_counts(model)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    contract = read_contract(model)
    base = read_contract(load_onnx(fp32))
    assert contract.labels == base.labels and contract.input == base.input
    q = contract.quantization
    assert q["format"] == "QDQ" and q["per_channel"] is True and q["calibration_images"] > 0
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    from edgecnn.api import load_for_evaluation as load_model
    from edgecnn.apps.evaluate import run_on_folder

    a = run_on_folder(load_model(fp32, provider="cpu"), synth_dir)
    b = run_on_folder(load_model(int8, provider="cpu"), synth_dir)
    diff = np.abs(a.probabilities - b.probabilities).max()
    assert diff < 0.05
    # The barely trained test model has near-ties, where any rounding may flip top-1: every disagreement must
    # be one of those (a fp32 margin within what int8 moved the probabilities), never a confident answer.
    top2 = np.sort(a.probabilities, axis=1)[:, -2:]
    flipped = a.probabilities.argmax(1) != b.probabilities.argmax(1)
    assert ((top2[:, 1] - top2[:, 0])[flipped] <= 2 * diff).all()


def test_existing_output_is_not_overwritten_without_force(exported, trained_run):
    fp32, _ = exported
    before = fp32.read_bytes()
    result = runner.invoke(app, ["export", str(trained_run)])
    assert result.exit_code == 2 and "--force" in result.stderr
    assert fp32.read_bytes() == before


def test_int8_alone_reuses_current_fp32(exported, trained_run, tmp_path):
    out = tmp_path / "again.int8.onnx"
    result = runner.invoke(
        app,
        [
            "export",
            str(trained_run),
            "--int8",
            "--int8-output",
            str(out),
            "--calib-size",
            "12",
            "--max-accuracy-drop",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "reusing" in result.stderr and out.is_file()


def test_failed_parity_gate_leaves_no_file(trained_run, tmp_path, monkeypatch):
    import edgecnn.conversion.convert as export_module

    real = export_module.check_parity

    def broken(*args, **kwargs):
        report = real(*args, **kwargs)
        report.max_abs_diff = 0.5
        return report

    monkeypatch.setattr(export_module, "check_parity", broken)
    target = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="parity gate failed"):
        export_module.export_model(trained_run, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_partial_file(trained_run, tmp_path, monkeypatch):
    import edgecnn.conversion.convert as export_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "check_parity", interrupted)
    target = tmp_path / "m.onnx"
    with pytest.raises(KeyboardInterrupt):
        export_module.export_model(trained_run, target)
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_atomically(trained_run, tmp_path):
    from edgecnn.core.atomic import atomic_output

    target = tmp_path / "x.onnx"
    target.write_bytes(b"old")
    with pytest.raises(OutputError):
        with atomic_output(target, force=False):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output(target, force=True) as tmp:
            tmp.write_bytes(b"new but failed")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    with atomic_output(target, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.onnx"]


def test_int8_over_budget_fails_and_writes_nothing(exported, tmp_path, synth_dir, monkeypatch):
    import edgecnn.conversion.quantize as q
    from edgecnn.core.dataset import list_class_folder

    samples = list_class_folder(synth_dir / "val").samples
    wrong = np.array([(label + 1) % 3 for _, label in samples])
    real = q.predict_all

    def degrade(path, batches):
        probs = real(path, batches)
        if "candidate" in str(path):  # the int8 candidate: every answer wrong
            probs = np.eye(3, dtype=np.float32)[wrong[: len(probs)]]
        return probs

    monkeypatch.setattr(q, "predict_all", degrade)
    target = tmp_path / "bad.int8.onnx"
    with pytest.raises(ExportError, match="nothing was written"):
        q.quantize_model(exported[0], target, samples, "test", eval_samples=samples, max_accuracy_drop=1.0)
    assert not target.exists()


def test_auto_reports_every_candidate(exported, tmp_path, synth_dir):
    from edgecnn.conversion.quantize import quantize_model
    from edgecnn.core.dataset import list_class_folder

    samples = list_class_folder(synth_dir / "val").samples
    calib = samples[:13]  # a prime count: batches of 8 would end short, which histogram calibration refused
    result = quantize_model(
        exported[0],
        tmp_path / "auto.onnx",
        calib,
        "test",
        eval_samples=samples,
        method="auto",
        max_accuracy_drop=100,
    )
    assert len(result.candidates) == 6
    assert {(c.method, c.per_channel) for c in result.candidates} == {
        (m, pc) for m in ("minmax", "entropy", "percentile") for pc in (True, False)
    }
    assert all(c.error is None and c.accuracy is not None for c in result.candidates), result.candidates
    assert result.chosen in result.candidates and result.int8_accuracy is not None


def test_opset_above_20_refused_for_int8(trained_run):
    result = runner.invoke(app, ["export", str(trained_run), "--int8", "--opset", "21", "--force"])
    assert result.exit_code == 2 and "opset" in result.stderr


def test_info_json_fields(exported):
    result = runner.invoke(app, ["info", str(exported[1]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "path",
        "size_bytes",
        "opset",
        "parameters",
        "quantized",
        "contract",
        "providers",
        "inputs",
        "outputs",
    ):
        assert key in data
    assert data["quantized"] is True and data["opset"] == 17
    assert data["contract"]["labels"] == ["circle", "square", "triangle"]
    cpu = [p for p in data["providers"] if p["provider"] == "cpu"]
    assert cpu and cpu[0]["works"] is True
    assert ModelContract.from_dict(data["contract"]).quantization["format"] == "QDQ"


def test_info_on_broken_and_foreign_files(tmp_path, exported):
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(exported[0].read_bytes()[:500])
    text = tmp_path / "text.onnx"
    text.write_text("hello")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (truncated, text, empty, tmp_path / "missing.onnx"):
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 2, (path, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    foreign = load_onnx(exported[0])
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    result = runner.invoke(app, ["info", str(tmp_path / "foreign.onnx")])
    assert result.exit_code == 0 and "not an edgecnn model" in result.stdout


def test_predictor_refuses_model_without_contract(tmp_path, exported):
    from edgecnn.core.errors import ContractError
    from edgecnn.runtime.predictor import Predictor

    foreign = load_onnx(exported[0])
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ContractError, match="not an edgecnn model"):
        Predictor(tmp_path / "foreign.onnx", provider="cpu")


def test_predictor_refuses_contract_that_disagrees_with_graph(tmp_path, exported):
    from edgecnn.core.errors import ContractError
    from edgecnn.core.onnxfile import set_contract
    from edgecnn.runtime.predictor import Predictor

    model = load_onnx(exported[0])
    contract = read_contract(model)
    for bad, message in (
        (contract.with_updates(labels=("a", "b")), "labels"),
        (contract.with_updates(input=type(contract.input).square(48)), "height"),
    ):
        set_contract(model, bad)
        path = tmp_path / "bad.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ContractError, match=message):
            Predictor(path, provider="cpu")
    assert METADATA_KEY in {p.key for p in model.metadata_props}


def test_info_does_not_import_tensorflow(exported):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edgecnn.cli import app\n"
        f"r = CliRunner().invoke(app, ['info', {str(exported[1])!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "print('IMPORTED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr


def test_stale_partial_files_of_killed_exports_are_cleaned_up(tmp_path):
    import os
    import time

    from edgecnn.core.atomic import atomic_output

    target = tmp_path / "m.onnx"
    old = tmp_path / ".m.abc123.partial.onnx"
    fresh = tmp_path / ".m.def456.partial.onnx"
    old.write_bytes(b"killed long ago")
    fresh.write_bytes(b"another export running now")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    with atomic_output(target, force=False) as tmp:
        tmp.write_bytes(b"model")
    assert target.read_bytes() == b"model"
    assert not old.exists() and fresh.exists()


def test_calibration_batches_are_all_one_size():
    import numpy as np

    from edgecnn.conversion.calibration import even_batches

    batches = [np.zeros((8, 2, 2, 3), np.float32)] * 37 + [np.ones((4, 2, 2, 3), np.float32)]  # 300 images
    even = even_batches(batches)
    assert {len(b) for b in even} == {6} and sum(len(b) for b in even) == 300
    assert float(np.concatenate(even)[-4:].min()) == 1.0  # the same images, in order
    assert [len(b) for b in even_batches([np.zeros((7, 1), np.float32), np.zeros((6, 1), np.float32)])] == [
        1
    ] * 13
    assert even_batches([]) == []
