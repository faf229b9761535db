"""Test-time augmentation inside the ONNX graph: every runtime gets it, without code.

``flip``: the graph runs the model on each image and its left-right mirror in one batch of 2N and averages the
two probability vectors. The model's own nodes are untouched: a Slice with step -1 along the width makes the
mirror, a Concat stacks both halves, and a Reshape to (2, N, classes) with a ReduceMean over the first axis
averages them. The cost is one extra image per image (the measured latency is in docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.conversion.graph import replace_field
from edgecnn.core.contract import INPUT_NAME, OUTPUT_NAME
from edgecnn.core.errors import ConfigError
from edgecnn.core.onnxfile import opset_of

TTA_MODES = ("none", "flip")


def check_tta(mode: str | None) -> str | None:
    """The contract value for a ``--tta`` choice: None for none.

    Raises:
        ConfigError: An unknown mode.
    """
    if mode in (None, "none"):
        return None
    if mode not in TTA_MODES:
        raise ConfigError(f"unknown --tta {mode!r}; choose from {', '.join(TTA_MODES)}")
    return mode


def add_flip_tta(proto: Any, classes: int) -> None:
    """Rewire a graph with input ``image`` (NHWC) and output ``probabilities`` to average image and mirror."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inner_in, inner_out = "edgecnn_tta_images", "edgecnn_tta_probabilities"
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                field[i] = {INPUT_NAME: inner_in, OUTPUT_NAME: inner_out}.get(name, name)

    def const(name: str, values: Any) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.asarray(values), name)
        )

    front = [
        const("edgecnn_tta_start", np.array([-1], np.int64)),
        const("edgecnn_tta_end", np.array([np.iinfo(np.int64).min], np.int64)),
        const("edgecnn_tta_axis", np.array([2], np.int64)),  # NHWC width
        const("edgecnn_tta_step", np.array([-1], np.int64)),
        helper.make_node(
            "Slice",
            [INPUT_NAME, "edgecnn_tta_start", "edgecnn_tta_end", "edgecnn_tta_axis", "edgecnn_tta_step"],
            ["edgecnn_tta_mirror"],
        ),
        helper.make_node("Concat", [INPUT_NAME, "edgecnn_tta_mirror"], [inner_in], axis=0),
    ]
    back = [
        const("edgecnn_tta_shape", np.array([2, -1, classes], np.int64)),
        helper.make_node("Reshape", [inner_out, "edgecnn_tta_shape"], ["edgecnn_tta_pairs"]),
    ]
    if opset_of(proto) >= 18:  # ReduceMean takes its axes as an input from opset 18
        back += [
            const("edgecnn_tta_mean_axes", np.array([0], np.int64)),
            helper.make_node(
                "ReduceMean", ["edgecnn_tta_pairs", "edgecnn_tta_mean_axes"], [OUTPUT_NAME], keepdims=0
            ),
        ]
    else:
        back.append(
            helper.make_node("ReduceMean", ["edgecnn_tta_pairs"], [OUTPUT_NAME], axes=[0], keepdims=0)
        )
    replace_field(graph.node, [*front, *graph.node, *back])
    del graph.value_info[:]  # shapes inside now have a batch of 2N; ONNX Runtime infers them again


def flip_average(forward: Any) -> Any:
    """A Keras-side forward function that does what ``add_flip_tta`` puts in the graph (for the parity gate)."""

    def averaged(batch: Any, training: bool = False) -> np.ndarray:
        batch = np.asarray(batch)
        plain = np.asarray(forward(batch, training=training))
        mirror = np.asarray(forward(np.ascontiguousarray(batch[:, :, ::-1]), training=training))
        return (plain + mirror) / 2

    return averaged
