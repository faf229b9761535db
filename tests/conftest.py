"""Shared fixtures: a tiny generated dataset, a tiny trained model (built once per session)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgecnn.training.synthetic import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
TINY_SIZE = 32


def shared_dataset(name: str) -> Path:
    """A real dataset beside the repository, or a clean skip when it is absent (a user's fresh clone)."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name} not present beside the repository")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x (24 train + 8 val) generated 48 px JPEGs in a train/ val/ layout."""
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, per_class={"train": 24, "val": 8}, size=48, seed=1)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Path:
    """A tiny CNN trained for a few epochs on the generated data; returns its run folder."""
    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=run,
            arch="cnn",
            img_size=TINY_SIZE,
            epochs=3,
            batch_size=16,
            base_filters=8,
            precision="fp32",  # the same arithmetic on every CPU (auto picks bf16 where the CPU has it)
            verbose=0,
        )
    )
    return run


class LogLines(logging.Handler):
    """Collects the library's progress lines (the ``edgecnn`` logger) while attached; optionally calls back."""

    def __init__(self, callback=None) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if self.callback is not None:
            self.callback(record.getMessage())


@pytest.fixture()
def log_lines():
    """The ``edgecnn`` logger's lines during the test (a list that fills as they come)."""
    handler = LogLines()
    logger = logging.getLogger("edgecnn")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="session")
def exported(trained_run: Path) -> tuple[Path, Path]:
    """The tiny run exported to fp32 and int8 through the CLI; returns (fp32, int8) paths.

    The tiny model is at chance accuracy, so its accuracy on a few images is a coin flip: the budget is
    opened here so that every test using the files can run. The gate itself is decided end to end in
    tests/test_review_export.py, on images whose fp32 accuracy is known and with an int8 model known to be
    wrong.
    """
    from typer.testing import CliRunner

    from edgecnn.cli import app

    result = CliRunner().invoke(
        app, ["export", str(trained_run), "--int8", "--max-accuracy-drop", "100", "--json"]
    )
    assert result.exit_code == 0, result.output
    return trained_run / "model.onnx", trained_run / "model.int8.onnx"


def lite_state(arch, seed=0, include_top=False):
    """A state dict of ``arch``'s shapes with weights that keep activations in a sensible range."""
    from edgecnn.training import efficientnet_lite as lite

    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in lite.torch_shapes(arch, include_top).items():
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            value = rng.normal(0, 0.2, shape)
        elif len(shape) == 1:  # BatchNormalization's scale
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        tensors[name] = value.astype(np.float32)
    return tensors


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright, one per test module; skipped without either."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (dev extra)")
    from webpage import chromium_path

    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium browser (apt-get install chromium)")
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=executable, args=["--no-sandbox"], timeout=60_000)
    except Error as exc:
        manager.stop()
        pytest.skip(f"chromium does not start here: {str(exc).splitlines()[0]}")
    yield browser
    browser.close()
    manager.stop()


def wait_for(condition, seconds=5.0):
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
