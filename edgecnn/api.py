"""The public Python API: the functions the command line calls, for programs that embed edgecnn.

Import it as ``import edgecnn``; every name here is reached lazily through ``edgecnn.__getattr__``, so
``import edgecnn`` stays cheap and ``edgecnn.load`` never imports TensorFlow. Functions raise
``EdgecnnError`` subclasses with one-line messages; none prints or exits. Progress goes to the ``edgecnn``
logger (``logging.getLogger("edgecnn")``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgecnn.apps.classify import ClassifyConfig, ClassifySummary, classify_batches, new_summary
from edgecnn.apps.evaluate import EvaluationResult, LoadedModel, load_onnx_model, run_on_folder
from edgecnn.apps.outputs import Row
from edgecnn.conversion.preprocess import AdoptOptions
from edgecnn.core.errors import ModelFileError
from edgecnn.runtime.model import Model, Prediction, load

__all__ = [
    "AdoptOptions",
    "ClassifyRun",
    "EvaluationResult",
    "Model",
    "Prediction",
    "Row",
    "adopt",
    "classify",
    "evaluate",
    "export",
    "load",
    "load_for_evaluation",
    "train",
]

PathLike = str | os.PathLike[str]
logger = logging.getLogger("edgecnn")


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
    """
    from edgecnn.conversion.convert import export_all

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


class ClassifyRun:
    """A classification in progress: iterate it for result rows as they come; ``summary`` when done.

    The results file (``output``) is written, and files sorted, before each row is handed out. Leaving the
    loop early (or ``close()``) closes the results file with every row handed out in it.
    """

    def __init__(self, config: ClassifyConfig, model: Model, owns_model: bool = False) -> None:
        self.model = model
        self.summary: ClassifySummary = new_summary(config, model.predictor)
        self._batches = classify_batches(config, model.predictor, self.summary)
        self._owns_model = owns_model  # a model opened from a path is released with the run

    def __iter__(self) -> Iterator[Row]:
        for rows in self._batches:
            yield from rows

    def close(self) -> None:
        self._batches.close()
        if self._owns_model:
            self.model.close()

    def __enter__(self) -> ClassifyRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def classify(
    paths: PathLike | Sequence[PathLike],
    model: PathLike | Model | None = None,
    output: PathLike | None = None,
    iterate: bool = False,
    report: PathLike | None = None,
    **options: Any,
) -> ClassifySummary | ClassifyRun:
    """Classify image files and folders (``edgecnn classify``).

    Args:
        paths: A file or folder, or a list of them.
        model: An edgecnn .onnx path, or a ``Model`` from ``load``; None: the shipped default model (the
            1,000 ImageNet classes).
        output: Results file (.csv, .jsonl or .json).
        iterate: Return a ``ClassifyRun`` to iterate over rows as they come, instead of running to the end.
        report: Write an HTML report to this .html file when the run ends (thumbnails beside it, in
            ``<stem>_files/``); with ``resume`` it covers the whole ``output`` file.
        **options: Any field of ``ClassifyConfig`` (``recursive``, ``batch_size``, ``top_k``, ``sort_into``,
            ``move``, ``min_confidence``, ``resume``, ``force``, ``workers``).

    Returns:
        The run's ``ClassifySummary`` (counts per label, skipped files, images/s, the provider that ran), or
        with ``iterate`` a ``ClassifyRun``.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    config = ClassifyConfig(
        paths=[Path(p) for p in items], output=Path(output) if output is not None else None, **options
    )
    opened = model if isinstance(model, Model) else load(model)
    if report is None:
        run = ClassifyRun(config, opened, owns_model=not isinstance(model, Model))
    else:
        from edgecnn.reports.classify import ClassifyReport

        spec = opened.contract.input
        builder = ClassifyReport(
            report, opened.path.name, opened.labels, (spec.height, spec.width), resume=config.resume
        )
        run = ClassifyRun(
            config, Model(builder.tap(opened.predictor)), owns_model=not isinstance(model, Model)
        )  # model inputs become thumbnails
        run._batches = builder.watch(run._batches, run.summary, config.output)
    if iterate:
        return run
    with run:
        for _ in run:
            pass
    return run.summary


def load_for_evaluation(model: PathLike, provider: str = "auto", threads: int | None = None) -> LoadedModel:
    """A .keras model (with report.json beside it; needs the ``train`` extra) or an edgecnn .onnx model."""
    path = Path(model)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        from edgecnn.training.keras_io import load_keras_forward

        contract, forward = load_keras_forward(path)
        return LoadedModel("keras", contract, forward)
    if suffix == ".onnx":
        return load_onnx_model(path, provider=provider, threads=threads)
    raise ModelFileError(f"unknown model type {path.suffix!r} for {path}; give a .keras or .onnx file")


def evaluate(
    model: PathLike,
    data_dir: PathLike,
    batch_size: int = 32,
    workers: int | None = None,
    provider: str = "auto",
    report: PathLike | None = None,
    compare: PathLike | None = None,
) -> EvaluationResult:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of a model on a labelled folder.

    Args:
        model: A .keras model (with report.json beside it) or an edgecnn .onnx model.
        data_dir: A folder of class folders (its ``val/`` folder when it has ``train/`` and ``val/``).
        report: Write an HTML report to this .html file (thumbnails beside it, in ``<stem>_files/``).
        compare: A second model with the same labels (the fp32 source of an int8 or fp16 model), run on the
            same images: ``result.compare`` holds its accuracy and the top-1 agreement, and the report shows
            the images where the two disagree.

    Raises:
        ModelFileError: The model cannot be loaded; DatasetError: the folder cannot be used;
        ConfigError: ``compare`` has other labels, or ``report`` is not an .html file.
    """
    from edgecnn.apps.evaluate import agreement, align_to
    from edgecnn.core.errors import ConfigError

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    loaded = load_for_evaluation(model, provider=provider)
    second = load_for_evaluation(compare, provider=provider) if compare is not None else None
    if second is not None and second.contract.labels != loaded.contract.labels:
        raise ConfigError(
            f"--compare model has labels {', '.join(second.contract.labels)}; "
            f"{Path(model).name} has {', '.join(loaded.contract.labels)}"
        )
    builder = None
    if report is not None:
        from edgecnn.reports.evaluate import EvaluationReport

        builder = EvaluationReport(report)
    hook = builder.add_batch if builder is not None else None
    result = run_on_folder(loaded, Path(data_dir), batch_size=batch_size, workers=workers, on_batch=hook)
    other = None
    if second is not None and compare is not None:
        other = run_on_folder(second, Path(data_dir), batch_size=batch_size, workers=workers)
        result.compare = agreement(result, other, Path(compare).name)
    if builder is not None:
        from edgecnn.reports.evaluate import Comparison

        result.report = builder.finish(
            result.metrics,
            result.probabilities,
            result.y_true,
            result.paths,
            result.skipped,
            model=Path(model).name,
            provider=result.provider,
            data_dir=str(result.data_dir),
            compare=(
                Comparison(Path(str(compare)).name, align_to(result, other), other.metrics.accuracy)
                if other is not None
                else None
            ),
        )
    return result
