"""int8 on x86 CPUs without VNNI: ONNX Runtime's kernels there add u8 x s8 products in pairs into 16 bits and
saturate with 8-bit weights; 7-bit weights (``--reduce-range``) do not. Which CPUs, what export does about it,
what the contract records, and what the predictor says.

The saturation itself is shown on an emulated Haswell (AVX2, no VNNI) where Debian's ``qemu-user`` is
installed: the same graph gives the exact answer natively (where this CPU has VNNI) and a clipped one there.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core import cpuinfo
from edgecnn.core.errors import ConfigError
from edgecnn.core.onnxfile import load_onnx, read_contract

runner = CliRunner()


@pytest.mark.parametrize(
    "flags, saturates",
    [
        ({"sse4_2", "avx2", "fma"}, True),  # Haswell to Skylake client
        ({"avx2", "avx512f", "avx512bw"}, True),  # Skylake-SP: AVX-512 without VNNI
        ({"avx2", "avx512f", "avx512_vnni"}, False),  # Cascade Lake and later, Zen 4
        ({"avx2", "avx_vnni"}, False),  # Alder Lake
        ({"avx2", "amx_int8", "avx512_vnni"}, False),  # Sapphire Rapids
        ({"fp", "asimd", "asimddp"}, False),  # Arm: its kernels widen before they add
        ({"fp", "asimd"}, False),
        (set(), False),  # unknown: no claim
    ],
)
def test_which_cpus_saturate(flags, saturates):
    assert cpuinfo.int8_saturates(flags) is saturates


def test_auto_follows_the_exporting_cpu(monkeypatch):
    from edgecnn.conversion.convert import resolve_reduce_range

    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: True)
    assert resolve_reduce_range("auto") is True
    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: False)
    assert resolve_reduce_range("auto") is False
    assert resolve_reduce_range("on") is True and resolve_reduce_range("off") is False
    with pytest.raises(ConfigError, match="--reduce-range must be auto, on or off, got 'yes'"):
        resolve_reduce_range("yes")


def weight_codes(model):
    """The int8 codes of every quantised convolution or dense weight in a QDQ model."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    codes = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            array = numpy_helper.to_array(inits[node.input[0]])
            if array.dtype == np.int8 and array.ndim >= 2:
                codes.append(array)
    return codes


def test_reduce_range_on_writes_seven_bit_weights_and_says_so(trained_run, tmp_path, monkeypatch):
    from edgecnn.runtime.predictor import Predictor

    paths = {}
    for choice in ("on", "off"):
        paths[choice] = tmp_path / f"{choice}.int8.onnx"
        args = ["export", str(trained_run), "--int8", "--int8-output", str(paths[choice]), "--output"]
        args += [str(tmp_path / "m.onnx"), "--reduce-range", choice, "--max-accuracy-drop", "100", "--force"]
        result = runner.invoke(app, [*args, "--calib-size", "16", "--json"])
        assert result.exit_code == 0, result.output
    seven, eight = load_onnx(paths["on"]), load_onnx(paths["off"])
    assert read_contract(seven).quantization["reduce_range"] is True
    assert read_contract(eight).quantization["reduce_range"] is False
    assert max(np.abs(c.astype(int)).max() for c in weight_codes(seven)) <= 64
    assert max(np.abs(c.astype(int)).max() for c in weight_codes(eight)) == 127

    # The probabilities stay float: not on the 1/255 grid a quantised softmax would put them on.
    x = np.random.default_rng(0).uniform(0, 255, (8, *read_contract(seven).input.shape)).astype(np.float32)
    probs = Predictor(paths["on"], provider="cpu").predict_batch(x)
    assert np.abs(probs * 255 - np.round(probs * 255)).max() > 1e-3
    softmax = next(n for n in seven.graph.node if n.op_type == "Softmax")
    assert softmax.output[0] == seven.graph.output[0].name

    # On a CPU that saturates, the 8-bit file gets advice and the 7-bit one none.
    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: True)
    advised = Predictor(paths["off"], provider="cpu").info.advice
    assert advised and "--reduce-range on" in advised
    assert not Predictor(paths["on"], provider="cpu").info.advice
    monkeypatch.setattr(cpuinfo, "int8_saturates", lambda flags=None: False)
    assert not Predictor(paths["off"], provider="cpu").info.advice


SATURATION = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from onnx import TensorProto as T, helper as h, numpy_helper as nh

def matmul(weight):
    k = 64
    nodes = [
        h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        h.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
        h.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    inits = [
        nh.from_array(np.array(1.0, np.float32), "xs"), nh.from_array(np.array(0, np.int8), "xz"),
        nh.from_array(np.full((k, 8), weight, np.int8), "w"),
        nh.from_array(np.array(1.0, np.float32), "ws"), nh.from_array(np.array(0, np.int8), "wz"),
    ]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [4, k])],
                         [h.make_tensor_value_info("y", T.FLOAT, [4, 8])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(session.run(None, {"x": np.full((4, k), 127.0, np.float32)})[0][0, 0])

print(json.dumps({"8-bit": matmul(127), "7-bit": matmul(63)}))
"""


def run_saturation(prefix):
    done = subprocess.run(
        [*prefix, sys.executable, "-c", SATURATION], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs Debian's qemu-user")
@pytest.mark.skipif(not cpuinfo.VNNI_FLAGS & cpuinfo.cpu_flags(), reason="the native run needs a VNNI CPU")
def test_eight_bit_weights_saturate_on_avx2_without_vnni_and_seven_do_not():
    exact = {"8-bit": 127.0 * 127 * 64, "7-bit": 127.0 * 63 * 64}
    assert run_saturation([]) == exact  # VNNI: exact either way
    haswell = run_saturation(["qemu-x86_64", "-cpu", "Haswell"])
    assert haswell["7-bit"] == exact["7-bit"]
    assert abs(haswell["8-bit"] - exact["8-bit"]) > 0.5 * exact["8-bit"]  # clipped, not rounded
