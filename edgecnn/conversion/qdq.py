"""One static QDQ int8 quantisation of a prepared graph, with ONNX Runtime's quantisation tools.

``quantize`` decides which quantisations to make (the calibration candidates, the per-layer fallback) and
checks them; this module makes one.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.calibration import CalibrationReader
from edgecnn.core.errors import DependencyError

logger = logging.getLogger(__name__)


def _quantization_api() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise DependencyError(f"int8 export needs onnxruntime's quantization tools ({exc})") from None
    return quantization


def preprocess_for_quantization(fp32_path: Path, out_path: Path) -> None:
    """ONNX Runtime's pre-processing (symbolic shape inference, graph clean-up), then a name for every unnamed
    node: ``nodes_to_exclude`` and the per-layer fallback name nodes, and an empty name would match them all."""
    import onnx

    q = _quantization_api()
    try:
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    except ImportError:  # sympy missing: shape inference still works without the symbolic pass
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    model = onnx.load(str(out_path))
    taken = {node.name for node in model.graph.node}
    unnamed = [node for node in model.graph.node if not node.name]
    for i, node in enumerate(unnamed):
        name = f"{node.op_type}_{i}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
    if unnamed:
        onnx.save(model, str(out_path))


def quantize_once(
    pre_path: Path,
    out_path: Path,
    calib: Sequence[np.ndarray],
    input_name: str,
    method: str,
    per_channel: bool,
    nodes_to_exclude: Sequence[str] = (),
    nodes_to_quantize: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    reduce_range: bool = False,
    activations: str = "uint8",
) -> None:
    """One static QDQ int8 quantisation: signed int8 weights, unsigned 8-bit activations (``activations``
    "int8" for signed ones: only the benchmark that compares the two uses it).

    Unsigned activations (ONNX Runtime's U8S8) run on its fastest x86 kernels: on a VNNI CPU the
    EfficientNet-Lite0 int8 model ran 2.0x as fast as fp32 at batch 8 with them, and 0.90x with signed
    activations (S8S8); both calibrations are asymmetric, so they hold the same 256 levels
    (docs/BENCHMARKS.md, "int8 of EfficientNet-Lite0 on the CPU").

    ``nodes_to_exclude`` keep fp32 weights; ``nodes_to_quantize``, when given, are the only nodes quantised;
    ``options`` are more of ONNX Runtime's ``extra_options``; ``reduce_range`` gives the weights 7 bits,
    which x86 CPUs without VNNI need (``core.cpuinfo.int8_saturates``).
    """
    q = _quantization_api()
    calibrate = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[method]
    extra: dict[str, Any] = {"CalibTensorRangeSymmetric": False, **(options or {})}
    # The probabilities stay float: quantised, they would come in steps of 1/255, and of 1,000 classes most
    # would read 0 (top-k ties, --min-confidence on a coarse grid). A softmax costs nothing next to the network.
    import onnx

    nodes = onnx.load(str(pre_path), load_external_data=False).graph.node
    softmax = [n.name for n in nodes if n.op_type == "Softmax" and n.name]
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    # ONNX Runtime's entropy and percentile calibrators print() their progress: kept off stdout, which
    # belongs to the program (`edgecnn export --json` writes its figures there).
    with contextlib.redirect_stdout(io.StringIO()) as chatter:
        q.quantize_static(
            str(pre_path),
            str(out_path),
            CalibrationReader(input_name, calib),
            quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8 if activations == "uint8" else q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=calibrate,
            nodes_to_exclude=[*nodes_to_exclude, *softmax],
            nodes_to_quantize=list(nodes_to_quantize) or None,
            reduce_range=reduce_range,
            extra_options=extra,
        )
    for line in chatter.getvalue().splitlines():
        logger.debug(line)
