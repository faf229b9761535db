"""Image classifiers as other tools write them, built here: the inputs of the tests of ``edgecnn adopt``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
COLOURS = {"red": (200, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 210)}


def colour_model_nchw(
    path: Path,
    size: int = 32,
    batch: int | str = 1,
    input_name: str = "input",
    output_name: str = "logits",
    reshape_to_batch_one: bool = False,
    extra_output: bool = False,
) -> Path:
    """An NCHW float32 classifier of the dominant colour (red, green, blue) that expects ImageNet mean/std
    normalised input and outputs logits: a torchvision model as ``torch.onnx.export`` writes it (batch 1 when
    exported without ``dynamic_axes``)."""
    rng = np.random.default_rng(7)
    conv = (np.eye(3, dtype=np.float32) + rng.normal(0, 0.05, (3, 3)).astype(np.float32)).reshape(3, 3, 1, 1)
    tensors = {
        "conv_w": conv,
        "conv_b": np.zeros(3, np.float32),
        "fc_w": (4 * np.eye(3) + rng.normal(0, 0.1, (3, 3))).astype(np.float32),
        "fc_b": np.zeros(3, np.float32),
    }
    if reshape_to_batch_one:
        tensors["shape"] = np.array([1, -1], np.int64)
    flatten = (
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"])
        if reshape_to_batch_one
        else helper.make_node("Flatten", ["pooled"], ["flat"], axis=1)
    )
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
        flatten,
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], [output_name], transB=1),
    ]
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("relu", TensorProto.FLOAT, [batch, 3, size, size]))
    graph = helper.make_graph(
        nodes,
        "colour_nchw",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, size, size])],
        outputs,
        initializer=[numpy_helper.from_array(v, k) for k, v in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def graph_model(
    path: Path, inputs: list, outputs: list, nodes: list, initializers=(), opset: int = 18
) -> Path:
    """Any small graph (for the shapes adoption must refuse, and the names and opsets it must handle)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8), str(path)
    )
    return path


def imagenet_input(pixels: np.ndarray) -> np.ndarray:
    """What a torchvision pipeline feeds the model: (x / 255 - mean) / std, NCHW, written out by hand."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def colour_folder(root: Path, per_class: int = 4, classes=tuple(COLOURS)) -> Path:
    """Class folders of noisy, non-square photos of each colour (JPEG and PNG)."""
    rng = np.random.default_rng(3)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = 40 + 7 * i, 56 + 5 * i
            noise = rng.integers(-30, 30, (h, w, 3))
            pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.{'jpg' if i % 2 else 'png'}")
    return root
