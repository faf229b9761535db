"""Execution providers, honestly: which ONNX Runtime is installed, which providers really start, and why not.

ONNX Runtime lists CUDA and TensorRT as available wherever the GPU package is installed, then falls back to
the CPU when a session cannot start them, logging the reason to the process's stderr. Only a session's
``get_providers()`` says what runs; the probes here start one and read the log for a one-line reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import DependencyError
from edgecnn.core.nativeio import capture_native_output

PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)
SHORT_NAMES = {v: k for k, v in PROVIDERS.items()}
#: Distributions that install the ``onnxruntime`` import package; two at once overwrite each other's files.
RUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-training",
    "ort-nightly",
    "ort-nightly-gpu",
)


def installed_runtimes() -> list[tuple[str, str]]:
    """(distribution name, version) of every installed ONNX Runtime distribution."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in RUNTIME_DISTRIBUTIONS:
            found[name] = dist.version
    return sorted(found.items())


def runtime_clash_message(runtimes: Sequence[tuple[str, str]]) -> str | None:
    """The fix for two ONNX Runtime distributions installed together, or None when there is no clash."""
    if len(runtimes) < 2:
        return None
    names = [name for name, _ in runtimes]
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in names else names[0]
    listing = ", ".join(f"{n} {v}" for n, v in runtimes)
    return (
        f"several ONNX Runtime packages are installed ({listing}); they share the import name 'onnxruntime' "
        f"and overwrite each other. Fix: pip uninstall -y {' '.join(names)} && pip install {keep}"
    )


def import_onnxruntime() -> Any:
    """Import ONNX Runtime, refusing a clash of two distributions with the command that fixes it.

    Raises:
        DependencyError: ONNX Runtime is missing or installed twice.
    """
    clash = runtime_clash_message(installed_runtimes())
    if clash:
        raise DependencyError(clash)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError(
            f"ONNX Runtime is not installed ({exc}): pip install onnxruntime-gpu (or onnxruntime)"
        ) from None
    # ONNX Runtime's default logger is process-wide and left as the program set it; our sessions set their own
    # severity (SessionOptions.log_severity_level), and provider start-up logs are captured where they happen.
    return ort


def explain_provider_failure(provider: str, log_lines: Sequence[str], hint: str | None = None) -> str:
    """Turn ONNX Runtime's log of a failed provider into one line: missing libraries, no device, or the log.

    Args:
        provider: Short name (cuda, tensorrt).
        log_lines: What ONNX Runtime logged while the session started.
        hint: A clause to add, e.g. the TensorRT libraries missing and the pip package providing them.
    """
    reason = _explain(provider, log_lines)
    return f"{reason}; {hint}" if hint else reason


def _explain(provider: str, log_lines: Sequence[str]) -> str:
    missing = []
    for line in log_lines:
        for lib in re.findall(
            r"([\w.+-]+\.so(?:\.[\d.]+)?|[\w.+-]+\.dll): cannot open shared object file", line
        ):
            if lib not in missing:
                missing.append(lib)
        for lib in re.findall(r"Failed to load ([\w.+-]+\.(?:so[\d.]*|dll))", line):
            if lib not in missing:
                missing.append(lib)
    requirement = ""
    for line in log_lines:
        m = re.search(r"Require (cuDNN [^ ]+ and CUDA [^ .]+(?:\.\*)?)", line)
        if m:
            requirement = f"; this ONNX Runtime needs {m.group(1)}"
            break
    if missing:
        return f"{provider} cannot start: missing libraries {', '.join(missing[:6])}{requirement}"
    if not has_nvidia_device():
        return f"{provider} cannot start: no NVIDIA GPU device found on this machine{requirement}"
    errors = [line for line in log_lines if "[E:" in line or "Error" in line or "error" in line]
    detail = (errors or list(log_lines) or ["no reason given by ONNX Runtime"])[0]
    return f"{provider} cannot start: {detail[:200]}"


def has_nvidia_device() -> bool:
    """True when an NVIDIA GPU device node or driver is visible (Linux), or on other systems (unknown)."""
    if os.name != "posix" or not Path("/dev").exists():
        return True
    if Path("/dev/dxg").exists():  # WSL2 exposes the GPU through /dev/dxg, without /dev/nvidia*
        return True
    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def preload_cuda_libraries(ort: Any, tensorrt: bool = False) -> None:
    """Let ONNX Runtime find CUDA/cuDNN installed from pip (nvidia-* wheels) before creating a GPU session,
    and with ``tensorrt`` the TensorRT libraries of a ``tensorrt-cu*-libs`` wheel."""
    if tensorrt:
        from edgecnn.runtime.tensorrt import (
            needed_libraries,
            preload_tensorrt_libraries,
            provider_library_path,
        )

        library = provider_library_path(ort)
        if library is not None:
            preload_tensorrt_libraries(needed_libraries(library))
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with capture_native_output(), contextlib.redirect_stdout(io.StringIO()):
        try:
            preload()  # reports what it cannot load with print(): not for the user's terminal
        except Exception:  # preload is best effort; the session creation reports the real reason
            pass


@dataclass
class ProviderStatus:
    """Whether one execution provider really starts here."""

    name: str  # short name (cpu, cuda, tensorrt) or ONNX Runtime's name for others
    listed: bool
    works: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.name, "listed": self.listed, "works": self.works, "reason": self.reason}


def _tiny_model_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return bytes(onnx._serialize(model)) if hasattr(onnx, "_serialize") else model.SerializeToString()


def probe_providers(names: Sequence[str] | None = None) -> list[ProviderStatus]:
    """Start a one-node session on each provider and report which really run (not just which are listed).

    Args:
        names: Short names to probe (default: cpu, cuda, tensorrt and whatever else this build lists).
    """
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    full_names = (
        [PROVIDERS.get(n, n) for n in names]
        if names
        else list(dict.fromkeys([*PROVIDERS.values(), *available]))
    )
    model = _tiny_model_bytes()
    statuses = []
    for full in full_names:
        short = SHORT_NAMES.get(full, full)
        if full not in available:
            statuses.append(ProviderStatus(short, False, False, "not in this ONNX Runtime build"))
            continue
        if full in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            preload_cuda_libraries(ort, tensorrt=full == "TensorrtExecutionProvider")
        with capture_native_output() as log:  # the default logger's warnings say why a provider cannot start
            try:
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                session = ort.InferenceSession(
                    model, sess_options=opts, providers=[full, "CPUExecutionProvider"]
                )
                session.run(None, {"x": np.ones((1, 4), np.float32)})
                actual = session.get_providers()
                error = None
            except Exception as exc:  # a provider can also fail at run time
                actual, error = [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        works = bool(actual) and actual[0] == full
        reason = None if works else (error or explain_provider_failure(short, log, failure_hint(ort, short)))
        statuses.append(ProviderStatus(short, True, works, reason))
    return statuses


def failure_hint(ort: Any, provider: str) -> str | None:
    """What to install when ``provider`` cannot start: for TensorRT, its missing libraries and pip package."""
    if provider != "tensorrt":
        return None
    from edgecnn.runtime.tensorrt import runtime_hint

    try:
        return runtime_hint(ort)
    except Exception:  # the hint is extra; the reason itself still stands
        return None
