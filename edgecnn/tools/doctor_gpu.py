"""The doctor's GPU checks: the CUDA, cuDNN and TensorRT libraries ONNX Runtime needs, the NVIDIA driver and
devices, and the pip packages that provide missing TensorRT libraries.

Every library is tried with ``ctypes``: a failed load's message is the dynamic loader's own answer to "which
library is missing" (``libcudnn.so.9: cannot open shared object file``).
"""

from __future__ import annotations

import ctypes
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn.tools.doctor_runtime import package_dir

#: Provider libraries of an ONNX Runtime GPU build, by short provider name.
PROVIDER_LIBRARIES = {
    "cuda": "libonnxruntime_providers_cuda.so",
    "tensorrt": "libonnxruntime_providers_tensorrt.so",
}
#: The loader's message for a library (or a library's dependency) it cannot find.
_NOT_FOUND = re.compile(r"([^\s:]+): cannot open shared object file")
#: Dependencies followed per provider library; a chain longer than this is a broken installation anyway.
_MAX_DEPENDENCIES = 16


def cuda_libraries(build: dict[str, str]) -> dict[str, Any]:
    """Which CUDA/cuDNN libraries the installed ONNX Runtime needs, and whether each one loads.

    A library loads either through the system loader (LD_LIBRARY_PATH, ldconfig) or from an nvidia-* pip
    wheel, which ONNX Runtime preloads before it starts a GPU session.
    """
    cuda_major = (build.get("cuda_version") or "").split(".")[0]
    cudnn_major = (build.get("cudnn_version") or "").split(".")[0] or "9"
    info: dict[str, Any] = {
        "wanted": {
            "cuda": build.get("cuda_version"),
            "cudnn": build.get("cudnn_version") or f"{cudnn_major}.x",
        },
        "pip_packages": nvidia_pip_packages(),
        "libraries": [],
        "missing": [],
    }
    if not sys.platform.startswith("linux"):
        info["note"] = "library checks run on Linux only"
        return info
    if not cuda_major:
        info["note"] = "this ONNX Runtime is not a CUDA build (no cuda_version in its build info)"
        return info
    for name, needed_by in _wanted_libraries(cuda_major, cudnn_major).items():
        info["libraries"].append({"name": name, "needed_by": needed_by, **load_library(name)})
    info["missing"] = [lib["name"] for lib in info["libraries"] if not lib["found"]]
    info["tensorrt"] = tensorrt_libraries(info["libraries"], build.get("cuda_version"))
    return info


def tensorrt_libraries(libraries: list[dict[str, Any]], cuda_version: str | None) -> dict[str, Any]:
    """TensorRT's libraries as the provider library needs them, its version, and the pip requirement that
    installs the missing ones (``tensorrt-cu<CUDA major>-libs`` of the right TensorRT major version)."""
    from edgecnn.runtime.tensorrt import pip_requirement, tensorrt_version

    needed = [lib for lib in libraries if lib["name"].startswith("libnv")]
    missing = [lib["name"] for lib in needed if not lib["found"]]
    return {
        "needed": [lib["name"] for lib in needed],
        "version": tensorrt_version(),
        "missing": missing,
        "pip": f'pip install "{pip_requirement(missing[0], cuda_version)}"' if missing else None,
    }


def nvidia_pip_packages() -> list[dict[str, str]]:
    """nvidia-* (CUDA, cuDNN) and TensorRT wheels installed in this environment."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(("nvidia-", "tensorrt")):
            found[name] = dist.version
    return [{"name": n, "version": v} for n, v in sorted(found.items())]


def _wanted_libraries(cuda_major: str, cudnn_major: str) -> dict[str, list[str]]:
    """Library name -> providers needing it: the CUDA driver and core libraries, cuDNN (which the CUDA
    provider opens at run time), and whatever the provider libraries' own load attempts report missing."""
    wanted: dict[str, list[str]] = {}
    for name in (
        f"libcudart.so.{cuda_major}",
        f"libcublas.so.{cuda_major}",
        f"libcublasLt.so.{cuda_major}",
        f"libcudnn.so.{cudnn_major}",
        "libcuda.so.1",
    ):
        wanted[name] = ["cuda", "tensorrt"]
    root = package_dir("onnxruntime")
    for provider, filename in PROVIDER_LIBRARIES.items():
        path = root / "capi" / filename if root else None
        if path is None or not path.is_file():
            continue
        if provider == "tensorrt":  # named in the library itself: the loader stops at the first one missing
            from edgecnn.runtime.tensorrt import needed_libraries

            for name in needed_libraries(path):
                wanted.setdefault(name, ["tensorrt"])
        for name in missing_dependencies(path):
            users = wanted.setdefault(name, [])
            if provider not in users:
                users.append(provider)
    return wanted


def missing_dependencies(path: str | Path) -> list[str]:
    """The libraries the loader names while trying to load ``path``, in the order it meets them.

    The loader stops at the first library it cannot find. That one is then tried on its own: a copy in an
    nvidia-* wheel that loads is kept loaded, as ONNX Runtime's preload would, and the load that needed it
    tried again; a copy that does not load names its own missing dependency. The chain ends at a library that
    neither the system loader nor a wheel provides, or when everything loads.
    """
    names: list[str] = []
    pending = [str(path)]
    while pending and len(names) < _MAX_DEPENDENCIES:
        result = load_library(pending[-1])
        if result["found"]:
            pending.pop()
            continue
        name = missing_library(result["error"])
        if name is None or name in names:
            break
        names.append(name)
        pending.append(name)
    return names


def missing_library(error: str | None) -> str | None:
    """The library a failed load could not find, from the loader's message; None for any other failure."""
    match = _NOT_FOUND.search(error or "")
    return match.group(1) if match else None


def load_library(name: str) -> dict[str, Any]:
    """Try the system loader, then nvidia-* wheels; {found, where, error}."""
    try:
        ctypes.CDLL(name)
        return {"found": True, "where": "system loader", "error": None}
    except OSError as exc:
        error = str(exc)
    for path in _pip_library_files(name):
        try:
            ctypes.CDLL(str(path))
            return {"found": True, "where": str(path), "error": None}
        except OSError as exc:
            return {"found": False, "where": str(path), "error": f"present but does not load: {exc}"}
    return {"found": False, "where": None, "error": error}


def _pip_library_files(name: str) -> list[Path]:
    """Copies of a library inside nvidia-* wheels (site-packages/nvidia/<package>/lib/) and TensorRT wheels
    (site-packages/tensorrt_libs/)."""
    if "/" in name:
        return []
    found = []
    for entry in sys.path:
        nvidia = Path(entry or ".") / "nvidia"
        if nvidia.is_dir():
            found.extend(sorted(nvidia.glob(f"*/lib/{name}")))
        tensorrt = Path(entry or ".") / "tensorrt_libs" / name
        if tensorrt.is_file():
            found.append(tensorrt)
    return found


def nvidia_devices() -> dict[str, Any]:
    """The NVIDIA kernel driver, its version, device nodes and GPU models (Linux; WSL via /dev/dxg)."""
    driver = Path("/proc/driver/nvidia")
    version = _read_first_line(driver / "version")
    gpus = []
    for info in sorted(driver.glob("gpus/*/information")) if driver.is_dir() else []:
        model = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), flags=re.MULTILINE)
        gpus.append(model.group(1).strip() if model else info.parent.name)
    nodes = sorted(str(p) for p in Path("/dev").glob("nvidia*")) if Path("/dev").is_dir() else []
    wsl = Path("/dev/dxg").exists()
    return {
        "present": driver.is_dir() or any(re.search(r"nvidia\d+$", n) for n in nodes) or wsl,
        "driver": driver.is_dir(),
        "driver_version": version,
        "device_nodes": nodes,
        "gpus": gpus,
        "wsl_gpu": wsl,
    }


def _read_first_line(path: Path) -> str | None:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[0].strip() if lines else None
