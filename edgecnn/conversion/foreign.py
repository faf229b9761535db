"""``edgecnn export`` of a Keras model edgecnn did not train (a ``.keras`` or ``.h5`` file from a notebook, or
Teachable Machine's ``keras_model.h5`` with its ``labels.txt``).

The model is converted as it is (tf2onnx), then adopted like a foreign ONNX file (``conversion.adopt``): the
preprocessing goes into the graph, the labels and resize policy into the contract. The gate is the export
parity gate: Keras on the documented transform of the images against the written file on raw pixels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.adopt import AdoptResult, finish_adoption
from edgecnn.conversion.graph import inspect_graph
from edgecnn.conversion.keras2onnx import keras_to_onnx
from edgecnn.conversion.labels import read_labels
from edgecnn.conversion.preprocess import AdoptOptions
from edgecnn.core.errors import ModelFileError
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
    check_option: str = "--eval",
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
        check_option=check_option,
    )


def _convert(model: Any, opset: int, source: Path) -> Any:
    shape = [None, *model.inputs[0].shape[1:]]
    return keras_to_onnx(model, shape, "input", "scores", opset, source.name)
