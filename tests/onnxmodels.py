"""Tiny edgecnn ONNX models built directly with onnx.helper: inference tests without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.onnxfile import set_contract


def mean_colour_model(path: Path, labels=("red", "green", "blue"), size: int = 16, channels: int = 3) -> Path:
    """A model whose class is the dominant colour channel: softmax of per-channel means / 8.

    The answer is predictable, so tests can check labels and confidences exactly.
    """
    n = len(labels)
    weight = np.zeros((channels, n), np.float32)
    for i in range(min(channels, n)):
        weight[i, i] = 1.0 / 8.0
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n])],
        initializer=[
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    set_contract(
        model, ModelContract(labels=tuple(labels), input=InputSpec.square(size, channels), arch="test")
    )
    onnx.save(model, str(path))
    return path


def solid(colour: tuple[int, int, int], size: int = 20) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = colour
    return img
