"""One front door: every command makes its one call through ``edgecnn.api``, and the API takes every option the
command passes, so the API cannot lag the command line."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgecnn
import edgecnn.api as api
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "models" / "shapes-cnn.int8.onnx"
SAMPLES = ROOT / "samples"
#: What a command reaches only through ``edgecnn.api``.
BEHIND_THE_API = (
    "edgecnn.apps",
    "edgecnn.training",
    "edgecnn.conversion",
    "edgecnn.runtime",
    "edgecnn.reports",
    "edgecnn.serving",
)
runner = CliRunner()


def imports_behind_the_api(source: str) -> list[str]:
    """Modules behind the API that ``source`` imports, at the top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "edgecnn":  # from edgecnn import apps
                names = [f"edgecnn.{alias.name}" for alias in node.names]
        else:
            continue
        found += [n for n in names if any(n == p or n.startswith(p + ".") for p in BEHIND_THE_API)]
    return found


def test_the_import_check_sees_imports_inside_functions():
    source = (
        "def run():\n    from edgecnn.apps.classify import classify_paths\n    from edgecnn import training\n"
    )
    assert imports_behind_the_api(source) == ["edgecnn.apps.classify", "edgecnn.training"]
    assert imports_behind_the_api("from edgecnn import api\nfrom edgecnn.core.metrics import x\n") == []


def test_no_command_module_reaches_past_the_api():
    modules = sorted((ROOT / "edgecnn" / "cli").glob("*.py"))
    assert len(modules) >= 8
    offending = {
        m.name: found for m in modules if (found := imports_behind_the_api(m.read_text(encoding="utf-8")))
    }
    assert offending == {}


def spy(monkeypatch: pytest.MonkeyPatch, name: str, stop: bool = False) -> list[inspect.BoundArguments]:
    """Record each call of ``edgecnn.api.<name>``, checked against its signature; then run it (or stop)."""
    real = getattr(api, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs))
        if stop:
            raise ConfigError(f"stopped in edgecnn.{name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, name, wrapper)
    return calls


def test_classify_command_goes_through_the_api(monkeypatch, tmp_path):
    calls = spy(monkeypatch, "classify")
    out = tmp_path / "results.csv"
    args = ["classify", str(SAMPLES), "--model", str(SHAPES), "--provider", "cpu", "--threads", "1"]
    result = runner.invoke(app, [*args, "--top-k", "2", "--workers", "2", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and out.exists()
    passed = calls[0].arguments
    assert passed["provider"] == "cpu" and passed["threads"] == 1 and passed["options"]["top_k"] == 2


def test_webcam_command_goes_through_the_api(monkeypatch):
    calls = spy(monkeypatch, "webcam")
    args = ["webcam", "--model", str(SHAPES), "--source", str(SAMPLES / "shapes.mp4"), "--provider", "cpu"]
    result = runner.invoke(
        app, [*args, "--threads", "1", "--no-display", "--max-frames", "3", "--top-k", "2"]
    )
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0].arguments["options"]["max_frames"] == 3


def test_train_command_goes_through_the_api(monkeypatch, tmp_path):
    import edgecnn.training.train as training

    configs = []

    def no_training(config):  # TrainConfig is built and checked by the API; the training itself is not needed
        configs.append(config)
        raise ConfigError("stopped before training")

    monkeypatch.setattr(training, "train", no_training)
    calls = spy(monkeypatch, "train")
    args = [
        "train",
        str(tmp_path),
        "--arch",
        "cnn",
        "--epochs",
        "2",
        "--no-augment",
        "--out",
        str(tmp_path / "r"),
    ]
    result = runner.invoke(app, [*args, "--base-filters", "8", "--bn-momentum", "0.9", "--quiet"])
    assert result.exit_code == 2 and "stopped before training" in result.output
    assert len(calls) == 1
    config = configs[0]
    assert (config.epochs, config.augment, config.out_dir, config.base_filters) == (
        2,
        False,
        tmp_path / "r",
        8,
    )
    assert config.bn_momentum == 0.9 and config.verbose == 0


def test_export_command_goes_through_the_api(monkeypatch, tmp_path):
    import edgecnn.conversion.convert as convert

    real = convert.export_all
    received = []

    @functools.wraps(real)  # the API checks its options against this signature
    def no_export(*args, **kwargs):
        received.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        raise ConfigError("stopped before converting")

    monkeypatch.setattr(convert, "export_all", no_export)
    calls = spy(monkeypatch, "export")
    args = ["export", str(tmp_path), "--int8", "--fp16", "--calib-method", "entropy", "--opset", "13"]
    result = runner.invoke(app, [*args, "--tta", "flip", "--no-accuracy-gate", "--reduce-range", "off"])
    assert result.exit_code == 2 and "stopped before converting" in result.output
    assert len(calls) == 1
    given = received[0]
    assert given["opset"] == 13 and given["calib_method"] == "entropy" and given["accuracy_gate"] is False
    assert given["int8"] and given["fp16"] and given["tta"] == "flip" and given["reduce_range"] == "off"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("evaluate", ["evaluate", str(SHAPES), str(SAMPLES), "--provider", "cpu", "--workers", "2"]),
        ("adopt", ["adopt", str(SHAPES), "--labels", "labels.txt", "--preset", "raw", "--fit", "letterbox"]),
        ("serve", ["serve", f"shapes={SHAPES}", "--port", "0", "--max-batch", "4", "--provider", "cpu"]),
    ],
)
def test_other_commands_go_through_the_api(monkeypatch, name, args):
    calls = spy(monkeypatch, name, stop=True)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and f"stopped in edgecnn.{name}" in result.output
    assert len(calls) == 1


def test_classify_takes_provider_and_threads(tmp_path):
    summary = edgecnn.classify(SAMPLES, model=SHAPES, provider="cpu", threads=1, fallback=False, top_k=2)
    assert summary.classified == 11 and summary.provider == "cpu"


def test_the_api_raises_its_own_errors_for_an_unknown_option(tmp_path):
    with pytest.raises(ConfigError, match="classify\\(\\) has no option 'colour'"):
        edgecnn.classify(SAMPLES, model=SHAPES, colour="red")
    with pytest.raises(ConfigError, match="train\\(\\) has no option 'epoch'"):
        edgecnn.train(tmp_path, epoch=3)
    with pytest.raises(ConfigError, match="export\\(\\) has no option 'provider'"):
        edgecnn.export(tmp_path, provider="cpu")
    with pytest.raises(ConfigError, match="webcam\\(\\) has no option 'fps'"):
        edgecnn.webcam(SHAPES, source=str(SAMPLES / "shapes.mp4"), fps=5)
    with pytest.raises(ConfigError, match="paths are files or folders"):
        edgecnn.classify([SAMPLES, 3], model=SHAPES)


def test_classify_releases_the_model_when_the_report_fails(monkeypatch, tmp_path):
    import edgecnn.reports.classify as report_page
    from edgecnn.core.errors import OutputError
    from edgecnn.runtime.model import Model

    closed = []
    real_close = Model.close
    monkeypatch.setattr(Model, "close", lambda self: (closed.append(self), real_close(self)))

    def broken(*args, **kwargs):
        raise OutputError("cannot write the report")

    monkeypatch.setattr(report_page, "ClassifyReport", broken)
    with pytest.raises(OutputError):
        edgecnn.classify(SAMPLES, model=SHAPES, report=tmp_path / "page.html")
    assert len(closed) == 1


def test_min_confidence_without_sort_into_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--min-confidence applies with --sort-into"):
        edgecnn.classify(SAMPLES, model=SHAPES, min_confidence=0.5)
    result = runner.invoke(app, ["classify", str(SAMPLES), "--model", str(SHAPES), "--min-confidence", "0.5"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --min-confidence applies with --sort-into DIR (files below it go to DIR/_uncertain/)"
    ]
    sorted_ = edgecnn.classify(SAMPLES, model=SHAPES, sort_into=tmp_path / "sorted", min_confidence=0.5)
    assert sorted_.classified == 11


def test_opset_with_an_onnx_source_is_refused(tmp_path):
    source = tmp_path / "model.onnx"
    shutil.copy(ROOT / "models" / "shapes-cnn.onnx", source)
    result = runner.invoke(app, ["export", str(source), "--opset", "13", "--int8"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --opset applies when a Keras model is converted; model.onnx is already ONNX and keeps its opset"
    ]
    with pytest.raises(ConfigError, match="--opset applies"):
        edgecnn.export(source, int8=True, opset=17)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # nothing written


@pytest.mark.parametrize(
    "option",
    [["--base-filters", "16"], ["--bn-momentum", "0.9"], ["--base-filters", "32"], ["--bn-momentum", "0.99"]],
)  # the last two are the defaults: given, they would still be ignored
def test_network_shape_options_with_a_backbone_are_refused(tmp_path, option):
    from edgecnn.training.config import TrainConfig

    result = runner.invoke(app, ["train", str(tmp_path), "--arch", "mobilenetv3small", *option])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {option[0]} apply to --arch cnn and resnet only (networks from scratch); "
        "mobilenetv3small is built to its published shape"
    ]
    field = option[0][2:].replace("-", "_")
    with pytest.raises(ConfigError, match=option[0]):
        TrainConfig(data_dir=tmp_path, arch="efficientnet-lite0", **{field: float(option[1])})
    assert getattr(
        TrainConfig(data_dir=tmp_path, arch="resnet", **{field: float(option[1])}), field
    ) == float(option[1])
    backbone = TrainConfig(data_dir=tmp_path, arch="mobilenetv3small")
    assert backbone.base_filters is None and backbone.bn_momentum is None  # not its options: none recorded
    assert dataclasses.replace(backbone, epochs=3).epochs == 3  # a resolved config is a valid config
    assert TrainConfig(data_dir=tmp_path, arch="cnn").base_filters == 32  # a network from scratch's default


def test_the_library_is_silent_until_logging_is_configured(tmp_path):
    """An int8 export without an accuracy gate warns through the `edgecnn` logger, not on stderr."""
    import subprocess
    import sys

    source = tmp_path / "model.onnx"
    shutil.copy(ROOT / "models" / "shapes-cnn.onnx", source)
    code = (
        "import logging, sys, edgecnn\n"
        f"edgecnn.export({str(source)!r}, int8=True, accuracy_gate=False, calib_dir={str(SAMPLES)!r}, calib_size=6)\n"
        "sys.stderr.flush()\n"
        "print('--- logging configured ---', file=sys.stderr, flush=True)\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "logging.getLogger('edgecnn.conversion.quantize').warning('a warning after basicConfig')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    before, after = result.stderr.split("--- logging configured ---\n")
    assert before == ""
    assert after == "a warning after basicConfig\n"
    assert (tmp_path / "model.int8.onnx").exists()


def test_classify_on_ray_goes_through_the_api(monkeypatch, tmp_path):
    import edgecnn.apps.cluster as cluster
    from edgecnn.apps.classify import ClassifySummary

    received = []

    def no_cluster(config, model_path, address, **kwargs):
        received.append((config, model_path, address, kwargs))
        return ClassifySummary(provider="cpu")

    monkeypatch.setattr(cluster, "classify_on_ray", no_cluster)
    calls = spy(monkeypatch, "classify")
    args = [
        "classify",
        str(SAMPLES),
        "--model",
        str(SHAPES),
        "--ray",
        "local",
        "--csv",
        "-o",
        str(tmp_path / "out"),
    ]
    result = runner.invoke(app, [*args, "--provider", "cpu", "--threads", "2", "--fallback", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    config, model_path, address, kwargs = received[0]
    assert (Path(model_path), address, config.top_k, config.output) == (SHAPES, "local", 3, tmp_path / "out")
    assert kwargs["csv"] and kwargs["provider"] == "cpu" and kwargs["threads"] == 2 and kwargs["fallback"]
    refused = runner.invoke(
        app, ["classify", str(SAMPLES), "--ray", "local", "--report", str(tmp_path / "r.html")]
    )
    assert refused.exit_code == 2 and "--report does not work with --ray yet" in refused.output
    no_ray = runner.invoke(app, ["classify", str(SAMPLES), "--csv"])
    assert no_ray.exit_code == 2 and "--csv goes with --ray" in no_ray.output


def test_webcam_refuses_source_options_before_loading_the_model(tmp_path):
    """A capture size with a video file is refused first: the (missing) model is never opened."""
    with pytest.raises(ConfigError, match="width"):
        edgecnn.webcam(tmp_path / "missing.onnx", source=str(SAMPLES / "shapes.mp4"), width=640)
