"""``edgecnn doctor``: what this machine can run, and why a GPU or a camera is not being used.

Every check runs on its own: one that fails becomes an entry with its error instead of stopping the report.
ONNX Runtime is imported only when a single distribution of it is installed, and TensorFlow never is (its
version comes from the package metadata). The checks live in ``doctor_runtime`` (Python, packages, ONNX
Runtime), ``doctor_gpu`` (CUDA libraries, NVIDIA devices) and ``doctor_opencv`` (OpenCV, cameras); the text
rendering in ``doctor_format``. This module runs them and says what the report means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecnn.core.version import __version__
from edgecnn.tools.doctor_format import format_doctor
from edgecnn.tools.doctor_gpu import (
    PROVIDER_LIBRARIES,
    cuda_libraries,
    load_library,
    missing_dependencies,
    missing_library,
    nvidia_devices,
    nvidia_pip_packages,
)
from edgecnn.tools.doctor_opencv import (
    build_field,
    camera_statuses,
    missing_camera_device,
    opencv_info,
    probe_camera,
)
from edgecnn.tools.doctor_runtime import (
    OPENCV_DISTRIBUTIONS,
    VERSION_PACKAGES,
    onnxruntime_info,
    package_versions,
    provider_statuses,
    python_info,
)

__all__ = [
    "OPENCV_DISTRIBUTIONS",
    "PROVIDER_LIBRARIES",
    "SCHEMA",
    "VERSION_PACKAGES",
    "build_field",
    "camera_statuses",
    "cuda_libraries",
    "findings",
    "format_doctor",
    "load_library",
    "missing_camera_device",
    "missing_dependencies",
    "missing_library",
    "nvidia_devices",
    "nvidia_pip_packages",
    "onnxruntime_info",
    "opencv_info",
    "package_versions",
    "probe_camera",
    "provider_statuses",
    "python_info",
    "run_doctor",
]

SCHEMA = "edgecnn.doctor/1"


def run_doctor(probe_cameras: int = 2) -> dict[str, Any]:
    """Check the runtime, the GPU stack, OpenCV and cameras; never raises for a failing check.

    Args:
        probe_cameras: Camera indices 0..N-1 to try to open (0: none).

    Returns:
        The report: ``schema``, ``ok`` (the CPU provider works), ``edgecnn``, ``python``, ``versions``,
        ``onnxruntime``, ``cuda``, ``nvidia``, ``providers``, ``opencv``, ``cameras``, ``cpu`` and ``findings``
        (a list of {level, message}). A section whose check failed is ``{"error": ...}``.
    """
    report: dict[str, Any] = {"schema": SCHEMA, "ok": False, "edgecnn": __version__}
    report["python"] = _check(python_info)
    report["versions"] = _check(package_versions)
    report["onnxruntime"] = _check(onnxruntime_info)
    build = report["onnxruntime"].get("build") or {}
    # Before the provider probe: the probe preloads pip-installed CUDA libraries into this process.
    report["cuda"] = _check(lambda: cuda_libraries(build))
    report["nvidia"] = _check(nvidia_devices)
    report["providers"] = _check(lambda: provider_statuses(report["onnxruntime"], report["cuda"]))
    report["opencv"] = _check(opencv_info)
    report["cameras"] = _check(lambda: camera_statuses(probe_cameras))
    report["cpu"] = _check(_cpu)
    probed = report["providers"].get("probed") or []
    report["ok"] = any(p["provider"] == "cpu" and p["works"] for p in probed)
    try:
        report["findings"] = findings(report)
    except Exception as exc:  # a malformed section must not cost the user the rest of the report
        report["findings"] = [{"level": "warning", "message": f"cannot summarise the checks: {exc!r}"}]
    return report


def _check(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; a failure becomes ``{"error": ...}`` so the other checks still run."""
    try:
        return fn()
    except Exception as exc:  # the doctor reports every failure instead of stopping at the first
        text = str(exc).strip().splitlines()
        return {"error": f"{type(exc).__name__}: {text[0][:300] if text else 'no message'}"}


def _cpu() -> dict[str, Any]:
    from edgecnn.tools.bench import cpu_info

    return cpu_info()


def findings(report: dict[str, Any]) -> list[dict[str, str]]:
    """What the report means, most important first: {level (error, warning, info), message}."""
    out: list[dict[str, str]] = []

    def add(level: str, message: str) -> None:
        out.append({"level": level, "message": message})

    runtime = report["onnxruntime"]
    if runtime.get("clash"):
        add("error", runtime["clash"])
    elif runtime.get("error"):
        add("error", runtime["error"])
    if not report["ok"] and not runtime.get("clash"):
        add("error", "the CPU execution provider does not start: edgecnn cannot run models here")
    for section in (
        "python",
        "versions",
        "onnxruntime",
        "cuda",
        "nvidia",
        "providers",
        "opencv",
        "cameras",
        "cpu",
    ):
        error = report[section].get("error")
        if error and section not in ("onnxruntime", "providers"):
            add("warning", f"the {section} check failed: {error}")
    _gpu_findings(report, add)
    _opencv_findings(report, add)
    cameras = report["cameras"]
    if cameras.get("probed") and not cameras.get("opened"):
        add(
            "info", f"no camera opened at index {', '.join(map(str, cameras['probed']))} (normal on a server)"
        )
    flags = report["cpu"].get("int8_flags") or {}
    if flags and not any(flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm")):
        add(
            "info",
            "this CPU has no VNNI/dot-product instructions: int8 models may be little faster than float",
        )
        if flags.get("avx2"):
            add(
                "info",
                "ONNX Runtime's int8 kernels on this CPU (AVX2 without VNNI) saturate with 8-bit weights: run "
                "int8 models exported with 7-bit weights (edgecnn export --reduce-range on; auto does it here)",
            )
    return out


def _gpu_findings(report: dict[str, Any], add: Callable[[str, str], None]) -> None:
    runtime, nvidia, cuda = report["onnxruntime"], report["nvidia"], report["cuda"]
    probed = {p["provider"]: p for p in report["providers"].get("probed") or []}
    names = [i["name"] for i in runtime.get("installed", [])]
    if nvidia.get("present") and names == ["onnxruntime"]:
        add(
            "warning",
            "an NVIDIA GPU is present but the CPU-only onnxruntime is installed: "
            "pip uninstall -y onnxruntime && pip install onnxruntime-gpu",
        )
    state = probed.get("cuda")
    if state is None or state["works"] or not state["listed"]:
        return
    if not nvidia.get("present") and not nvidia.get("error"):
        add(
            "info",
            "CUDA is listed by ONNX Runtime but no NVIDIA GPU is visible (no /proc/driver/nvidia, "
            "no /dev/nvidia*): models run on the CPU",
        )
    missing = state.get("missing_libraries") or cuda.get("missing") or []
    driver = [name for name in missing if name.startswith("libcuda.so")]
    toolkit = [name for name in missing if name not in driver]
    if toolkit:
        wanted = cuda.get("wanted") or {}
        extras = runtime.get("extras") or []
        fix = (
            f'pip install "{names[0]}[{",".join(extras)}]"'
            if names and extras
            else f"install CUDA {wanted.get('cuda') or '?'} and cuDNN {wanted.get('cudnn') or '?'}"
        )
        add(
            "warning" if nvidia.get("present") else "info",
            f"CUDA cannot start: missing {', '.join(toolkit[:6])}; this ONNX Runtime wants CUDA "
            f"{wanted.get('cuda') or '?'} and cuDNN {wanted.get('cudnn') or '?'}. Fix: {fix}",
        )
    if driver and nvidia.get("present"):
        add("warning", f"{driver[0]} (part of the NVIDIA driver) does not load: install or repair the driver")
    if not missing and nvidia.get("present"):
        add("warning", f"CUDA cannot start: {state.get('reason')}")


def _opencv_findings(report: dict[str, Any], add: Callable[[str, str], None]) -> None:
    cv = report["opencv"]
    if cv.get("error"):
        return
    if cv.get("clash"):
        add("error", cv["clash"])
    if cv.get("headless"):
        add(
            "info",
            "OpenCV is a headless build (GUI: NONE): live windows cannot be shown; "
            "pip uninstall -y opencv-python-headless && pip install opencv-python for a window",
        )
    elif not cv.get("display", {}).get("available"):
        add("info", "no DISPLAY or WAYLAND_DISPLAY: live windows cannot be shown in this session")
