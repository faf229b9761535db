"""Pretrained backbones (MobileNetV3 Small/Large, EfficientNet-B0, VGG16, EfficientNet-Lite0/1/2): one table,
raw pixels in, ImageNet weights offline, freezing and fine-tuning, and the export path (parity within 1e-4,
int8) on tiny inputs.

There is no internet here: the ImageNet download is simulated by replacing Keras' ``get_file``, and every
model is built with ``weights="none"`` or with a weights file written by the test.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ConfigError, DependencyError
from edgecnn.core.onnxfile import load_onnx, op_counts, read_contract
from edgecnn.training.backbones import (
    ARCHITECTURES,
    BACKBONES,
    build_backbone,
    load_base,
    unfreeze_top,
)
from edgecnn.training.synthetic import write_dataset

runner = CliRunner()
NEW = ("mobilenetv3small", "mobilenetv3large", "efficientnetb0")
LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
LABELS = ("circle", "square", "triangle")
OFFLINE = "URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] Temporary failure"


def spatial(layer):
    """The side of a layer's 4-D output, or None."""
    shape = tuple(layer.output.shape)
    return shape[1] if len(shape) == 4 else None


def weights_file(tmp_path, arch, side=32):
    """A weights file of ``arch``'s base (untrained): a stand-in for ImageNet's. Keras' ``include_top=False``
    weights, or for EfficientNet-Lite a PyTorch legacy state dict stored transposed, as the published ones."""
    import keras

    if arch in LITE:
        from conftest import lite_state

        from edgecnn.training.torchfile import write_state_dict

        path = tmp_path / f"{arch}.pth"
        write_state_dict(path, lite_state(arch), transpose=True)
        return path

    backbone = BACKBONES[arch]
    constructor = getattr(keras.applications, backbone.constructor)
    base = constructor(include_top=False, weights=None, input_shape=(side, side, 3), **backbone.options)
    path = tmp_path / f"{arch}.weights.h5"
    base.save_weights(str(path))
    return path


def sharpen(built, seed=0):
    """Random BatchNormalization statistics and a sharp head, so that Keras and ONNX outputs are not uniform."""
    rng = np.random.default_rng(seed)
    for layer in built.base.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0, 0.1, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
                ]
            )
    head = built.model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 20, bias])


def test_every_arch_is_in_the_table():
    import keras

    from edgecnn.training.efficientnet_lite import VARIANTS

    assert list(ARCHITECTURES) == ["cnn", "resnet", *BACKBONES]
    assert set(NEW) | {"vgg16"} | set(LITE) == set(BACKBONES)
    assert set(LITE) == set(VARIANTS)
    for name, backbone in BACKBONES.items():
        assert name in LITE or callable(getattr(keras.applications, backbone.constructor))


@pytest.mark.parametrize("arch", [*NEW, "vgg16"])
def test_offline_imagenet_names_the_file_keras_looks_for(arch, monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    asked = []

    def no_network(fname, *args, **kwargs):
        asked.append(fname)
        raise Exception(OFFLINE)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(DependencyError) as info:
        build_backbone(arch, InputSpec.square(32), 2, weights="imagenet")
    message = str(info.value)
    name = BACKBONES[arch].weights_file
    assert asked == [name]  # the table names the very file Keras downloads and caches
    assert str(tmp_path / "models" / name) in message and "URL fetch failure" in message
    assert "--weights PATH" in message and "--weights none" in message


@pytest.mark.parametrize("arch", [*NEW, "vgg16", *LITE])
def test_fine_tuning_starts_at_the_last_stage_and_keeps_batchnorm_frozen(arch, tmp_path):
    import keras

    side = 64
    built = build_backbone(arch, InputSpec.square(side), 2, weights=str(weights_file(tmp_path, arch, side)))
    head = {"probabilities"} if arch in LITE else {"dense", "probabilities"}
    assert {w.path.split("/")[0] for w in built.model.trainable_weights} == head  # the base starts frozen
    assert built.fine_tune_from == BACKBONES[arch].fine_tune_from

    unfreeze_top(built)
    layers = built.base.layers
    start = [layer.name for layer in layers].index(built.fine_tune_from)
    final = spatial(layers[-1])
    # The boundary opens the last resolution stage: it sees twice the final side, nothing before it the final.
    assert spatial(layers[start]) == 2 * final
    assert all(spatial(layer) != final for layer in layers[:start])
    for i, layer in enumerate(layers):
        batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == (i >= start and not batchnorm), layer.name
    assert any(layer.trainable_weights for layer in layers[start:])


@pytest.mark.parametrize("arch", [*NEW, "efficientnet-lite0"])
def test_from_scratch_trains_the_whole_base(arch):
    built = build_backbone(arch, InputSpec.square(32), 2, weights="none")
    assert built.base.trainable and built.fine_tune_from is None
    before = len(built.model.trainable_weights)
    unfreeze_top(built)  # nothing was frozen: a no-op
    assert len(built.model.trainable_weights) == before > 4


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize(
    ("arch", "scale", "offset"), [("mobilenetv3small", 1 / 127.5, -1.0), ("efficientnetb0", 1 / 255, 0.0)]
)
def test_the_graph_takes_raw_pixels(arch, scale, offset, channels):
    import keras

    built = build_backbone(arch, InputSpec.square(32, channels=channels), 2, weights="none")
    first = built.base.layers[1]  # the base's own preprocessing layer
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, channels)).astype(np.float32)
    rgb = x
    if channels == 1:
        grey = keras.Model(built.model.input, built.model.get_layer("grey_to_rgb").output)
        rgb = np.asarray(grey(x))
        assert np.array_equal(rgb, np.repeat(x, 3, axis=-1))
    assert np.allclose(np.asarray(first(rgb)), rgb * scale + offset, atol=1e-6)
    assert "in graph" in built.normalization


def test_efficientnet_weights_file_gives_the_model_keras_downloads(monkeypatch, tmp_path):
    """Keras adds a Rescaling layer for its own download but not for a local copy of the same file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    spec = InputSpec.square(32)
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=spec.shape)
    rng = np.random.default_rng(3)
    for layer in source.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
        if type(layer).__name__ == "Normalization":  # ImageNet statistics, as in Keras' file
            layer.adapt_mean.assign(np.array([0.485, 0.456, 0.406], np.float32))
            layer.adapt_variance.assign(np.array([0.229, 0.224, 0.225], np.float32))
    path = tmp_path / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(path))

    download = keras.applications.EfficientNetB0(
        include_top=False, weights="imagenet", input_shape=spec.shape
    )
    ours_download = load_base("efficientnetb0", spec, "imagenet")
    ours_file = load_base("efficientnetb0", spec, str(path))
    x = rng.uniform(0, 255, (2, *spec.shape)).astype(np.float32)
    expected = np.asarray(download(x, training=False))

    def off(model):
        return np.abs(np.asarray(model(x, training=False)) - expected).max() / np.abs(expected).max()

    plain = keras.applications.EfficientNetB0(include_top=False, weights=str(path), input_shape=spec.shape)
    assert off(plain) > 0.05  # Keras' own model from the file differs from its download: the test can tell
    for ours in (ours_download, ours_file):
        assert not any(type(layer).__name__ == "Normalization" for layer in ours.layers)
        assert off(ours) < 1e-4


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, before it gives up on the file
def test_a_weights_file_for_another_base_is_a_config_error(tmp_path):
    path = weights_file(tmp_path, "mobilenetv3small")
    with pytest.raises(ConfigError, match="not EfficientNetB0 include_top=False weights"):
        build_backbone("efficientnetb0", InputSpec.square(32), 2, weights=str(path))
    with pytest.raises(ConfigError, match="no such file"):
        build_backbone("mobilenetv3small", InputSpec.square(32), 2, weights=str(tmp_path / "no.h5"))


def test_defaults_and_option_checks(tmp_path):
    from edgecnn.training.config import TrainConfig

    expected = {
        "cnn": (112, 1e-3),
        "resnet": (112, 1e-3),
        "mobilenetv3small": (224, 1e-3),
        "mobilenetv3large": (224, 1e-3),
        "efficientnetb0": (224, 1e-3),
        "vgg16": (224, 5e-4),
        "efficientnet-lite0": (224, 1e-3),
        "efficientnet-lite1": (240, 1e-3),
        "efficientnet-lite2": (260, 1e-3),
    }
    for arch, (size, lr) in expected.items():
        config = TrainConfig(data_dir=tmp_path, arch=arch)
        assert (config.img_size, config.learning_rate) == (size, lr), arch
    assert TrainConfig(data_dir=tmp_path, arch="efficientnetb0", fine_tune_epochs=3, weights="w.h5").weights
    for bad in ({"fine_tune_epochs": 2}, {"weights": "w.h5"}):
        with pytest.raises(ConfigError, match="mobilenetv3small, .*, vgg16, .* and efficientnet-lite2"):
            TrainConfig(data_dir=tmp_path, arch="cnn", **bad)
    with pytest.raises(ConfigError, match="choose from cnn, resnet, mobilenetv3small"):
        TrainConfig(data_dir=tmp_path, arch="resnet50")


def export_run(run, calib, *extra):
    """``edgecnn export RUN --int8`` without the accuracy budget; returns the --json figures."""
    args = ["export", str(run), "--int8", "--no-accuracy-gate", "--calib-size", "8", "--json", *extra]
    if calib is not None:
        args += ["--calib", str(calib)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def check_exported(run, arch, figures):
    assert figures["fp32"]["parity_images"] > 0 and figures["fp32"]["parity_max_abs_diff"] <= 1e-4
    fp32, int8 = load_onnx(run / "model.onnx"), load_onnx(run / "model.int8.onnx")
    assert read_contract(fp32).arch == read_contract(int8).arch == arch
    assert [i.name for i in fp32.graph.input] == ["image"]  # no captured tensors left as extra inputs
    ops = op_counts(int8)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    from edgecnn.runtime.predictor import Predictor

    x = np.random.default_rng(1).uniform(0, 255, (3, *read_contract(int8).input.shape)).astype(np.float32)
    probs = Predictor(run / "model.int8.onnx", provider="cpu").predict_batch(x)  # outputs in steps of 1/255
    assert probs.shape == (3, len(read_contract(int8).labels)) and np.allclose(probs.sum(1), 1, atol=0.02)


@pytest.mark.parametrize("arch", [*NEW, "efficientnet-lite0"])
def test_export_parity_and_int8(arch, tmp_path, synth_dir):
    """Built (random BatchNormalization statistics, a sharp head), saved as a run, exported through the gates."""
    spec = InputSpec.square(32)
    built = build_backbone(arch, spec, len(LABELS), weights="none")
    sharpen(built)
    run = tmp_path / arch
    run.mkdir()
    built.model.save(run / "model.keras")
    contract = ModelContract(labels=LABELS, input=spec, arch=arch, normalization=built.normalization)
    (run / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    figures = export_run(run, synth_dir / "train")
    check_exported(run, arch, figures)


def train_tiny(tmp_path, arch, weights, log_lines=None):
    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train

    data = tmp_path / "d"
    write_dataset(data, classes=("circle", "square"), per_class=6, size=32, seed=3)
    run = tmp_path / "run"
    result = train(
        TrainConfig(
            data_dir=data,
            out_dir=run,
            arch=arch,
            weights=weights,
            img_size=32,
            epochs=1,
            fine_tune_epochs=1,
            batch_size=4,
            val_split=0.34,
            augment=False,
            verbose=0,
        )
    )
    assert result.report["arch"] == arch and result.report["epochs_run"] == 2
    return run


def test_mobilenetv3small_trains_fine_tunes_and_exports(tmp_path, log_lines):
    """The transfer path end to end: frozen base (weights from a file), fine-tuning, export, int8."""
    run = train_tiny(tmp_path, "mobilenetv3small", str(weights_file(tmp_path, "mobilenetv3small")))
    assert any("from expanded_conv_8_expand on, BatchNormalization frozen" in line for line in log_lines)
    contract = json.loads((run / "report.json").read_text())["contract"]
    assert "127.5" in contract["normalization"]
    check_exported(run, "mobilenetv3small", export_run(run, None))


def test_lite0_trains_fine_tunes_and_exports_with_its_weights_recorded(tmp_path, log_lines):
    """EfficientNet-Lite0 from a .pth file: frozen base, fine-tuning from its last stage, the file's SHA-256 in
    the report and the contract (never its local path in the contract), export and int8."""
    from edgecnn.core.onnxfile import file_sha256 as sha256_of

    weights = weights_file(tmp_path, "efficientnet-lite0")
    run = train_tiny(tmp_path, "efficientnet-lite0", str(weights))
    assert any("from block11_expand_conv on, BatchNormalization frozen" in line for line in log_lines)
    report = json.loads((run / "report.json").read_text())
    assert report["pretrained"]["sha256"] == sha256_of(weights) and report["pretrained"]["file"] == str(
        weights
    )
    assert report["contract"]["training"]["pretrained"] == {
        "weights": "file",
        "sha256": sha256_of(weights),
        "licence": "Apache-2.0",
    }
    assert "(x - 127) / 128" in report["contract"]["normalization"]
    check_exported(run, "efficientnet-lite0", export_run(run, None))


@pytest.mark.slow
@pytest.mark.parametrize("arch", NEW)
def test_from_scratch_trains_and_exports(arch, tmp_path):
    run = train_tiny(tmp_path, arch, "none")
    check_exported(run, arch, export_run(run, None))


def test_the_cli_offers_every_architecture_the_library_builds():
    from edgecnn.cli.training import Arch
    from edgecnn.training.backbones import ARCHITECTURES

    assert {a.value for a in Arch} == set(ARCHITECTURES)


def test_from_scratch_batchnormalization_follows_its_statistics_in_tens_of_steps():
    """Keras' ImageNet momentum (0.999 in MobileNetV3) would keep the moving statistics near their initial
    values for epochs on a small dataset: validation would sit at chance."""
    from edgecnn.core.contract import InputSpec
    from edgecnn.training.backbones import BN_MOMENTUM_FROM_SCRATCH, build_backbone
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    built = build_backbone("mobilenetv3small", InputSpec.square(32), 2, weights="none")
    momenta = {
        layer.momentum for layer in built.base.layers if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {BN_MOMENTUM_FROM_SCRATCH}
