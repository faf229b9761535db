"""``edgecnn doctor``: what this machine can run, and why a GPU or a camera is not being used.

Every check runs on its own: one that fails becomes an entry with its error instead of stopping the report.
ONNX Runtime is imported only when a single distribution of it is installed, and TensorFlow never is (its
version comes from the package metadata).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import re
import struct
import sys
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn.core.version import __version__

SCHEMA = "edgecnn.doctor/1"
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
#: Provider libraries of an ONNX Runtime GPU build, by short provider name.
PROVIDER_LIBRARIES = {
    "cuda": "libonnxruntime_providers_cuda.so",
    "tensorrt": "libonnxruntime_providers_tensorrt.so",
}
#: Libraries every Linux system has; they are not worth reporting as CUDA dependencies.
_SYSTEM_LIBRARY = re.compile(r"^(ld-linux.*|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s|util|z)\.so.*)$")
_CAMERA_TIMEOUT_S = 3.0


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


# ---------------------------------------------------------------------------------------------------------
# Python and packages


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
    versions: dict[str, Any] = {}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def nvidia_pip_packages() -> list[dict[str, str]]:
    """nvidia-* (CUDA, cuDNN) and TensorRT wheels installed in this environment."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(("nvidia-", "tensorrt")):
            found[name] = dist.version
    return [{"name": n, "version": v} for n, v in sorted(found.items())]


# ---------------------------------------------------------------------------------------------------------
# ONNX Runtime


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


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _build_info() -> dict[str, str]:
    """onnxruntime/capi/build_and_package_info.py (package name, CUDA version), read as text."""
    root = _package_dir("onnxruntime")
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


# ---------------------------------------------------------------------------------------------------------
# CUDA and cuDNN libraries, the NVIDIA driver and devices


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
        info["libraries"].append({"name": name, "needed_by": needed_by, **_load_library(name)})
    info["missing"] = [lib["name"] for lib in info["libraries"] if not lib["found"]]
    return info


def _wanted_libraries(cuda_major: str, cudnn_major: str) -> dict[str, list[str]]:
    """Library name -> providers needing it: the provider libraries' ELF dependencies, plus cuDNN
    (which the CUDA provider opens at run time) and the core CUDA libraries."""
    wanted: dict[str, list[str]] = {}
    for name in (
        f"libcudart.so.{cuda_major}",
        f"libcublas.so.{cuda_major}",
        f"libcublasLt.so.{cuda_major}",
        f"libcudnn.so.{cudnn_major}",
    ):
        wanted[name] = ["cuda", "tensorrt"]
    root = _package_dir("onnxruntime")
    for provider, filename in PROVIDER_LIBRARIES.items():
        path = root / "capi" / filename if root else None
        if path is None or not path.is_file():
            continue
        for name in elf_needed(path):
            if not _SYSTEM_LIBRARY.match(name):
                users = wanted.setdefault(name, [])
                if provider not in users:
                    users.append(provider)
    return wanted


def _load_library(name: str) -> dict[str, Any]:
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
    """Copies of a library inside nvidia-* wheels (site-packages/nvidia/<package>/lib/)."""
    found = []
    for entry in sys.path:
        nvidia = Path(entry or ".") / "nvidia"
        if nvidia.is_dir():
            found.extend(sorted(nvidia.glob(f"*/lib/{name}")))
    return found


def elf_needed(path: str | os.PathLike[str]) -> list[str]:
    """The DT_NEEDED entries (shared libraries it links against) of a 64-bit ELF file; [] for others."""
    with open(path, "rb") as fh:
        header = fh.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
            return []
        order = "<" if header[5] == 1 else ">"
        (section_offset,) = struct.unpack_from(order + "Q", header, 0x28)
        entry_size, count = struct.unpack_from(order + "HH", header, 0x3A)
        fh.seek(section_offset)
        table = fh.read(entry_size * count)
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        sections = [struct.unpack_from(order + "IIQQQQIIQQ", table, i * entry_size) for i in range(count)]
        for section in sections:
            if section[1] != 6:  # SHT_DYNAMIC
                continue
            fh.seek(section[4])
            dynamic = fh.read(section[5])
            strings_section = sections[section[6]]
            fh.seek(strings_section[4])
            strings = fh.read(strings_section[5])
            needed = []
            for offset in range(0, len(dynamic) - 15, 16):
                tag, value = struct.unpack_from(order + "qQ", dynamic, offset)
                if tag == 0:  # DT_NULL ends the table
                    break
                if tag == 1:  # DT_NEEDED: an offset into the string table
                    needed.append(strings[value : strings.index(b"\0", value)].decode("utf-8", "replace"))
            return needed
    return []


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


# ---------------------------------------------------------------------------------------------------------
# OpenCV and cameras


def opencv_info() -> dict[str, Any]:
    """OpenCV's version, GUI backend (NONE: a headless build), display and video I/O backends."""
    import cv2

    installed = [(n, v) for n in OPENCV_DISTRIBUTIONS if (v := _version(n))]
    gui = build_field(cv2.getBuildInformation(), "GUI") or "unknown"
    registry = cv2.videoio_registry

    def names(backends: Any) -> list[str]:
        return list(dict.fromkeys(registry.getBackendName(b) for b in backends))

    display = {name: os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")}
    has_display = any(display.values()) or not sys.platform.startswith("linux")
    clash = None
    if len(installed) > 1:
        listing = " ".join(n for n, _ in installed)
        clash = (
            f"several OpenCV packages are installed ({listing}); they share the import name 'cv2'. "
            f"Fix: pip uninstall -y {listing} && pip install opencv-python"
        )
    return {
        "version": cv2.__version__,
        "installed": [{"name": n, "version": v} for n, v in installed],
        "clash": clash,
        "gui": gui,
        "headless": gui.upper() == "NONE",
        "display": {**display, "available": has_display},
        "can_show_windows": gui.upper() != "NONE" and has_display,
        "backends": names(registry.getBackends()),
        "camera_backends": names(registry.getCameraBackends()),
        "stream_backends": names(registry.getStreamBackends()),
        "writer_backends": names(registry.getWriterBackends()),
    }


def build_field(build_information: str, name: str) -> str | None:
    """The value of one ``name:`` line of cv2.getBuildInformation() (e.g. "GUI" -> "GTK3" or "NONE")."""
    match = re.search(rf"^\s*{re.escape(name)}:[ \t]*(.*)$", build_information, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def camera_statuses(count: int, timeout: float = _CAMERA_TIMEOUT_S) -> dict[str, Any]:
    """Try to open camera indices 0..count-1, releasing each at once; none opening is normal on servers."""
    results = [probe_camera(i, timeout) for i in range(max(0, count))]
    return {
        "probed": [r["index"] for r in results],
        "opened": [r["index"] for r in results if r["opened"]],
        "results": results,
    }


def probe_camera(index: int, timeout: float = _CAMERA_TIMEOUT_S) -> dict[str, Any]:
    """Open one camera in a worker thread, give up after ``timeout`` seconds, release it at once."""
    result: dict[str, Any] = {"index": index, "opened": False, "backend": None, "error": None}
    result["error"] = missing_camera_device(index)
    if result["error"]:
        return result
    from edgecnn.core.nativeio import capture_native_output

    def attempt() -> None:
        import cv2

        try:
            capture = cv2.VideoCapture(index)
            try:
                if capture.isOpened():
                    result.update(opened=True, backend=capture.getBackendName())
            finally:
                capture.release()
        except Exception as exc:  # OpenCV raises cv2.error for a broken backend
            result["error"] = str(exc).strip()[:200] or type(exc).__name__

    worker = threading.Thread(target=attempt, name=f"edgecnn-camera-{index}", daemon=True)
    with capture_native_output() as log:  # OpenCV logs its own warnings for a camera it cannot open
        worker.start()
        worker.join(timeout)
    if worker.is_alive():
        result["error"] = f"no answer within {timeout:g} s"
    elif not result["opened"] and not result["error"]:
        result["error"] = log[-1][:200] if log else "cannot be opened"
    return result


def missing_camera_device(index: int) -> str | None:
    """Why camera ``index`` cannot exist (Linux: no /dev/videoN), or None when it may; saves a slow open."""
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        return f"no /dev/video{index} device"
    return None


def _cpu() -> dict[str, Any]:
    from edgecnn.tools.bench import cpu_info

    return cpu_info()


# ---------------------------------------------------------------------------------------------------------
# Findings and rendering


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


def format_doctor(report: dict[str, Any]) -> str:
    """Human-readable lines for ``edgecnn doctor``."""
    verdict = "OK: the CPU provider works" if report["ok"] else "NOT OK: the CPU provider does not work here"
    lines = [f"edgecnn doctor {report['edgecnn']}: {verdict}"]
    for title, render in (
        ("python", _fmt_python),
        ("onnxruntime", _fmt_runtime),
        ("providers", _fmt_providers),
        ("cuda", _fmt_cuda),
        ("nvidia", _fmt_nvidia),
        ("opencv", _fmt_opencv),
        ("cameras", _fmt_cameras),
        ("cpu", _fmt_cpu),
        ("versions", _fmt_versions),
    ):
        section = report.get(title) or {}
        body = [f"check failed: {section['error']}"] if section.get("error") and title != "providers" else []
        try:
            body = body or render(section) or ["-"]
        except (KeyError, TypeError, ValueError) as exc:  # a partial section still prints the rest
            body = [f"cannot show ({type(exc).__name__}: {exc})"]
        lines.append(f"{title:<12}{body[0]}")
        lines.extend(f"{'':<12}{line}" for line in body[1:])
    marks = {"error": "x", "warning": "!", "info": "-"}
    if report.get("findings"):
        lines.append("findings")
        lines.extend(f"  {marks.get(f['level'], '-')} {f['message']}" for f in report["findings"])
    return "\n".join(lines)


def _fmt_python(s: dict[str, Any]) -> list[str]:
    venv = ", virtual environment" if s.get("in_virtualenv") else ""
    return [f"{s['version']} ({s['implementation']}, {s['platform']}{venv})"]


def _fmt_runtime(s: dict[str, Any]) -> list[str]:
    installed = ", ".join(f"{i['name']} {i['version']}" for i in s.get("installed", [])) or "not installed"
    build = s.get("build") or {}
    cuda = f", built for CUDA {build['cuda_version']}" if build.get("cuda_version") else ""
    lines = [f"{installed}{cuda}"]
    if s.get("clash"):
        lines.append(f"CLASH: {s['clash']}")
    return lines


def _fmt_providers(s: dict[str, Any]) -> list[str]:
    if s.get("error"):
        return [str(s["error"])]
    lines = [f"listed: {', '.join(s.get('listed') or []) or 'none'}"]
    for p in s.get("probed", []):
        state = "works" if p["works"] else ("listed, cannot start" if p["listed"] else "not in this build")
        reason = f" ({p['reason']})" if p["reason"] and not p["works"] and p["listed"] else ""
        lines.append(f"{p['provider']}: {state}{reason}")
    return lines


def _fmt_cuda(s: dict[str, Any]) -> list[str]:
    wanted = s.get("wanted") or {}
    lines = [f"wanted: CUDA {wanted.get('cuda') or '-'}, cuDNN {wanted.get('cudnn') or '-'}"]
    if s.get("note"):
        lines.append(s["note"])
    found = [f"{lib['name']} ({lib['where']})" for lib in s.get("libraries", []) if lib["found"]]
    lines.append(f"found: {', '.join(found) or 'none'}")
    lines.append(f"missing: {', '.join(s.get('missing') or []) or 'none'}")
    pip = ", ".join(f"{p['name']} {p['version']}" for p in s.get("pip_packages", []))
    lines.append(f"nvidia pip packages: {pip or 'none'}")
    return lines


def _fmt_nvidia(s: dict[str, Any]) -> list[str]:
    if not s.get("present"):
        return ["no NVIDIA GPU visible (no /proc/driver/nvidia, no /dev/nvidia*)"]
    lines = [f"driver: {s.get('driver_version') or ('WSL' if s.get('wsl_gpu') else 'not loaded')}"]
    lines.extend(f"gpu: {g}" for g in s.get("gpus", []))
    if s.get("device_nodes"):
        lines.append(f"devices: {' '.join(s['device_nodes'])}")
    return lines


def _fmt_opencv(s: dict[str, Any]) -> list[str]:
    installed = ", ".join(f"{i['name']} {i['version']}" for i in s.get("installed", [])) or "cv2"
    gui = f"GUI {s['gui']}" + (" (headless build)" if s.get("headless") else "")
    display = (
        "display available" if s["display"]["available"] else "no display (DISPLAY/WAYLAND_DISPLAY unset)"
    )
    return [
        f"{s['version']} ({installed}); {gui}; {display}",
        f"camera backends: {', '.join(s.get('camera_backends') or []) or 'none'}",
        f"stream backends: {', '.join(s.get('stream_backends') or []) or 'none'}",
    ]


def _fmt_cameras(s: dict[str, Any]) -> list[str]:
    if not s.get("probed"):
        return ["not probed"]
    return [
        f"{r['index']}: opened ({r['backend']})" if r["opened"] else f"{r['index']}: {r['error']}"
        for r in s.get("results", [])
    ]


def _fmt_cpu(s: dict[str, Any]) -> list[str]:
    flags = " ".join(name for name, on in (s.get("int8_flags") or {}).items() if on) or "none"
    return [
        f"{s['model']} ({s['architecture']}), {s['logical_cores']} logical cores, {s['usable_cores']} usable",
        f"int8: {s['int8_kernels']} (flags: {flags})",
    ]


def _fmt_versions(s: dict[str, Any]) -> list[str]:
    present = [f"{name} {version}" for name, version in s.items() if version]
    return [", ".join(present[i : i + 6]) for i in range(0, len(present), 6)]
