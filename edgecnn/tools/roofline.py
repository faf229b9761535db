"""The roofline of ``edgecnn benchmark``: work counted from a graph, and the machine's attainable throughput.

``count_macs`` counts the multiply-accumulates a model does per image from its ONNX graph (QDQ int8 models
count the same as their fp32 source); ``measure_peak`` times a large matrix product through the same ONNX
Runtime, so a row's achieved G(FL)OP/s can be read as a share of what this machine really does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.core.errors import ConfigError, ModelFileError, ProviderError

PEAK_KINDS = ("fp32", "int8")
#: Initialisers larger than this are given to shape inference as typed inputs instead of data.
_INLINE_LIMIT = 4096
_PEAK_SIZES = (1024, 2048, 4096)
_PEAK_MIN_SECONDS = 0.01  # a matrix product faster than this is too small to be compute bound


# ---------------------------------------------------------------------------------------------------------
# Multiply-accumulates counted from the graph


def count_macs(model_proto: Any) -> int:
    """Multiply-accumulates per image of Conv, ConvTranspose, MatMul and Gemm nodes and their int8 forms.

    Shapes come from ONNX shape inference with the batch dimension fixed to 1, so strides, padding,
    dilations and groups are all accounted for. QDQ models count the same as their float source, because
    their DequantizeLinear nodes feed float Conv/MatMul nodes of the same shapes.

    Raises:
        ModelFileError: Shape inference fails, or cannot determine the shape of a counted node.
    """
    shapes, batch = _inferred_shapes(model_proto)
    total = 0
    for node in model_proto.graph.node:
        rule = _MAC_RULES.get(node.op_type)
        if rule is not None:
            total += rule(node, shapes)
    return total // batch


Shapes = dict[str, list[int | None]]


def _inferred_shapes(model: Any) -> tuple[Shapes, int]:
    """Every tensor's shape after shape inference, and the batch size the shapes are for."""
    import onnx
    from onnx import helper

    init_names = {init.name for init in model.graph.initializer}
    small, typed = [], []
    for init in model.graph.initializer:
        if math.prod(init.dims) <= _INLINE_LIMIT and init.data_location != onnx.TensorProto.EXTERNAL:
            small.append(init)  # small constants (Reshape targets, axes) drive shape inference
        else:
            typed.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    typed_names = {t.name for t in typed}
    graph_inputs = []
    batch = None
    for value in model.graph.input:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        dims = copy.type.tensor_type.shape.dim
        if value.name not in init_names and len(dims):
            if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                batch = batch or int(dims[0].dim_value)
            else:
                dims[0].Clear()
                dims[0].dim_value = 1
                batch = batch or 1
        if value.name not in typed_names:
            graph_inputs.append(copy)
    graph = helper.make_graph(
        list(model.graph.node),
        model.graph.name or "graph",
        [*graph_inputs, *typed],
        list(model.graph.output),
        initializer=small,
    )
    light = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    light.functions.extend(model.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            light, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception as exc:  # onnx raises InferenceError, ValueError or RuntimeError for broken graphs
        raise ModelFileError(f"cannot count MACs: shape inference failed ({first_line(exc)})") from None
    shapes: Shapes = {init.name: [int(d) for d in init.dims] for init in model.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [
                int(d.dim_value) if d.HasField("dim_value") else None for d in tensor.shape.dim
            ]
    return shapes, batch or 1


def _shape(shapes: Shapes, name: str, node: Any) -> list[int]:
    shape = shapes.get(name)
    if shape is None or any(d is None for d in shape):
        raise ModelFileError(
            f"cannot count MACs: the shape of {name!r} ({node.op_type} node {node.name or '(unnamed)'}) "
            "is unknown after shape inference"
        )
    return [int(d) for d in shape if d is not None]


def _conv_rule(weight_index: int) -> Callable[[Any, Shapes], int]:
    """Conv-like nodes: every output value takes (input channels / group) x kernel area MACs."""

    def rule(node: Any, shapes: Shapes) -> int:
        out = _shape(shapes, node.output[0], node)
        weight = _shape(shapes, node.input[weight_index], node)
        return math.prod(out) * math.prod(weight[1:])

    return rule


def _conv_transpose_rule(node: Any, shapes: Shapes) -> int:
    """ConvTranspose: every input value is spread over (output channels / group) x kernel area outputs."""
    return math.prod(_shape(shapes, node.input[0], node)) * math.prod(_shape(shapes, node.input[1], node)[1:])


def _matmul_rule(node: Any, shapes: Shapes) -> int:
    """MatMul-like nodes: every output value is a dot product over the last axis of the first operand."""
    out = _shape(shapes, node.output[0], node)
    return math.prod(out) * _shape(shapes, node.input[0], node)[-1]


def _gemm_rule(node: Any, shapes: Shapes) -> int:
    trans_a = next((int(a.i) for a in node.attribute if a.name == "transA"), 0)
    a = _shape(shapes, node.input[0], node)
    return math.prod(_shape(shapes, node.output[0], node)) * (a[0] if trans_a else a[-1])


_MAC_RULES: dict[str, Callable[[Any, Shapes], int]] = {
    "Conv": _conv_rule(1),
    "ConvInteger": _conv_rule(1),
    "QLinearConv": _conv_rule(3),
    "FusedConv": _conv_rule(1),
    "ConvTranspose": _conv_transpose_rule,
    "MatMul": _matmul_rule,
    "MatMulInteger": _matmul_rule,
    "QLinearMatMul": _matmul_rule,
    "Gemm": _gemm_rule,
}


# ---------------------------------------------------------------------------------------------------------
# The machine's attainable throughput


def measure_peak(
    ort: Any, kind: str, threads: int | None, seconds_budget: float, provider: str = "cpu"
) -> float:
    """Attainable GFLOP/s (fp32) or GOP/s (int8) of one large matrix product through ONNX Runtime.

    The product grows from 1024 to at most 4096 on a side until one run is long enough to be compute bound;
    the best of the runs that fit in ``seconds_budget`` (at least three) counts 2 x M x N x K operations.
    The int8 product is MatMulInteger with uint8 x int8 operands on the CPU (the operands its fastest
    kernels take) and int8 x int8 elsewhere. On a GPU the time includes copying the result to the host.

    Args:
        ort: The imported onnxruntime module.
        kind: "fp32" or "int8".
        threads: Intra-op threads (None: ONNX Runtime's default, as the predictor uses).
        seconds_budget: Roughly how long to spend.
        provider: Short provider name (cpu, cuda, tensorrt).

    Raises:
        ConfigError: Unknown kind.
        ProviderError: The provider cannot run the product.
    """
    from edgecnn.runtime.providers import PROVIDERS

    if kind not in PEAK_KINDS:
        raise ConfigError(f"unknown peak kind {kind!r}; choose from {', '.join(PEAK_KINDS)}")
    full = PROVIDERS.get(provider, provider)
    deadline = time.perf_counter() + seconds_budget
    for size in _PEAK_SIZES:
        session, feeds = _peak_session(ort, kind, size, threads, full)
        best = _best_time(session, feeds, deadline)
        if best >= _PEAK_MIN_SECONDS or time.perf_counter() >= deadline:
            break
    return 2.0 * size**3 / best / 1e9


def _peak_model(kind: str, size: int, provider: str) -> tuple[bytes, dict[str, np.ndarray]]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "fp32":
        a = rng.standard_normal((size, size)).astype(np.float32)
        b = rng.standard_normal((size, size)).astype(np.float32)
        op, out_type = "MatMul", TensorProto.FLOAT
    else:
        unsigned = provider == "CPUExecutionProvider"
        a = rng.integers(0, 128, (size, size)).astype(np.uint8 if unsigned else np.int8)
        b = rng.integers(-64, 64, (size, size)).astype(np.int8)
        op, out_type = "MatMulInteger", TensorProto.INT32
    a_type = helper.np_dtype_to_tensor_dtype(a.dtype)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "peak",
        [helper.make_tensor_value_info("a", a_type, [size, size])],
        [helper.make_tensor_value_info("y", out_type, [size, size])],
        initializer=[numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString(), {"a": a}


def _peak_session(
    ort: Any, kind: str, size: int, threads: int | None, provider: str
) -> tuple[Any, dict[str, np.ndarray]]:
    data, feeds = _peak_model(kind, size, provider)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own Fail/RuntimeException types
        raise ProviderError(f"cannot measure the {kind} peak on {provider}: {first_line(exc)}") from None
    if session.get_providers()[0] != provider:
        raise ProviderError(f"cannot measure the {kind} peak on {provider}: the session fell back to the CPU")
    return session, feeds


def _best_time(session: Any, feeds: dict[str, np.ndarray], deadline: float, min_runs: int = 3) -> float:
    """The fastest of at least ``min_runs`` runs (after one warm-up run), more while time is left."""
    try:
        session.run(None, feeds)
        best = math.inf
        runs = 0
        while runs < min_runs or (time.perf_counter() < deadline and runs < 50):
            start = time.perf_counter()
            session.run(None, feeds)
            best = min(best, time.perf_counter() - start)
            runs += 1
    except Exception as exc:  # ONNX Runtime raises its own Fail/RuntimeException types
        raise ProviderError(f"the peak measurement failed: {first_line(exc)}") from None
    return best


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type when it has none), for one-line reasons."""
    text = str(exc).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__
