"""``edgecnn export`` of a Keras model edgecnn did not train (a ``.keras`` or ``.h5`` file from a notebook, or
Teachable Machine's ``keras_model.h5`` with its ``labels.txt``).

The model is converted as it is (tf2onnx), then adopted like a foreign ONNX file (``conversion.adopt``): the
preprocessing goes into the graph, the labels and resize policy into the contract. The gate is the export
parity gate: Keras on the documented transform of the images against the written file on raw pixels.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.adopt import AdoptResult, finish_adoption
from edgecnn.conversion.graph import inspect_graph, replace_field
from edgecnn.conversion.labels import read_labels
from edgecnn.conversion.preprocess import AdoptOptions
from edgecnn.core.errors import ConfigError, ExportError, ModelFileError
from edgecnn.core.onnxfile import name_batch_dimension
from edgecnn.core.version import __version__

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def export_foreign_keras(
    source: Path,
    options: AdoptOptions,
    output: Path,
    opset: int,
    force: bool,
    check_dir: str | Path | None,
    limit: float,
) -> AdoptResult:
    """Convert a foreign Keras classifier to an adopted edgecnn ONNX file, checked against Keras.

    Raises:
        ModelFileError: Not a loadable Keras model, or not one image input and a class-vector output;
        ConfigError: bad options or labels; ExportError: conversion or the parity gate failed.
    """
    from edgecnn.training.keras_io import load_keras_model
    from edgecnn.training.models import import_keras

    t0 = time.perf_counter()
    if source.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelFileError(f"{source} is not a Keras model; give a .keras or .h5 file")
    if not source.is_file():
        raise ModelFileError(f"model not found: {source}")
    pre, resize = options.resolve()
    labels = read_labels(options.labels)
    import_keras()
    model = load_keras_model(source)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(
            f"{source} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "edgecnn exports classifiers with one image input and one class-score output"
        )
    proto = _convert(model, opset, source)
    foreign = inspect_graph(proto, str(source), pre.layout)

    def run_keras(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(x, training=False))

    return finish_adoption(
        proto,
        foreign,
        labels,
        pre,
        resize,
        run_keras,
        output,
        source=source,
        exporter=f"edgecnn {__version__} (tf2onnx.convert.from_function, adopted)",
        check_dir=check_dir,
        force=force,
        limit=limit,
        started=t0,
    )


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


def _convert(model: Any, opset: int, source: Path) -> Any:
    import tensorflow as tf
    import tf2onnx

    shape = [None, *model.inputs[0].shape[1:]]
    spec = [tf.TensorSpec(shape, tf.float32, name="input")]

    @tf.function(input_signature=spec)
    def forward(x: Any) -> dict[str, Any]:
        return {"scores": model(x, training=False)}

    try:
        with quiet_tf2onnx():
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many kinds for unsupported graphs
        raise ExportError(
            f"tf2onnx could not convert {source.name} at opset {opset}: {str(exc).splitlines()[0][:200]}"
        ) from None
    name_batch_dimension(proto)
    fold_captured_tensors(proto, forward.get_concrete_function())
    if [o.name for o in proto.graph.output] != ["scores"]:
        raise ConfigError(
            f"{source.name}: the converted graph has outputs {[o.name for o in proto.graph.output]}"
        )
    return proto


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
