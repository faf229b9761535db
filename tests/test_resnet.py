"""The residual CNN from scratch (``--arch resnet``): its layout and depth, blocks that start as the identity,
the option checks, and training and export through the same gates as every model."""

import json

import numpy as np
import pytest
from test_backbones import check_exported, export_run
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError
from edgecnn.training.backbones import build_model
from edgecnn.training.config import TrainConfig
from edgecnn.training.models import RESNET_DEPTH, build_resnet

runner = CliRunner()


def layers_of(model, kind):
    return [layer for layer in model.layers if type(layer).__name__ == kind]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_four_stages_of_depth_blocks_halving_the_side(depth):
    model = build_resnet(InputSpec.square(64), 3, base_filters=8, depth=depth).model
    assert len(layers_of(model, "Add")) == 4 * depth
    # A stem, two convolutions per block, and a 1x1 shortcut where a stage changes width or side.
    assert len(layers_of(model, "Conv2D")) == 1 + 8 * depth + 3
    sides = [model.get_layer(f"stage{s}_block{depth}_out").output.shape[1:] for s in range(1, 5)]
    assert sides == [(32, 32, 8), (16, 16, 16), (8, 8, 32), (4, 4, 64)]
    assert model.output.shape[1:] == (3,)


def test_depth_and_width_set_the_size():
    spec = InputSpec.square(32)
    params = {
        (width, depth): build_resnet(spec, 2, base_filters=width, depth=depth).model.count_params()
        for width, depth in [(8, 1), (8, 2), (16, 2)]
    }
    assert params[(8, 1)] < params[(8, 2)] < params[(16, 2)]
    assert 3.5 < params[(16, 2)] / params[(8, 2)] < 4.5  # weights grow with the square of the width
    default = build_model("resnet", spec, 2)
    assert len(layers_of(default.model, "Add")) == 4 * RESNET_DEPTH


def test_every_block_starts_as_the_identity():
    """The last batch-norm of each block starts at zero, so a fresh block passes its shortcut through: the
    identity where the block keeps width and side, the 1x1 projection where it halves the side."""
    import keras

    model = build_resnet(InputSpec.square(32), 2, base_filters=8, depth=2).model
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    for name, shortcut in [
        ("stage1_block2", "stage1_block1_out"),  # same width and side: the identity
        ("stage2_block1", "stage2_block1_shortcut_bn"),  # halves the side: the 1x1 projection
    ]:
        probe = keras.Model(
            model.input, [model.get_layer(shortcut).output, model.get_layer(f"{name}_out").output]
        )
        before, after = (np.asarray(t) for t in probe(x, training=False))
        np.testing.assert_allclose(after, np.maximum(before, 0), atol=1e-6)
        assert np.abs(before).max() > 0


def test_depth_is_checked(tmp_path):
    assert TrainConfig(data_dir=tmp_path, arch="resnet").depth is None  # RESNET_DEPTH when built
    assert TrainConfig(data_dir=tmp_path, arch="resnet", depth=3).depth == 3
    with pytest.raises(ConfigError, match="--depth applies to --arch resnet only, got --arch cnn"):
        TrainConfig(data_dir=tmp_path, arch="cnn", depth=2)
    for bad in (0, 9):
        with pytest.raises(ConfigError, match=f"--depth must be between 1 and 8 blocks per stage, got {bad}"):
            TrainConfig(data_dir=tmp_path, arch="resnet", depth=bad)
    result = runner.invoke(app, ["train", str(tmp_path), "--arch", "mobilenetv3small", "--depth", "2"])
    assert result.exit_code == 2 and "--depth applies to --arch resnet only" in result.output
    assert "Traceback" not in result.output


def test_resnet_trains_and_exports_through_the_gates(tmp_path, synth_dir):
    from edgecnn.training.train import train

    run = tmp_path / "run"
    result = train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=run,
            arch="resnet",
            img_size=32,
            base_filters=8,
            depth=1,
            epochs=3,
            batch_size=16,
            precision="bf16",  # the float32 rebuild of a resnet, on any CPU (bf16 is emulated where not native)
            verbose=0,
        )
    )
    report = result.report
    assert report["arch"] == "resnet" and report["config"]["depth"] == 1 and report["epochs_run"] == 3
    assert report["precision"] == "mixed_bfloat16"
    assert json.loads((run / "report.json").read_text())["contract"]["arch"] == "resnet"
    check_exported(run, "resnet", export_run(run, synth_dir / "train"))
