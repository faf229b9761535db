"""The inference side of the API: ``classify``, ``webcam``, ``evaluate``; none imports TensorFlow (``evaluate``
of a .keras model aside)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgecnn.api.options import PathLike, Progress, check_options, config_fields, logger, open_model
from edgecnn.apps.classify import ClassifyConfig, ClassifySummary, check_inputs, classify_batches, new_summary
from edgecnn.apps.evaluate import EvaluationResult, LoadedModel, load_onnx_model, run_on_folder
from edgecnn.apps.outputs import Row
from edgecnn.core.errors import ConfigError, ModelFileError
from edgecnn.runtime.model import Model


class ClassifyRun:
    """A classification in progress: iterate it for result rows as they come; ``summary`` when done.

    The results file (``output``) is written, and files sorted, before each row is handed out. Leaving the
    loop early (or ``close()``) closes the results file with every row handed out in it.
    """

    def __init__(
        self,
        config: ClassifyConfig,
        model: Model,
        owns_model: bool = False,
        on_progress: Progress | None = None,
    ) -> None:
        self.model = model
        self.summary: ClassifySummary = new_summary(config, model.predictor)
        self._batches = _noting_interrupts(
            classify_batches(
                config,
                model.predictor,
                self.summary,
                on_progress,
                count_in_background=on_progress is not None,
            ),
            self.summary,
        )
        self._owns_model = owns_model  # a model opened from a path is released with the run

    def __iter__(self) -> Iterator[Row]:
        for rows in self._batches:
            yield from rows

    def close(self) -> None:
        try:
            self._batches.close()
        finally:
            if self._owns_model:
                self.model.close()

    def __enter__(self) -> ClassifyRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _noting_interrupts(
    batches: Generator[list[Row], None, None], summary: ClassifySummary
) -> Generator[list[Row], None, None]:
    """``batches``, with Ctrl-C recorded in ``summary`` before it reaches the layers above (the report
    written as the run ends says so)."""
    try:
        yield from batches
    except KeyboardInterrupt:
        summary.interrupted = True
        raise


def classify(
    paths: PathLike | Sequence[PathLike],
    model: PathLike | Model | None = None,
    output: PathLike | None = None,
    iterate: bool = False,
    report: PathLike | None = None,
    *,
    provider: str = "auto",
    fallback: bool = False,
    threads: int | None = None,
    ray: str | None = None,
    csv: bool = False,
    on_rows: Callable[[list[Row]], None] | None = None,
    on_progress: Progress | None = None,
    **options: Any,
) -> ClassifySummary | ClassifyRun:
    """Classify image files and folders (``edgecnn classify``).

    Args:
        paths: A file or folder, or a list of them.
        model: An edgecnn .onnx path, or a ``Model`` from ``load``; None: the shipped default model (the
            1,000 ImageNet classes).
        output: Results file (.csv, .jsonl or .json); with ``ray`` a folder of Parquet results.
        iterate: Return a ``ClassifyRun`` to iterate over rows as they come, instead of running to the end.
        report: Write an HTML report to this .html file when the run ends (thumbnails beside it, in
            ``<stem>_files/``); with ``resume`` it covers the whole ``output`` file.
        provider: "auto", "cpu", "cuda" or "tensorrt", as for ``load`` (a path ``model`` only).
        fallback: Use the CPU when ``provider`` cannot run, instead of raising ``ProviderError``.
        threads: ONNX Runtime intra-op threads.
        ray: Run on a Ray cluster: "auto", "local" or "HOST:PORT" (docs/SCALING.md); ``csv``: also write
            ``output/results.csv``.
        on_rows: Called with each batch of rows as it is written (not with ``iterate``).
        on_progress: Called with (files done, total files or None while they are counted).
        **options: Any field of ``ClassifyConfig`` (``recursive``, ``batch_size``, ``top_k``, ``sort_into``,
            ``move``, ``min_confidence``, ``resume``, ``force``, ``workers``).

    Returns:
        The run's ``ClassifySummary`` (counts per label, skipped files, images/s, the provider that ran), or
        with ``iterate`` a ``ClassifyRun``. Ctrl-C ends a run that is not iterated after its current batch,
        with ``summary.interrupted`` set.

    Raises:
        ConfigError: An unknown or inapplicable option, or none of ``paths`` exists; ModelFileError, ContractError, ProviderError: the
        model cannot run; OutputError: ``output`` or ``report`` cannot be written.
    """
    check_options(options, config_fields(ClassifyConfig) - {"paths", "output"}, "classify")
    if options.get("min_confidence") and options.get("sort_into") is None:
        raise ConfigError(
            "--min-confidence applies with --sort-into DIR (files below it go to DIR/_uncertain/)"
        )
    if ray is None and csv:
        raise ConfigError("--csv goes with --ray (without it, an output FILE.csv is CSV)")
    if ray is not None and (report is not None or iterate):
        raise ConfigError(f"{'--report' if report is not None else 'iterate'} does not work with --ray yet")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    bad = [p for p in items if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise ConfigError(f"paths are files or folders (str or Path), got {bad[0]!r}")
    config = ClassifyConfig(
        paths=[Path(p) for p in items], output=Path(output) if output is not None else None, **options
    )
    if ray is not None:
        return _classify_on_ray(config, model, ray, csv, provider, fallback, threads, on_progress)
    check_inputs(config)  # before the model is opened
    if report is not None:
        from edgecnn.reports.page import check_report_path

        check_report_path(Path(report))
    opened, owned = open_model(model, provider, fallback, threads)
    try:
        run = _classify_run(config, opened, owned, report, on_progress)
    except BaseException:
        if owned:
            opened.close()
        raise
    if iterate:
        return run
    if on_progress is not None:
        on_progress(0, None)  # the run starts: a progress rate counts from here
    with run:
        try:
            for rows in run._batches:
                if on_rows is not None:
                    on_rows(rows)
        except KeyboardInterrupt:  # recorded in the summary; the rows so far are written
            pass
    return run.summary


def _classify_run(
    config: ClassifyConfig, opened: Model, owned: bool, report: PathLike | None, on_progress: Progress | None
) -> ClassifyRun:
    if report is None:
        return ClassifyRun(config, opened, owns_model=owned, on_progress=on_progress)
    from edgecnn.reports.classify import ClassifyReport

    spec = opened.contract.input
    builder = ClassifyReport(
        report, opened.path.name, opened.labels, (spec.height, spec.width), resume=config.resume
    )
    # model inputs become thumbnails; the run still releases the model it opened
    run = ClassifyRun(config, Model(builder.tap(opened.predictor)), on_progress=on_progress)
    run._owns_model, run.model = owned, opened
    run._batches = builder.watch(run._batches, run.summary, config.output)
    return run


def _classify_on_ray(
    config: ClassifyConfig,
    model: PathLike | Model | None,
    address: str,
    csv: bool,
    provider: str,
    fallback: bool,
    threads: int | None,
    on_progress: Progress | None,
) -> ClassifySummary:
    from edgecnn.apps.cluster import classify_on_ray
    from edgecnn.core.shipped import default_model_path

    path = model.path if isinstance(model, Model) else model if model is not None else default_model_path()
    if path is None:
        raise ModelFileError("no model given and no shipped default model found; pass the path of a model")
    return classify_on_ray(
        config,
        path,
        address,
        csv=csv,
        provider=provider,
        threads=threads,
        fallback=fallback,
        on_progress=on_progress,
    )


def webcam(
    model: PathLike | Model | None = None,
    *,
    camera: int = 0,
    source: str | None = None,
    provider: str = "auto",
    fallback: bool = False,
    threads: int | None = None,
    width: int | None = None,
    height: int | None = None,
    realtime: bool | None = None,
    retries: int = 3,
    **options: Any,
) -> Any:
    """Classify a live camera, a video file, an image sequence or a stream (``edgecnn webcam``).

    Args:
        model: An edgecnn .onnx path or a ``Model``; None: the shipped default model.
        camera: Camera index, when there is no ``source``.
        source: A video file, an image sequence pattern (``img_%04d.png``) or a stream URL.
        provider: As for ``load`` (a path ``model`` only).
        fallback: As for ``load`` (a path ``model`` only).
        threads: As for ``load`` (a path ``model`` only).
        width: Capture width to request from a camera.
        height: Capture height to request from a camera.
        realtime: Pace a file like a live source [default: live sources live, files every frame in order].
        retries: Reconnection attempts when a live source stops delivering.
        **options: Any field of ``WebcamConfig`` (``crop``, ``top_k``, ``every``, ``smooth``, ``display``,
            ``record``, ``jsonl``, ``max_frames``, ``snapshot_dir``, ``force``).

    Returns:
        A ``WebcamSummary``: frames, latency and rate figures, and ``end_reason``.

    Raises:
        ConfigError: An unknown or bad option; SourceError: the source cannot be opened; ModelFileError,
        ContractError, ProviderError: the model cannot run.
    """
    from edgecnn.apps.capture import check_source_options, open_source
    from edgecnn.apps.webcam import WebcamConfig, run_webcam

    check_options(options, config_fields(WebcamConfig), "webcam")
    config = WebcamConfig(**options)
    check_source_options(
        source=source, width=width, height=height, realtime=realtime
    )  # before the model loads
    opened, owned = open_model(model, provider, fallback, threads)
    try:
        frames = open_source(
            camera=camera, source=source, width=width, height=height, realtime=realtime, max_retries=retries
        )
        keys = "; q or Esc quits, space pauses, s saves a snapshot" if config.display else ""
        order = "live: newest frame only" if frames.live else "every frame in order"
        logger.info(f"source: {frames.description} ({order}){keys}")
        return run_webcam(frames, opened.predictor, config)
    finally:
        if owned:
            opened.close()


def webcam_summary_text(summary: Any) -> str:
    """The plain-text end-of-run summary of ``webcam``'s ``WebcamSummary``."""
    from edgecnn.apps.webcam import format_summary

    return str(format_summary(summary))


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
