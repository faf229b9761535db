"""Opt-in tests: on a GPU (-m gpu), with the internet (-m network), and the long VGG16 run (-m slow).

The default run deselects them (pyproject's addopts); each asserts on what only that environment can show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_gpu
from conftest import REPO
from typer.testing import CliRunner

from edgecnn.cli import app

runner = CliRunner()
SHIPPED = REPO / "models"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["shapes-cnn.onnx", "shapes-cnn.int8.onnx"])
def test_cuda_really_runs_and_agrees_with_the_cpu(name):
    import edgecnn

    cuda = edgecnn.load(SHIPPED / name, provider="cuda")  # raises ProviderError when CUDA cannot start
    cpu = edgecnn.load(SHIPPED / name, provider="cpu")
    assert cuda.provider == "cuda"
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (32, *cpu.contract.input.shape), dtype=np.uint8).astype(np.float32)
    a = cuda.predictor.predict_batch(batch)
    b = cpu.predictor.predict_batch(batch)
    precision = "int8" if ".int8." in name else "fp32"
    assert np.abs(a - b).max() <= test_gpu.LIMITS[precision]  # one bound per precision, shared with test_gpu
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97


@pytest.mark.network
def test_vgg16_imagenet_weights_download_and_train(tmp_path):
    from edgecnn.training.synthetic import write_dataset

    data = tmp_path / "d"
    write_dataset(data, classes=("circle", "square"), per_class=6, size=32, seed=3)
    args = ["train", str(data), "--arch", "vgg16", "--weights", "imagenet", "--img-size", "32"]
    result = runner.invoke(
        app, [*args, "--epochs", "1", "--val-split", "0.34", "--out", str(tmp_path / "r"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "model.keras").is_file()


@pytest.mark.slow
def test_vgg16_at_224_trains_and_exports_through_the_gates(tmp_path):
    from edgecnn.training.synthetic import write_dataset

    data = tmp_path / "d"
    write_dataset(data, classes=("circle", "square"), per_class=8, size=224, seed=5)
    run = tmp_path / "vgg"
    args = ["train", str(data), "--arch", "vgg16", "--weights", "none", "--epochs", "1", "--batch-size", "4"]
    result = runner.invoke(app, [*args, "--val-split", "0.25", "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    exported = runner.invoke(
        app, ["export", str(run), "--int8", "--max-accuracy-drop", "100", "--calib-size", "8"]
    )
    assert exported.exit_code == 0, exported.output
    assert Path(run / "model.int8.onnx").stat().st_size < Path(run / "model.onnx").stat().st_size / 3
