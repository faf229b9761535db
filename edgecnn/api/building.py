"""The training side of the API: ``train``, ``export``, ``adopt``; each imports its heavy half when it runs."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from edgecnn.api.options import PathLike, check_options, config_fields
from edgecnn.conversion.preprocess import AdoptOptions
from edgecnn.core.errors import ConfigError

__all__ = ["AdoptOptions", "adopt", "export", "train"]


def train(data_dir: PathLike, **options: Any) -> Any:
    """Train a model on a folder of class folders (``edgecnn train``); needs the ``train`` extra.

    Args:
        data_dir: A folder of class folders, or one with ``train/`` and ``val/`` folders of class folders.
        **options: Any field of ``edgecnn.training.train.TrainConfig`` (``arch``, ``img_size``, ``epochs``,
            ``batch_size``, ``out_dir``, ``max_minutes``, ``seed``, ...).

    Returns:
        A ``TrainResult``: ``run_dir`` (model.keras, report.json, plots), ``metrics``, ``report``, ``skipped``.

    Raises:
        ConfigError: An option that cannot work; DatasetError: a folder that cannot be used.
    """
    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train as run_training

    check_options(options, config_fields(TrainConfig) - {"data_dir"}, "train")
    options.setdefault("verbose", 0)
    return run_training(TrainConfig(data_dir=Path(data_dir), **options))


def export(run: PathLike, int8: bool = False, foreign: AdoptOptions | None = None, **options: Any) -> Any:
    """Convert a Keras model to ONNX through its parity gate (``edgecnn export``); optionally int8 and fp16.

    Args:
        run: A run folder from ``train``, a .keras file with report.json beside it, a .keras/.h5 model edgecnn
            did not train (with ``foreign``), or an edgecnn .onnx file to derive int8/fp16 files from.
        int8: Also write a static int8 model, calibrated on real images, within the accuracy budget.
        foreign: The labels and pixel recipe of a Keras model edgecnn did not train (``AdoptOptions``).
        **options: ``output``, ``int8_output``, ``calib_dir``, ``calib_size``, ``calib_method``,
            ``per_channel``, ``eval_dir``, ``max_accuracy_drop``, ``accuracy_gate``, ``opset``, ``force``,
            ``fp16``, ``fp16_output``, ``tta`` ("flip": test-time augmentation in the graph), ``int8_fallback``
            (keep the costliest layers in fp32 when no calibration meets the budget; on by default).

    Returns:
        An ``ExportResult``: ``output``, ``parity``, ``size_bytes`` and ``int8`` (a ``QuantizeResult`` or None).

    Raises:
        ExportError: A gate failed (the file it guards is not written); OutputError: an output exists.
        ConfigError: An option that does not apply (``opset`` with an .onnx source: its graph keeps its opset).
    """
    from edgecnn.conversion.convert import export_all

    check_options(
        options, set(inspect.signature(export_all).parameters) - {"source", "int8", "foreign"}, "export"
    )
    if options.get("opset") is None:
        options.pop("opset", None)  # the converter's default
    elif Path(run).suffix.lower() == ".onnx":
        raise ConfigError(
            f"--opset applies when a Keras model is converted; {Path(run).name} is already ONNX and keeps its opset"
        )
    return export_all(Path(run), int8=int8, foreign=foreign, **options)


def adopt(
    model: PathLike,
    options: AdoptOptions,
    output: PathLike | None = None,
    output_name: str | None = None,
    check_dir: PathLike | None = None,
    force: bool = False,
) -> Any:
    """Give an ONNX classifier from elsewhere an edgecnn contract (``edgecnn adopt``).

    The copy takes raw RGB pixels like every edgecnn model: the preprocessing ``options`` describe is
    prepended to the graph and a softmax appended to logits. It is checked against the original on the same
    images (probabilities within 1e-5) before it is written.

    Args:
        model: The foreign .onnx file.
        options: Labels, pixel recipe (``preset`` and/or ``scale``, ``mean``, ``std``, ...) and resize policy.
        output: The adopted file [default: ``<stem>.edgecnn.onnx`` beside the model].
        output_name: The graph output with the class scores, when there are several.
        check_dir: Images for the check [default: generated images].

    Returns:
        An ``AdoptResult``: ``output``, ``contract``, ``check`` (images, max_abs_diff), ``notes``.

    Raises:
        ModelFileError: The model cannot be adopted (the message says why); ConfigError: bad options or labels;
        ExportError: the check failed (nothing written); OutputError: the output exists.
    """
    from edgecnn.conversion.adopt import adopt_onnx

    preprocessing, resize = options.resolve()
    return adopt_onnx(
        model,
        options.labels,
        preprocessing,
        resize,
        output=output,
        output_name=output_name,
        check_dir=check_dir,
        force=force,
    )
