"""The doctor's Python, package and ONNX Runtime checks: versions, the runtime build and its providers.

Versions come from package metadata, and the runtime's build info is read as text, so nothing is imported
until a single ONNX Runtime distribution is known to be installed.
"""

from __future__ import annotations

import importlib.util
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)
#: Distributions whose versions the report lists (read from metadata; nothing is imported).
VERSION_PACKAGES = (
    *("numpy", "onnx", "onnxruntime", "onnxruntime-gpu"),
    *OPENCV_DISTRIBUTIONS,
    *("pillow", "typer", "rich", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx"),
)


def python_info() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "in_virtualenv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
    }


def package_versions() -> dict[str, Any]:
    """Installed versions of the packages edgecnn uses (None when not installed), from their metadata."""
    return {name: installed_version(name) for name in VERSION_PACKAGES}


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def onnxruntime_info() -> dict[str, Any]:
    """Installed ONNX Runtime distributions, the clash between two of them, and the build's CUDA version."""
    from edgecnn.runtime.providers import import_onnxruntime, installed_runtimes, runtime_clash_message

    installed = installed_runtimes()
    info: dict[str, Any] = {
        "installed": [{"name": n, "version": v} for n, v in installed],
        "clash": runtime_clash_message(installed),
        "imported": False,
        "version": None,
        "available_providers": [],
        "build": _build_info(),
        "extras": _runtime_extras(installed),
        "error": None,
    }
    if not installed:
        info["error"] = "ONNX Runtime is not installed: pip install onnxruntime-gpu (or onnxruntime)"
    if info["clash"] or not installed:
        return info
    ort = import_onnxruntime()
    info.update(imported=True, version=ort.__version__, available_providers=ort.get_available_providers())
    return info


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _build_info() -> dict[str, str]:
    """onnxruntime/capi/build_and_package_info.py (package name, CUDA version), read as text."""
    root = package_dir("onnxruntime")
    path = root / "capi" / "build_and_package_info.py" if root else None
    if path is None or not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    return dict(re.findall(r"^(\w+)\s*=\s*['\"]([^'\"]*)['\"]", text, flags=re.MULTILINE))


def _runtime_extras(installed: list[tuple[str, str]]) -> list[str]:
    """Extras of the installed ONNX Runtime that pull CUDA/cuDNN wheels (``onnxruntime-gpu[cuda,cudnn]``)."""
    if len(installed) != 1:
        return []
    extras = metadata.metadata(installed[0][0]).get_all("Provides-Extra") or []
    return [e for e in extras if e in ("cuda", "cudnn")]


def provider_statuses(runtime: dict[str, Any], cuda: dict[str, Any]) -> dict[str, Any]:
    """Providers listed by ONNX Runtime against those that really start, with the libraries they miss."""
    from edgecnn.runtime.providers import probe_providers

    if runtime.get("clash") or not runtime.get("imported"):
        reason = runtime.get("clash") or runtime.get("error") or "ONNX Runtime could not be imported"
        return {"listed": [], "probed": [], "error": f"not probed: {reason}"}
    missing = [lib for lib in cuda.get("libraries", []) if not lib["found"]]
    probed = []
    for status in probe_providers():
        entry = status.to_dict()
        from_log = _missing_from_reason(status.reason)
        needed = [lib["name"] for lib in missing if status.name in lib["needed_by"]]
        entry["missing_libraries"] = list(dict.fromkeys([*from_log, *needed])) if not status.works else []
        probed.append(entry)
    return {"listed": list(runtime.get("available_providers", [])), "probed": probed}


def _missing_from_reason(reason: str | None) -> list[str]:
    match = re.search(r"missing libraries ([^;]+)", reason or "")
    return [name.strip() for name in match.group(1).split(",")] if match else []
