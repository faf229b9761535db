"""Rendering of the doctor's report as the text ``edgecnn doctor`` prints, one block per section."""

from __future__ import annotations

from typing import Any


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
