"""Keras to ONNX through tf2onnx (``from_function``: ``from_keras`` does not work with Keras 3), for the
models edgecnn trained and for those it did not."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgecnn.conversion.graph import replace_field
from edgecnn.core.errors import ExportError
from edgecnn.core.onnxfile import name_batch_dimension


def keras_to_onnx(
    model: Any, shape: list[int | None], input_name: str, output_name: str, opset: int, what: str
) -> Any:
    """An inference-only Keras model as an ONNX ModelProto with the given tensor names and a dynamic batch.

    Raises:
        ExportError: tf2onnx cannot convert the model, or the graph has other inputs or outputs.
    """
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec(shape, tf.float32, name=input_name)]

    @tf.function(input_signature=spec)
    def forward(x: Any) -> dict[str, Any]:
        return {output_name: model(x, training=False)}

    try:
        with quiet_tf2onnx():
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many kinds for unsupported graphs
        raise ExportError(
            f"tf2onnx could not convert {what} at opset {opset}: {str(exc).splitlines()[0][:200]}"
        ) from None
    name_batch_dimension(proto)
    fold_captured_tensors(proto, forward.get_concrete_function())
    names_in = [i.name for i in proto.graph.input]
    names_out = [o.name for o in proto.graph.output]
    if names_in != [input_name] or names_out != [output_name]:
        raise ExportError(
            f"unexpected tensor names after converting {what}: inputs {names_in}, outputs {names_out}"
        )
    return proto


@contextlib.contextmanager
def quiet_tf2onnx() -> Iterator[None]:
    """tf2onnx logs warnings with whole tracebacks for optimisations it skips (a MobileNetV3's transposes) while
    the conversion succeeds: only its errors are shown, and the parity gate judges the result."""
    tf2onnx_logger = logging.getLogger("tf2onnx")
    level = tf2onnx_logger.level
    tf2onnx_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf2onnx_logger.setLevel(level)


def fold_captured_tensors(proto: Any, concrete: Any) -> int:
    """Turn graph inputs that are tensors the function captured into constants; returns how many.

    tf2onnx freezes variables, but constant tensors a layer holds outside variables (Keras' Normalization
    layer keeps its mean and variance so, as in keras.applications EfficientNet) come out as extra graph
    inputs; their values are known, so they become initializers.
    """
    from onnx import numpy_helper

    values = {}
    for external, internal in concrete.graph.captures:
        if hasattr(external, "numpy"):
            try:
                values[internal.name] = np.asarray(external.numpy())
            except Exception:  # a resource handle (a variable), not a value: tf2onnx froze it already
                continue
    kept = [value for value in proto.graph.input if value.name not in values]
    folded = [value.name for value in proto.graph.input if value.name in values]
    for name in folded:
        proto.graph.initializer.append(numpy_helper.from_array(values[name], name))
    replace_field(proto.graph.input, kept)
    return len(folded)
