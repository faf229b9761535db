"""Training on several devices: the CPU split into two logical devices stands in for two GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.core.errors import ConfigError
from edgecnn.training.devices import parse_devices

COLOURS = {"blue": (30, 40, 210), "green": (40, 200, 50), "red": (220, 30, 30)}


def colour_dataset(root: Path, per_class: int = 30, size: int = 32, seed: int = 0) -> Path:
    """Noisy images of three colours: a set a small CNN learns in a few epochs on one device or several."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = rng.normal(0, 40, (size, size, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
    return root


def test_devices_option_is_checked():
    assert parse_devices("auto") == "auto" and parse_devices("ALL") == "all" and parse_devices("2") == 2
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match="--devices"):
            parse_devices(bad)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train
    from edgecnn.conversion.convert import export_all
    data, out, devices = sys.argv[1], sys.argv[2], sys.argv[3]
    result = train(TrainConfig(data_dir=data, out_dir=out, arch="cnn", img_size=32, epochs=12, batch_size=8,
                               base_filters=8, augment=False, seed=3, devices=devices,
                               precision="fp32", verbose=0))
    exported = export_all(out, int8=True, max_accuracy_drop=5.0)
    print(json.dumps({"accuracy": result.metrics.accuracy, "devices": result.report["devices"],
                      "loss": result.report["val_loss"], "parity": exported.parity.max_abs_diff,
                      "int8": exported.int8.int8_accuracy}))
    """
)


def _train(data: Path, out: Path, devices: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), str(out), devices],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_logical_devices_train_like_one_and_export_through_the_gates(tmp_path):
    data = colour_dataset(tmp_path / "colours")
    one = _train(data, tmp_path / "one", "1")
    two = _train(data, tmp_path / "two", "2")
    assert one["devices"]["replicas"] == 1 and one["devices"]["global_batch"] == 8
    assert two["devices"]["replicas"] == 2 and two["devices"]["global_batch"] == 16
    assert len(two["devices"]["names"]) == 2 and all("CPU" in n for n in two["devices"]["names"])
    # Both converge on an easy set; the exported files pass the parity and int8 gates.
    assert one["accuracy"] >= 0.9 and two["accuracy"] >= 0.9, (one, two)
    assert np.isfinite(two["loss"]) and two["loss"] < 0.5
    assert two["parity"] < 1e-4 and two["int8"] >= two["accuracy"] - 0.05
