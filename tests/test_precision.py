"""``--precision``: when mixed bfloat16 is chosen, that the layers really compute in it, and that the saved
model is float32 and exports through the same gates."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError
from edgecnn.training.backbones import build_model
from edgecnn.training.config import TrainConfig
from edgecnn.training.precision import as_float32, check, cpu_has_bf16, dtype_policy, resolve

runner = CliRunner()
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.fixture()
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / f"cpuinfo{len(list(tmp_path.iterdir()))}"
        path.write_text(text)
        return path

    return write


def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, tmp_path):
    assert cpu_has_bf16(cpuinfo(ZEN4)) and cpu_has_bf16(cpuinfo(SAPPHIRE_RAPIDS))
    assert not cpu_has_bf16(cpuinfo(ZEN3))
    assert not cpu_has_bf16(cpuinfo("processor\t: 0\n"))  # no flags line
    assert not cpu_has_bf16(tmp_path / "absent")  # not Linux


def test_auto_uses_bf16_only_from_scratch_on_a_cpu_that_has_it(cpuinfo):
    zen4 = cpuinfo(ZEN4)
    assert resolve("auto", "cnn", on_gpu=False, cpuinfo=zen4) == "mixed_bfloat16"
    assert resolve("auto", "resnet", on_gpu=False, cpuinfo=zen4) == "mixed_bfloat16"
    assert resolve("auto", "cnn", on_gpu=False, cpuinfo=cpuinfo(ZEN3)) == "float32"
    assert resolve("auto", "cnn", on_gpu=True, cpuinfo=cpuinfo(ZEN4)) == "float32"
    assert resolve("auto", "mobilenetv3small", on_gpu=False, cpuinfo=cpuinfo(ZEN4)) == "float32"
    assert resolve("bf16", "cnn", on_gpu=False, cpuinfo=cpuinfo(ZEN3)) == "mixed_bfloat16"  # asked: emulated
    assert resolve("fp32", "cnn", on_gpu=False, cpuinfo=cpuinfo(ZEN4)) == "float32"


def test_bad_precision_is_a_config_error(tmp_path):
    check("bf16", "resnet")
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, bf16, got 'fp16'"):
        TrainConfig(data_dir=tmp_path, precision="fp16")
    with pytest.raises(
        ConfigError, match="--precision bf16 applies to --arch cnn and resnet only, got --arch efficientnetb0"
    ):
        TrainConfig(data_dir=tmp_path, arch="efficientnetb0", precision="bf16")
    result = runner.invoke(app, ["train", str(tmp_path), "--arch", "vgg16", "--precision", "bf16"])
    assert result.exit_code == 2 and "applies to --arch cnn and resnet only" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_under_bf16_the_layers_compute_in_it_and_the_head_in_float32(arch):
    import keras

    with dtype_policy(keras, "mixed_bfloat16"):
        model = build_model(arch, InputSpec.square(32), 3, base_filters=8).model
    assert keras.config.dtype_policy().name == "float32"  # restored
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {layer.variable_dtype for layer in convs} == {"float32"}  # the weights stay float32
    head = model.get_layer("probabilities")
    assert head.compute_dtype == "float32"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    assert model(x).dtype == "float32"


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_the_float32_rebuild_carries_every_weight(arch):
    import keras

    spec = InputSpec.square(32)

    def build(dtype):
        with dtype_policy(keras, dtype):
            return build_model(arch, spec, 3, base_filters=8, seed=5)

    trained = build("mixed_bfloat16").model
    rng = np.random.default_rng(0)  # weights unlike the fresh build's (same seed), BatchNorm statistics too
    trained.set_weights(
        [
            (w * rng.uniform(0.8, 1.2, w.shape) + rng.normal(0, 0.01, w.shape)).astype(np.float32)
            for w in trained.get_weights()
        ]
    )
    rebuilt = as_float32(trained, build).model
    assert {layer.dtype_policy.name for layer in rebuilt.layers} == {"float32"}
    for ours, theirs in zip(rebuilt.weights, trained.weights, strict=True):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    logits_like = np.asarray(rebuilt(x)), np.asarray(trained(x))
    np.testing.assert_allclose(
        *logits_like, atol=0.05
    )  # the same network, bfloat16 against float32 arithmetic


def test_a_bf16_run_saves_a_float32_model_that_exports_through_the_gates(tmp_path, synth_dir):
    import keras
    from test_backbones import check_exported, export_run

    from edgecnn.training.train import train

    run = tmp_path / "run"
    result = train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=run,
            arch="cnn",
            img_size=32,
            base_filters=8,
            epochs=3,
            batch_size=16,
            precision="bf16",
            verbose=0,
        )
    )
    report = json.loads((run / "report.json").read_text())
    assert report["precision"] == "mixed_bfloat16" and report["config"]["precision"] == "bf16"
    assert "(trained in mixed_bfloat16)" in (run / "report.html").read_text()
    saved = keras.saving.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    # The reported accuracy is the float32 model's: the model that is saved and exported.
    import edgecnn

    assert edgecnn.evaluate(run / "model.keras", synth_dir).metrics.accuracy == result.report["val_accuracy"]
    check_exported(run, "cnn", export_run(run, synth_dir / "train"))
