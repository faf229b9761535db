"""edgecnn doctor: the report's keys, the verdict, runtime clashes, honest GPU findings, robustness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.tools import doctor, doctor_gpu, doctor_opencv
from edgecnn.tools.doctor import (
    SCHEMA,
    build_field,
    format_doctor,
    load_library,
    missing_dependencies,
    missing_library,
    run_doctor,
)

SECTIONS = ("python", "versions", "onnxruntime", "cuda", "nvidia", "providers", "opencv", "cameras", "cpu")


@pytest.fixture(scope="module")
def report() -> dict:
    return run_doctor(probe_cameras=1)


def test_report_has_the_documented_keys(report: dict):
    assert report["schema"] == SCHEMA == "edgecnn.doctor/1"
    assert {"ok", "edgecnn", "findings", *SECTIONS} <= set(report)
    for section in SECTIONS:
        assert isinstance(report[section], dict)
        assert "error" not in report[section] or section in ("onnxruntime", "providers"), report[section]
    assert {"installed", "clash", "version", "available_providers", "build"} <= set(report["onnxruntime"])
    assert {"wanted", "libraries", "missing", "pip_packages"} <= set(report["cuda"])
    assert {"present", "driver", "device_nodes", "gpus"} <= set(report["nvidia"])
    assert {"version", "gui", "headless", "display", "camera_backends", "stream_backends"} <= set(
        report["opencv"]
    )
    assert {"model", "logical_cores", "int8_flags"} <= set(report["cpu"])
    assert {"numpy", "onnx", "pillow", "typer", "tensorflow", "keras", "tf2onnx"} <= set(report["versions"])
    assert all({"level", "message"} == set(f) for f in report["findings"])
    json.dumps(report, allow_nan=False)


def test_ok_when_the_cpu_provider_works(report: dict):
    assert report["ok"] is True
    probed = {p["provider"]: p for p in report["providers"]["probed"]}
    assert probed["cpu"]["works"] is True
    assert "CPUExecutionProvider" in report["providers"]["listed"]
    assert report["onnxruntime"]["clash"] is None
    assert report["onnxruntime"]["version"]


def test_cuda_listed_but_not_starting_names_a_missing_library(report: dict):
    probed = {p["provider"]: p for p in report["providers"]["probed"]}
    cuda = probed.get("cuda")
    if cuda is None or not cuda["listed"]:
        pytest.skip("this ONNX Runtime build has no CUDA provider")
    if cuda["works"]:
        pytest.skip("CUDA works on this machine")
    assert cuda["reason"]
    if not report["nvidia"]["present"] and not cuda["missing_libraries"]:
        assert "no NVIDIA GPU" in cuda["reason"]
        return
    assert cuda["missing_libraries"], cuda
    assert all(".so" in name or ".dll" in name for name in cuda["missing_libraries"])
    messages = " ".join(f["message"] for f in report["findings"])
    assert cuda["missing_libraries"][0] in messages or "libcuda" in cuda["missing_libraries"][0]


def test_cameras_that_do_not_exist_are_reported_not_raised(report: dict):
    cameras = report["cameras"]
    assert cameras["probed"] == [0]
    result = cameras["results"][0]
    assert result["opened"] != bool(result["error"]), result
    if sys.platform.startswith("linux") and not Path("/dev/video0").exists():
        assert result == {"index": 0, "opened": False, "backend": None, "error": "no /dev/video0 device"}


def test_two_runtimes_give_the_clash_message_and_no_import(monkeypatch: pytest.MonkeyPatch):
    import edgecnn.runtime.providers as runtime

    fake = [("onnxruntime", "1.31.1"), ("onnxruntime-gpu", "1.31.1")]
    monkeypatch.setattr(runtime, "installed_runtimes", lambda: fake)
    result = run_doctor(probe_cameras=0)
    clash = result["onnxruntime"]["clash"]
    assert "onnxruntime 1.31.1" in clash and "onnxruntime-gpu 1.31.1" in clash
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in clash
    assert result["onnxruntime"]["imported"] is False
    assert result["providers"]["probed"] == [] and "not probed" in result["providers"]["error"]
    assert result["ok"] is False
    assert result["findings"][0] == {"level": "error", "message": clash}
    assert "CLASH" in format_doctor(result)


def test_a_failing_check_becomes_an_entry(monkeypatch: pytest.MonkeyPatch):
    def broken() -> dict:
        raise RuntimeError("cv2 exploded\nsecond line")

    monkeypatch.setattr(doctor, "opencv_info", broken)
    result = run_doctor(probe_cameras=0)
    assert result["opencv"] == {"error": "RuntimeError: cv2 exploded"}
    assert result["ok"] is True
    text = format_doctor(result)
    assert "check failed: RuntimeError: cv2 exploded" in text
    assert any("opencv check failed" in f["message"] for f in result["findings"])


def test_format_doctor_names_every_section(report: dict):
    text = format_doctor(report)
    assert text.splitlines()[0].endswith("OK: the CPU provider works")
    for section in SECTIONS:
        assert f"\n{section}" in text


def test_build_field_reads_the_gui_backend():
    info = "General configuration\n  GUI:                           NONE\n    GTK+:     NO\n  Video I/O:\n"
    assert build_field(info, "GUI") == "NONE"
    assert build_field("  GUI:   GTK3\n    GTK+:  YES (ver 3.24)\n", "GUI") == "GTK3"
    assert build_field("nothing here", "GUI") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loader messages are glibc's")
def test_a_failed_load_names_the_missing_library(tmp_path: Path):
    absent = load_library("libedgecnn-absent.so.7")
    assert absent["found"] is False and absent["where"] is None
    assert absent["error"].startswith("libedgecnn-absent.so.7: cannot open shared object file")
    assert missing_library(absent["error"]) == "libedgecnn-absent.so.7"
    not_a_library = tmp_path / "libfake.so"
    not_a_library.write_bytes(b"not an ELF file at all")
    broken = load_library(str(not_a_library))
    assert broken["found"] is False and str(not_a_library) in broken["error"]
    assert missing_library(broken["error"]) is None
    assert missing_dependencies(not_a_library) == []


class FakeLoader:
    """Stands in for ctypes.CDLL: each library needs at most one other, found by name once loaded."""

    needs = {"libprovider.so": "libA.so.1", "libA.so.1": "libB.so.2"}

    def __init__(self, wheel: set[str]) -> None:
        self.wheel = {f"/wheel/{name}" for name in wheel}
        self.loaded: set[str] = set()

    def __call__(self, name: str) -> None:
        base = name.rsplit("/", 1)[-1]
        if name not in ("/ort/libprovider.so", *self.wheel) and base not in self.loaded:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        dependency = self.needs.get(base)
        if dependency and dependency not in self.loaded:
            raise OSError(f"{dependency}: cannot open shared object file: No such file or directory")
        self.loaded.add(base)


@pytest.mark.parametrize("wheel", [{"libA.so.1"}, {"libA.so.1", "libB.so.2"}])
def test_missing_dependencies_follow_the_loader_through_wheels(monkeypatch: pytest.MonkeyPatch, wheel):
    loader = FakeLoader(wheel)
    monkeypatch.setattr(doctor_gpu.ctypes, "CDLL", loader)
    monkeypatch.setattr(
        doctor_gpu, "_pip_library_files", lambda name: [Path(f"/wheel/{name}")] if name in wheel else []
    )
    assert missing_dependencies("/ort/libprovider.so") == ["libA.so.1", "libB.so.2"]
    if "libB.so.2" in wheel:
        assert loader.loaded == {"libB.so.2", "libA.so.1", "libprovider.so"}
        assert load_library("libA.so.1") == {"found": True, "where": "system loader", "error": None}
    else:
        assert loader.loaded == set()
        assert load_library("libA.so.1") == {
            "found": False,
            "where": "/wheel/libA.so.1",
            "error": "present but does not load: libB.so.2: cannot open shared object file: "
            "No such file or directory",
        }


def test_doctor_and_benchmark_never_import_tensorflow():
    code = (
        "import sys; from edgecnn.tools.doctor import run_doctor; import edgecnn.tools.bench; run_doctor(0); "
        "assert not [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules], sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class FakeCapture:
    """Stands in for cv2.VideoCapture: opens at once, refuses, or hangs like a stuck driver."""

    delay = 0.0
    opens = True
    released: list[int] = []

    def __init__(self, index: int) -> None:
        import time

        time.sleep(self.delay)
        self.index = index

    def isOpened(self) -> bool:  # OpenCV spells it so
        return self.opens

    def getBackendName(self) -> str:
        return "FAKE"

    def release(self) -> None:
        FakeCapture.released.append(self.index)


def test_camera_probe_opens_releases_and_times_out(monkeypatch: pytest.MonkeyPatch):
    import cv2

    monkeypatch.setattr(doctor_opencv, "missing_camera_device", lambda index: None)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    FakeCapture.released = []
    assert doctor.probe_camera(3, timeout=5) == {"index": 3, "opened": True, "backend": "FAKE", "error": None}
    assert FakeCapture.released == [3]
    monkeypatch.setattr(FakeCapture, "delay", 1.0)
    slow = doctor.probe_camera(4, timeout=0.1)
    assert slow["opened"] is False and slow["error"] == "no answer within 0.1 s"
    monkeypatch.setattr(FakeCapture, "delay", 0.0)
    monkeypatch.setattr(FakeCapture, "opens", False)
    refused = doctor.probe_camera(5, timeout=5)
    assert refused == {"index": 5, "opened": False, "backend": None, "error": "cannot be opened"}
    assert 5 in FakeCapture.released


def test_an_avx2_cpu_without_vnni_is_told_about_seven_bit_weights(report: dict):
    """The finding follows the CPU's flags: AVX2 without VNNI gets it, a VNNI CPU does not."""
    import copy

    from edgecnn.tools.doctor import findings

    def messages(flags):
        changed = copy.deepcopy(report)
        changed["cpu"]["int8_flags"] = flags
        return " ".join(f["message"] for f in findings(changed))

    base = {"avx2": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": False, "amx": False}
    assert "--reduce-range on" in messages(base)
    assert "--reduce-range" not in messages({**base, "avx512f": True, "avx512_vnni": True})
