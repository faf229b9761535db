"""The machine a benchmark ran on: CPU model, cores, int8 instruction sets, the GPU when a GPU row ran,
versions and peak memory.

Peak memory is the process's resident-set high-water mark, read from ``/proc/self/status`` (Linux only) and
reset through ``/proc/self/clear_refs`` before each benchmark row.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.cpuinfo import cpu_fields
from edgecnn.core.version import __version__

#: CPU flags that decide how fast int8 (and fp32) kernels can be on this machine.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx")
ARM_INT8_FLAGS = ("asimddp", "i8mm")


def cpu_info() -> dict[str, Any]:
    """CPU model name, core counts and the instruction-set flags that matter for int8 kernels."""
    fields = cpu_fields()
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
        "int8_flags": flags if fields else {},
        "int8_kernels": _int8_kernels(flags) if fields else "unknown (no /proc/cpuinfo)",
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


def gpu_info(ort: Any, device_id: int = 0) -> dict[str, Any]:
    """The GPU block of a benchmark report: name, driver, compute capability, the CUDA (and cuDNN) versions
    this ONNX Runtime was built for, the TensorRT version, and the nvidia-* and TensorRT pip packages."""
    from edgecnn.runtime.cuda import gpu_facts
    from edgecnn.runtime.tensorrt import tensorrt_version
    from edgecnn.tools.doctor_gpu import nvidia_pip_packages

    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:
        build = None
    return {
        **gpu_facts(device_id),
        "onnxruntime": getattr(ort, "__version__", None),
        "cuda_build": getattr(build, "cuda_version", None),
        "cudnn_build": getattr(build, "cudnn_version", None),
        "tensorrt": tensorrt_version(),
        "pip_packages": {p["name"]: p["version"] for p in nvidia_pip_packages()},
    }


def describe_gpu(gpu: dict[str, Any] | None) -> str | None:
    """One line for a table title: 'NVIDIA H100, driver 550.54, CUDA 12.4 build, TensorRT 10.3'."""
    if not gpu:
        return None
    parts = [str(gpu.get("name") or "unknown GPU")]
    for key, words in (("driver", "driver {}"), ("cuda_build", "CUDA {} build"), ("tensorrt", "TensorRT {}")):
        if gpu.get(key):
            parts.append(words.format(gpu[key]))
    return ", ".join(parts)


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
