"""``edgecnn benchmark``: latency, throughput, memory and roofline figures of models on each provider.

Every row times ``Predictor.predict_batch``, the call the other inference commands make. The roofline fields
compare the work a model does (multiply-accumulates counted from its graph) with what this machine attains
through the same ONNX Runtime on a large matrix product, so a slow model can be told from a slow machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ConfigError, DatasetError, EdgecnnError, ModelFileError, ProviderError
from edgecnn.core.onnxfile import is_quantized, load_onnx, read_contract
from edgecnn.core.version import __version__
from edgecnn.tools.roofline import count_macs, first_line, measure_peak

SCHEMA = "edgecnn.benchmark/1"
#: Units of achieved and peak throughput: float models do FLOPs, int8 models integer operations.
UNITS = {"fp32": "GFLOP/s", "int8": "GOP/s"}
#: CPU flags that decide how fast int8 (and fp32) kernels can be on this machine.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx")
ARM_INT8_FLAGS = ("asimddp", "i8mm")


# ---------------------------------------------------------------------------------------------------------
# The machine


def cpu_info() -> dict[str, Any]:
    """CPU model name, core counts and the instruction-set flags that matter for int8 kernels."""
    text = _read_text("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    names = ARM_INT8_FLAGS if platform.machine().lower() in ("aarch64", "arm64") else INT8_FLAGS
    flags = {name: ("amx_int8" in present if name == "amx" else name in present) for name in names}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "model": fields.get("model name") or fields.get("Hardware") or platform.processor() or "unknown",
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "int8_flags": flags if text else {},
        "int8_kernels": _int8_kernels(flags) if text else "unknown (no /proc/cpuinfo)",
    }


def _int8_kernels(flags: dict[str, bool]) -> str:
    """The fastest int8 dot-product instructions the flags allow, in words."""
    for name, words in (
        ("amx", "AMX tiles"),
        ("avx512_vnni", "AVX-512 VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("i8mm", "Arm I8MM"),
        ("asimddp", "Arm dot product"),
        ("avx2", "AVX2 without VNNI"),
    ):
        if flags.get(name):
            return words
    return "no SIMD int8 dot-product instructions found"


def machine_info(ort: Any) -> dict[str, Any]:
    """The machine block of a benchmark report."""
    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "architecture": cpu["architecture"],
        "logical_cores": cpu["logical_cores"],
        "usable_cores": cpu["usable_cores"],
        "int8_flags": cpu["int8_flags"],
        "int8_kernels": cpu["int8_kernels"],
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": getattr(ort, "__version__", None),
        "numpy": np.__version__,
        "edgecnn": __version__,
    }


# ---------------------------------------------------------------------------------------------------------
# Peak memory (Linux)


def reset_peak_memory() -> tuple[float | None, str | None]:
    """Reset the resident-set high-water mark; returns (resident MB now, None) or (None, why not)."""
    if _status_field("VmHWM") is None:
        return None, "peak memory is read from /proc/self/status, which this system lacks (Linux only)"
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        return None, f"cannot reset the peak resident set (/proc/self/clear_refs: {exc.strerror or exc})"
    return _status_field("VmRSS"), None


def peak_memory() -> float | None:
    """The resident-set high-water mark (VmHWM) in MB, or None off Linux."""
    return _status_field("VmHWM")


def _status_field(name: str) -> float | None:
    for line in (_read_text("/proc/self/status") or "").splitlines():
        if line.startswith(name + ":"):
            return round(int(line.split()[1]) / 1024, 1)  # kB -> MB
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _sig(value: float, digits: int = 6) -> float:
    """``value`` rounded to a few significant digits: enough for any table, short in JSON."""
    return float(f"{value:.{digits}g}")


# ---------------------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class BenchModel:
    """One model under test: its contract, precision and work per image."""

    index: int
    path: Path
    contract: ModelContract
    precision: str  # "fp32" or "int8"
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
    precision = "int8" if is_quantized(model) else "fp32"
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
    progress: Callable[[str], None] | None = None,
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
        progress: Called with a short line as each row starts.

    Returns:
        A JSON-ready dict: ``schema`` ("edgecnn.benchmark/1"), ``created``, ``machine`` (CPU, cores, int8
        flags, versions), ``settings``, ``models`` (precision, MACs per image), ``peaks`` (one per provider and
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
    images = _image_source(data_dir, max(batch_sizes))
    unavailable = _unavailable_providers(providers)
    rows: list[dict[str, Any]] = []
    for model in bench_models:
        for provider in providers:
            rows.extend(
                _provider_rows(
                    model, provider, batch_sizes, threads, runs, warmup, images, unavailable, progress
                )
            )
    add_ratios(rows)
    peaks = _measure_peaks(ort, rows, threads, peak_seconds, progress)
    add_roofline(rows, peaks)
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(ort),
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
        "accuracy": _accuracy(bench_models, data_dir) if data_dir else None,
    }


def _unavailable_providers(providers: Sequence[str]) -> dict[str, str]:
    """Reasons of the requested GPU providers that the probe shows cannot start here."""
    from edgecnn.runtime.providers import probe_providers

    others = [p for p in dict.fromkeys(providers) if p != "cpu"]
    if not others:
        return {}
    return {s.name: s.reason or "cannot start" for s in probe_providers(others) if not s.works}


ImageSource = Callable[[InputSpec, int], np.ndarray]


def _image_source(data_dir: Path | None, most: int) -> ImageSource:
    """A function giving a float32 batch for an input spec: decoded images, or random pixel values."""
    decoded: dict[InputSpec, np.ndarray] = {}

    def batch(spec: InputSpec, size: int) -> np.ndarray:
        if data_dir is None:
            rng = np.random.default_rng(size)
            return rng.integers(0, 256, (size, *spec.shape)).astype(np.float32)
        if spec not in decoded:
            decoded[spec] = _decode_images(data_dir, spec, most)
        pool = decoded[spec]
        return pool[np.arange(size) % len(pool)].astype(np.float32)

    return batch


def _decode_images(data_dir: Path, spec: InputSpec, count: int) -> np.ndarray:
    from edgecnn.core.decode import decode_parallel
    from edgecnn.core.files import iter_image_files
    from edgecnn.core.imaging import IMAGE_SUFFIXES

    files = [p for p in iter_image_files([data_dir], recursive=True) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"no image files in {data_dir}")
    step = max(1, len(files) // count)  # spread the picks over all the class folders
    picked = files[::step][:count]
    images = [d.image for d in decode_parallel(picked, spec) if d.image is not None]
    if not images:
        raise DatasetError(f"none of the {len(picked)} image files tried in {data_dir} could be read")
    return np.stack(images)


def _provider_rows(
    model: BenchModel,
    provider: str,
    batch_sizes: Sequence[int],
    threads: int | None,
    runs: int,
    warmup: int,
    images: ImageSource,
    unavailable: dict[str, str],
    progress: Callable[[str], None] | None,
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
        if progress:
            progress(f"{model.path.name} on {provider}, batch {size}")
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
    p95, p99 = np.percentile(times, [95, 99])
    row.update(
        median_ms=_sig(median * 1000),
        p95_ms=_sig(float(p95) * 1000),
        p99_ms=_sig(float(p99) * 1000),
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
    progress: Callable[[str], None] | None,
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
        else:
            if progress:
                progress(f"peak {kind} throughput on {provider}")
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


def _accuracy(models: Sequence[BenchModel], data_dir: Path) -> list[dict[str, Any]]:
    """Accuracy of each model on the labelled folder (CPU), and how often its top-1 matches the first model's."""
    from edgecnn.apps.evaluate import load_onnx_model as load_model, run_on_folder

    entries: list[dict[str, Any]] = []
    first: dict[Path, str] | None = None
    for model in models:
        entry: dict[str, Any] = {
            "model": str(model.path),
            "accuracy": None,
            "images": 0,
            "agreement_with_first": None,
            "error": None,
        }
        try:
            result = run_on_folder(load_model(model.path, provider="cpu"), data_dir)
        except EdgecnnError as exc:
            entry["error"] = str(exc)
            entries.append(entry)
            continue
        top1 = {
            p: model.contract.labels[i] for p, i in zip(result.paths, result.probabilities.argmax(axis=1))
        }
        if model.index == 0:
            first = top1
        common = [p for p in top1 if first is not None and p in first]
        entry.update(accuracy=round(float(result.metrics.accuracy), 6), images=len(result.paths))
        if first is not None and common:
            entry["agreement_with_first"] = round(sum(top1[p] == first[p] for p in common) / len(common), 6)
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------------
# Rendering


COLUMNS = (
    "model",
    "provider",
    "batch",
    "median ms",
    "p95 ms",
    "p99 ms",
    "img/s",
    "vs first",
    "peak MB",
    "MMAC/img",
    "achieved",
    "% peak",
)


def format_table(report: dict[str, Any]) -> Any:
    """A rich Table with one row per model, provider and batch size."""
    from rich.table import Table

    table = Table(title=f"edgecnn benchmark ({report['machine']['cpu']})", title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("model", "provider") else "right")
    table.add_column("note", overflow="fold")
    names = {m["index"]: m["name"] for m in report["models"]}
    peaks = [
        f"{p['provider']} {p['precision']} {p['value']:,.1f} {p['unit']}"
        for p in report["peaks"]
        if p["value"]
    ]
    if peaks:
        table.caption = f"measured peak: {'; '.join(peaks)}"
        table.caption_justify = "left"
    for r in report["rows"]:
        ran = r["status"] == "ok"
        note = r["reason"] if not ran else (r["memory_note"] or "")
        table.add_row(
            names.get(r["model_index"], r["model"]),
            r["provider"],
            str(r["batch_size"]),
            _num(r["median_ms"], ".2f"),
            _num(r["p95_ms"], ".2f"),
            _num(r["p99_ms"], ".2f"),
            _num(r["images_per_second"], ",.1f"),
            _num(r["throughput_vs_first"], ".2f", "x"),
            _num(r["peak_rss_mb"], ",.0f"),
            _num(r["macs_per_image"] / 1e6 if r["macs_per_image"] is not None else None, ",.2f"),
            _num(r["achieved_gops"], ",.2f", " " + r["ops_unit"]),
            _num(r["peak_share"] * 100 if r["peak_share"] is not None else None, ".1f", "%"),
            f"[red]{r['status']}[/red]: {note}" if not ran else note,
        )
    return table


def format_accuracy(report: dict[str, Any]) -> Any:
    """A rich Table of accuracy and top-1 agreement, or None when the benchmark had no --data."""
    from rich.table import Table

    if not report.get("accuracy"):
        return None
    table = Table(title=f"accuracy on {report['settings']['data_dir']} (cpu)", title_justify="left")
    for name in ("model", "images", "accuracy", "agrees with first"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for entry in report["accuracy"]:
        if entry["error"]:
            table.add_row(Path(entry["model"]).name, "-", f"[red]{entry['error']}[/red]", "-")
            continue
        table.add_row(
            Path(entry["model"]).name,
            str(entry["images"]),
            _num(entry["accuracy"] * 100, ".2f", "%"),
            _num(
                entry["agreement_with_first"] * 100 if entry["agreement_with_first"] is not None else None,
                ".2f",
                "%",
            ),
        )
    return table


def _num(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"
