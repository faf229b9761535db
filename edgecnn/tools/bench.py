"""``edgecnn benchmark``: latency, throughput, memory and roofline figures of models on each provider.

Every row times ``Predictor.predict_batch``, the call the other inference commands make. The roofline fields
compare the work a model does (multiply-accumulates counted from its graph) with what this machine attains
through the same ONNX Runtime on a large matrix product, so a slow model can be told from a slow machine.

The machine block and peak memory come from ``edgecnn.tools.machine``, input batches and accuracy from
``edgecnn.tools.bench_data``, the terminal tables from ``edgecnn.tools.bench_format``; their public names are
re-exported here.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract
from edgecnn.core.errors import ConfigError, EdgecnnError, ModelFileError, ProviderError
from edgecnn.core.onnxfile import is_quantized, load_onnx, read_contract
from edgecnn.core.stats import percentile
from edgecnn.tools.bench_data import ImageSource, image_source, measure_accuracy
from edgecnn.tools.bench_format import COLUMNS, format_accuracy, format_table
from edgecnn.tools.machine import (
    ARM_INT8_FLAGS,
    INT8_FLAGS,
    cpu_info,
    gpu_info,
    machine_info,
    peak_memory,
    reset_peak_memory,
)
from edgecnn.tools.roofline import PEAK_KINDS, count_macs, first_line, measure_peak

__all__ = [
    "ARM_INT8_FLAGS",
    "COLUMNS",
    "INT8_FLAGS",
    "SCHEMA",
    "UNITS",
    "BenchModel",
    "add_ratios",
    "add_roofline",
    "check_settings",
    "count_macs",
    "cpu_info",
    "describe_bench_model",
    "format_accuracy",
    "format_table",
    "machine_info",
    "measure_peak",
    "peak_memory",
    "reset_peak_memory",
    "run_benchmark",
]

logger = logging.getLogger(__name__)
SCHEMA = "edgecnn.benchmark/1"
#: Units of achieved and peak throughput: float models do FLOPs, int8 models integer operations.
UNITS = {"fp32": "GFLOP/s", "fp16": "GFLOP/s", "int8": "GOP/s"}


def _sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to a few significant digits: enough for any table, short in JSON."""
    return float(f"{value:.{digits}g}")


@dataclass
class BenchModel:
    """One model under test: its contract, precision and work per image."""

    index: int
    path: Path
    contract: ModelContract
    precision: str  # "fp32", "fp16" or "int8"
    macs: int | None
    macs_error: str | None
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": str(self.path),
            "name": self.path.name,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "input": list(self.contract.input.shape),
            "labels": len(self.contract.labels),
            "macs_per_image": self.macs,
            "macs_error": self.macs_error,
        }


def describe_bench_model(index: int, path: Path) -> BenchModel:
    """Read a model's contract, precision and MACs (ModelFileError/ContractError for a bad file)."""
    model = load_onnx(path)
    contract = read_contract(model, what=str(path))
    try:
        macs: int | None = count_macs(model)
        error = None
    except ModelFileError as exc:
        macs, error = None, str(exc)
    precision = "int8" if is_quantized(model) else contract.numeric_precision
    return BenchModel(index, path, contract, precision, macs, error, path.stat().st_size)


def check_settings(
    providers: Sequence[str], batch_sizes: Sequence[int], threads: int | None, runs: int, warmup: int
) -> None:
    """Refuse settings that cannot give a benchmark.

    Raises:
        ConfigError: The first bad setting, with the valid values.
    """
    from edgecnn.runtime.providers import PROVIDERS

    if not providers:
        raise ConfigError(f"--provider needs at least one of {', '.join(PROVIDERS)}")
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        raise ConfigError(f"unknown provider {unknown[0]!r}; choose from {', '.join(PROVIDERS)}")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"--batch-sizes must be positive integers, got {list(batch_sizes)}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {warmup}")


def run_benchmark(
    models: list[Path],
    providers: list[str],
    batch_sizes: list[int],
    threads: int | None = None,
    data_dir: Path | None = None,
    runs: int = 50,
    warmup: int = 5,
    *,
    peak_seconds: float = 2.0,
) -> dict[str, Any]:
    """Time every model on every provider and batch size.

    Args:
        models: ONNX files with the edgecnn contract; the first is the baseline of the ratios.
        providers: Short provider names (cpu, cuda, tensorrt); one that cannot run gives "unavailable" rows.
        batch_sizes: Images per run.
        threads: Intra-op threads (None: ONNX Runtime's default).
        data_dir: A labelled class folder: real images are timed and accuracy is measured.
        runs: Timed runs per row.
        warmup: Untimed runs before them.
        peak_seconds: Time for each peak measurement; 0 leaves the roofline peaks out.

    Returns:
        A JSON-ready dict: ``schema`` ("edgecnn.benchmark/1"), ``created``, ``machine`` (CPU, cores, int8
        flags, versions; ``gpu``: name, driver, CUDA build and library versions when a GPU row ran, else
        None), ``settings``, ``models`` (precision, MACs per image), ``peaks`` (one per provider and
        precision that ran: value in GFLOP/s or GOP/s, or the error), ``rows`` (one per model, provider and
        batch size: status "ok", "unavailable" or "error" with its reason; median/p95/p99 ms, images per
        second, throughput against the first model, peak memory, achieved and peak G(FL)OP/s and the share)
        and ``accuracy`` (None without ``data_dir``).

    Raises:
        ConfigError: Bad settings.
        ModelFileError: A model is unreadable or lacks the contract.
        DatasetError: ``data_dir`` has no usable images.
    """
    from edgecnn.runtime.providers import import_onnxruntime

    if not models:
        raise ConfigError("give at least one model file")
    check_settings(providers, batch_sizes, threads, runs, warmup)
    providers, batch_sizes = list(dict.fromkeys(providers)), list(dict.fromkeys(batch_sizes))
    ort = import_onnxruntime()
    bench_models = [describe_bench_model(i, Path(p)) for i, p in enumerate(models)]
    images = image_source(data_dir, max(batch_sizes))
    unavailable = _unavailable_providers(providers)
    rows: list[dict[str, Any]] = []
    for model in bench_models:
        for provider in providers:
            rows.extend(
                _provider_rows(model, provider, batch_sizes, threads, runs, warmup, images, unavailable)
            )
    add_ratios(rows)
    peaks = _measure_peaks(ort, rows, threads, peak_seconds)
    add_roofline(rows, peaks)
    machine = machine_info(ort)
    gpu_ran = any(r["provider"] != "cpu" and r["status"] == "ok" for r in rows)
    machine["gpu"] = gpu_info(ort) if gpu_ran else None
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "providers": list(providers),
            "batch_sizes": list(batch_sizes),
            "threads": threads,
            "runs": runs,
            "warmup": warmup,
            "data_dir": str(data_dir) if data_dir else None,
            "inputs": f"images decoded from {data_dir}" if data_dir else "random pixel values 0-255",
            "throughput": "images per second at the median latency",
            "memory": "process resident-set high-water mark (VmHWM) during each row, reset before it",
        },
        "models": [m.to_dict() for m in bench_models],
        "peaks": peaks,
        "rows": rows,
        "accuracy": measure_accuracy(bench_models, data_dir) if data_dir else None,
    }


def _unavailable_providers(providers: Sequence[str]) -> dict[str, str]:
    """Reasons of the requested GPU providers that the probe shows cannot start here."""
    from edgecnn.runtime.providers import probe_providers

    others = [p for p in dict.fromkeys(providers) if p != "cpu"]
    if not others:
        return {}
    return {s.name: s.reason or "cannot start" for s in probe_providers(others) if not s.works}


def _provider_rows(
    model: BenchModel,
    provider: str,
    batch_sizes: Sequence[int],
    threads: int | None,
    runs: int,
    warmup: int,
    images: ImageSource,
    unavailable: dict[str, str],
) -> list[dict[str, Any]]:
    from edgecnn.runtime.predictor import Predictor

    if provider in unavailable:
        return [_row(model, provider, b, "unavailable", unavailable[provider]) for b in batch_sizes]
    try:
        predictor = Predictor(model.path, provider=provider, threads=threads)
    except ProviderError as exc:
        return [_row(model, provider, b, "unavailable", str(exc)) for b in batch_sizes]
    rows = []
    for size in batch_sizes:
        logger.info(f"{model.path.name} on {provider}, batch {size}")
        rows.append(
            _time_row(predictor, model, provider, size, images(model.contract.input, size), runs, warmup)
        )
    return rows


def _row(
    model: BenchModel, provider: str, batch_size: int, status: str, reason: str | None
) -> dict[str, Any]:
    """A report row with every field present; timing fields stay None unless the row ran."""
    return {
        "model": str(model.path),
        "model_index": model.index,
        "provider": provider,
        "batch_size": batch_size,
        "status": status,
        "reason": reason,
        "precision": model.precision,
        "session": None,
        "median_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "images_per_second": None,
        "throughput_vs_first": None,
        "rss_before_mb": None,
        "peak_rss_mb": None,
        "memory_note": None,
        "macs_per_image": model.macs,
        "achieved_gops": None,
        "peak_gops": None,
        "peak_share": None,
        "ops_unit": UNITS[model.precision],
    }


def _time_row(
    predictor: Any, model: BenchModel, provider: str, size: int, batch: np.ndarray, runs: int, warmup: int
) -> dict[str, Any]:
    row = _row(model, provider, size, "ok", None)
    row["session"] = predictor.info.describe()
    before, note = reset_peak_memory()
    if note is None and provider != "cpu":
        note = "host memory only; GPU memory is not measured"
    times = []
    if predictor.fixed_batch and predictor.fixed_batch != size:
        # The predictor would pad or split the batch: timing that is not timing this batch size.
        row.update(status="error", reason=f"this model only takes batches of {predictor.fixed_batch}")
        return row
    try:
        for _ in range(warmup):
            predictor.predict_batch(batch)
        for _ in range(runs):
            start = time.perf_counter()
            predictor.predict_batch(batch)
            times.append(time.perf_counter() - start)
    except Exception as exc:  # e.g. out of GPU memory at a large batch: the row fails, not the benchmark
        row.update(status="error", reason=f"{type(exc).__name__}: {first_line(exc)}")
        return row
    median = statistics.median(times)
    row.update(
        median_ms=_sig(median * 1000),
        p95_ms=_sig(percentile(times, 95) * 1000),
        p99_ms=_sig(percentile(times, 99) * 1000),
        images_per_second=_sig(size / median) if median > 0 else None,
        rss_before_mb=before,
        peak_rss_mb=peak_memory() if before is not None else None,
        memory_note=note,
    )
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set each row's throughput over the first model's row with the same provider and batch size."""
    baseline = {
        (r["provider"], r["batch_size"]): r["images_per_second"] for r in rows if r["model_index"] == 0
    }
    for row in rows:
        base = baseline.get((row["provider"], row["batch_size"]))
        ips = row["images_per_second"]
        row["throughput_vs_first"] = _sig(ips / base) if ips is not None and base else None


def _measure_peaks(
    ort: Any,
    rows: Sequence[dict[str, Any]],
    threads: int | None,
    seconds: float,
) -> list[dict[str, Any]]:
    """One peak per (provider, precision) that has a row that ran."""
    wanted = dict.fromkeys((r["provider"], r["precision"]) for r in rows if r["status"] == "ok")
    peaks = []
    for provider, kind in wanted:
        entry: dict[str, Any] = {
            "provider": provider,
            "precision": kind,
            "unit": UNITS[kind],
            "value": None,
            "error": None,
        }
        if seconds <= 0:
            entry["error"] = "not measured (peak time 0)"
        elif kind not in PEAK_KINDS:
            entry["error"] = f"not measured (the roofline probe measures {' and '.join(PEAK_KINDS)} peaks)"
        else:
            logger.info(f"peak {kind} throughput on {provider}")
            try:
                entry["value"] = _sig(measure_peak(ort, kind, threads, seconds, provider))
            except EdgecnnError as exc:
                entry["error"] = str(exc)
        peaks.append(entry)
    return peaks


def add_roofline(rows: list[dict[str, Any]], peaks: Sequence[dict[str, Any]]) -> None:
    """Fill achieved GFLOP/s (GOP/s for int8), the matching peak and the share of it."""
    values = {(p["provider"], p["precision"]): p["value"] for p in peaks}
    for row in rows:
        if row["images_per_second"] is None or row["macs_per_image"] is None:
            continue
        achieved = 2 * row["macs_per_image"] * row["images_per_second"] / 1e9
        peak = values.get((row["provider"], row["precision"]))
        row["achieved_gops"] = _sig(achieved)
        row["peak_gops"] = peak
        row["peak_share"] = _sig(achieved / peak) if peak else None
