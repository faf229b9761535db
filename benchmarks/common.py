"""Shared helpers for the benchmark scripts: the machine description, timing, and result files.

Every script writes ``benchmarks/results/<name>.json`` with the machine it ran on; ``report.py`` turns those
files into the tables of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "datasets"
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # training's --precision auto uses bfloat16 with these

logging.basicConfig(level=logging.INFO, format="%(message)s")  # the library's progress lines


def machine() -> dict[str, Any]:
    """CPU model, cores, int8- and bfloat16-relevant instruction sets and library versions."""
    cpu = platform.processor() or ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions = {}
    for name in (
        "numpy",
        "onnx",
        "onnxruntime-gpu",
        "onnxruntime",
        "opencv-python",
        "pillow",
        "tensorflow",
        "keras",
        "tf2onnx",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "int8_instructions": [f for f in INT8_FLAGS if f in flags],
        "bf16_instructions": [f for f in BF16_FLAGS if f in flags],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *_portable_argv(sys.argv)]),
        "machine": machine(),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(_portable(payload), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}")
    return path


def _portable(value: Any) -> Any:
    """Paths inside the repository become relative, paths beside it become ../...: no machine paths."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str):
        value = _TEMP.sub("<temporary folder>", value)
        return (
            value.replace(str(REPO) + "/", "").replace(str(REPO.parent) + "/", "../").replace(str(REPO), ".")
        )
    return value


# Scratch folders from tempfile.mkdtemp/TemporaryDirectory: their names say nothing and differ per run.
_TEMP = re.compile(re.escape(tempfile.gettempdir()) + r"/tmp[A-Za-z0-9_]+")


def _portable_argv(argv: list[str]) -> list[str]:
    """The arguments with paths made relative to the repository; a path elsewhere on this machine (a scratch
    folder) is replaced by its option's name in capitals (``--photos /tmp/x`` -> ``--photos PHOTOS``)."""
    out = []
    for i, arg in enumerate(argv):
        rel = _rel(arg)
        if rel == arg and Path(arg).is_absolute() and i and argv[i - 1].startswith("--"):
            rel = argv[i - 1].lstrip("-").upper().replace("-", "_")
        out.append(rel)
    return out


def _rel(arg: str) -> str:
    try:
        p = Path(arg).resolve()
        return (
            str(p.relative_to(REPO))
            if p.is_relative_to(REPO)
            else (f"../{p.relative_to(REPO.parent)}" if p.is_relative_to(REPO.parent) else arg)
        )
    except (OSError, ValueError):
        return arg


def dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        sys.exit(f"{path} not found: these benchmarks use the real datasets beside the repository")
    return path


def train_fresh(data: Path, out: Path, options: list[str]) -> tuple[float, dict[str, Any]]:
    """Run `edgecnn train DATA --out OUT --quiet OPTIONS` in a fresh process (it owns the cores).

    Returns:
        The wall time in seconds, end to end, and the run's report.json.
    """
    cmd = [str(Path(sys.executable).with_name("edgecnn")), "train", str(data), "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, *options], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"edgecnn train {' '.join(options)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "report.json").read_text())


def vgg16_run(folder: Path, calib_dir: Path, calib_size: int = 64) -> Any:
    """A VGG16 run folder (224 px, weights none: speed does not depend on the weights) exported to fp32 and int8.

    Returns:
        The ExportResult (``.output`` is the fp32 file, ``.int8.output`` the int8 file).
    """
    from edgecnn.conversion.convert import export_all
    from edgecnn.core.contract import InputSpec, ModelContract
    from edgecnn.training.models import build_vgg16

    spec = InputSpec.square(224)
    built = build_vgg16(spec, 2, weights="none")
    built.model.save(folder / "model.keras")
    contract = ModelContract(
        labels=("cats", "dogs"), input=spec, arch="vgg16", normalization=built.normalization
    )
    (folder / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    return export_all(
        folder, int8=True, calib_dir=calib_dir, calib_size=calib_size, force=True, accuracy_gate=False
    )
