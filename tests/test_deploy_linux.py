"""`edgecnn bundle` for the Linux targets, offline: a fake wheel index stands in for PyPI (pip reads it through
PIP_FIND_LINKS with PIP_NO_INDEX), so planning, refusals, the runtime choice, the target's markers and the
bundle's layout are tested without a network. The real downloads and installs are in test_deploy_linux_proof.py.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.errors import ConfigError
from edgecnn.tools.deploy import build_bundle
from edgecnn.tools.deploy.wheels import (
    WheelTarget,
    _failure_line,
    build_edgecnn_wheel,
    bundle_requirements,
    missing_requirements,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shapes-cnn.onnx"
TAGS = {"x86_64": "cp311-cp311-manylinux_2_28_x86_64", "aarch64": "cp311-cp311-manylinux_2_28_aarch64"}
X86 = WheelTarget("x86_64", ("manylinux_2_28_x86_64",), "3.11")
ARM = WheelTarget("aarch64", ("manylinux_2_28_aarch64",), "3.11")
runner = CliRunner()


def fake_wheel(
    index: Path, name: str, version: str, tag: str = "py3-none-any", requires: tuple[str, ...] = ()
):
    """A minimal valid wheel: pip downloads it like a real one."""
    dist = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    path = index / f"{dist}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
        zf.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


@pytest.fixture(scope="module")
def edgecnn_wheel(tmp_path_factory) -> Path:
    return build_edgecnn_wheel(tmp_path_factory.mktemp("edgecnn-wheel"))


@pytest.fixture(scope="module")
def index(tmp_path_factory, edgecnn_wheel) -> Path:
    """Wheels of every package a bundle needs, at the versions it pins; onnxruntime for x86_64 only."""
    index = tmp_path_factory.mktemp("index")
    wanted: dict[str, Requirement] = {}
    for target, gpu in ((X86, False), (X86, True), (ARM, False)):
        for req in bundle_requirements(edgecnn_wheel, target, gpu):
            wanted[canonicalize_name(req.name)] = req
    for name, req in wanted.items():
        version = next(iter(req.specifier)).version if req.specifier else "1.0"
        if name in ("onnxruntime", "onnxruntime-gpu"):  # a binary: onnxruntime has no aarch64 wheel here
            fake_wheel(index, name, version, TAGS["x86_64"])
        else:
            fake_wheel(index, name, version)
    from importlib import metadata

    fake_wheel(index, "pip", metadata.version("pip"))
    return index


@pytest.fixture
def offline(monkeypatch, index):
    """pip sees only the fake index: no configuration, no network."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_platform_without_a_wheel_is_refused_before_anything_is_written(offline, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    before = listing(tmp_path)
    result = runner.invoke(
        app, ["bundle", str(MODEL), "--target", "linux-aarch64", "-o", str(tmp_path / "b")]
    )
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()
    assert len(message) <= 3 and "Traceback" not in result.output
    assert "no wheel of onnxruntime==" in result.output and "linux-aarch64, Python 3.11" in result.output
    assert listing(tmp_path) == before  # no folder, no archive, no partial file


def test_an_x86_bundle_holds_the_model_the_wheels_a_lock_and_the_scripts(offline, tmp_path):
    out = tmp_path / "shapes"
    result = runner.invoke(app, ["bundle", str(MODEL), "--target", "linux-x86_64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("install.sh", "run-classify.sh", "run-webcam.sh", "run-serve.sh", "README.txt", MODEL.name):
        assert (out / name).is_file(), name
        assert f"  {name}\n" in result.output  # the contents are printed, with sizes
    assert f"{out}.tar.gz: " in result.output and "files, " in result.output
    for script in ("install.sh", "run-classify.sh", "run-webcam.sh", "run-serve.sh"):
        assert (out / script).stat().st_mode & stat.S_IXUSR
    lock = (out / "requirements-cp311.txt").read_text().split()
    names = {canonicalize_name(line.split("==")[0]) for line in lock}
    # the edge bundle runs on the CPU ONNX Runtime; serve's packages come too; the training side never
    assert {"edgecnn", "onnxruntime", "pip", "starlette", "uvicorn", "opencv-python"} <= names
    assert "onnxruntime-gpu" not in names
    assert not names & {"tensorflow", "keras", "tf2onnx"}
    wheels = {p.name for p in (out / "wheels").glob("*.whl")}
    assert len(wheels) == len(lock)
    assert 'classify --model "$HERE/shapes-cnn.onnx"' in (out / "run-classify.sh").read_text()
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["target"] == "linux-x86_64" and manifest["runtime"] == "onnxruntime"
    assert set(manifest["files"]) == {p for p in listing(out) if (out / p).is_file()} - {"bundle.json"}
    with tarfile.open(f"{out}.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {f"shapes/{p}" for p in listing(out)} | {"shapes"} == set(members)
    assert members["shapes/install.sh"].mode & stat.S_IXUSR


def test_gpu_carries_the_cuda_runtime_on_x86_and_is_refused_on_aarch64(offline, tmp_path):
    summary = build_bundle(MODEL, "linux-x86_64", tmp_path / "gpu", gpu=True)
    lock = (summary.path / "requirements-cp311.txt").read_text()
    assert "onnxruntime-gpu==" in lock and "\nonnxruntime==" not in lock
    with pytest.raises(ConfigError, match="onnxruntime-gpu publishes no wheel for linux-aarch64"):
        build_bundle(MODEL, "linux-aarch64", tmp_path / "arm", gpu=True)
    assert not (tmp_path / "arm").exists()


def test_an_existing_bundle_is_kept_unless_forced(offline, tmp_path):
    out = tmp_path / "b"
    build_bundle(MODEL, "linux-x86_64", out)
    (out / "mine.txt").write_text("x")
    result = runner.invoke(app, ["bundle", str(MODEL), "--target", "linux-x86_64", "-o", str(out)])
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert (out / "mine.txt").exists()
    build_bundle(MODEL, "linux-x86_64", out, force=True)
    assert not (out / "mine.txt").exists() and (out / "install.sh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "b.tar.gz"]  # no partial or old folder left


def test_the_targets_markers_choose_the_packages_not_the_build_machines(edgecnn_wheel, tmp_path):
    """pip evaluates markers for the machine it runs on: the bundle evaluates them for the board."""
    arm = {canonicalize_name(r.name) for r in bundle_requirements(edgecnn_wheel, ARM, gpu=False)}
    assert "onnxruntime" in arm and "onnxruntime-gpu" not in arm and "uvloop" in arm
    assert not arm & {"tensorflow", "keras", "tf2onnx"}
    fake_wheel(tmp_path, "needs-arm", "1.0", requires=("arm-helper>=2; platform_machine == 'aarch64'",))
    assert [str(r) for r in missing_requirements(tmp_path, ARM)] == ["arm-helper>=2"]
    assert missing_requirements(tmp_path, X86) == []
    fake_wheel(tmp_path, "arm-helper", "2.0")
    assert missing_requirements(tmp_path, ARM) == []


def test_a_dependency_only_the_board_needs_is_downloaded(offline, tmp_path, monkeypatch):
    """A wheel whose requirement is marked for aarch64: pip on this PC skips it, the bundle fetches it."""
    index = tmp_path / "index"
    index.mkdir()
    for wheel in offline.glob("*.whl"):
        (index / wheel.name).symlink_to(wheel)
    runtime = next(offline.glob("onnxruntime-[0-9]*.whl"))
    version = runtime.name.split("-")[1]
    fake_wheel(
        index,
        "onnxruntime",
        version,
        TAGS["aarch64"],
        requires=("arm-helper; platform_machine == 'aarch64'",),
    )
    fake_wheel(index, "arm-helper", "1.0")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    summary = build_bundle(MODEL, "linux-aarch64", tmp_path / "arm")
    lock = (summary.path / "requirements-cp311.txt").read_text()
    assert "arm-helper==1.0" in lock and f"onnxruntime=={version}" in lock


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--target", "linux-aarch64", "--python", "2.7"],
            "--python '2.7': give a CPython version from 3.10",
        ),
        (["--target", "linux-riscv"], "Invalid value for '--target'"),
        (["--target", "web", "--gpu"], "--gpu and --python apply to the linux targets"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["bundle", str(MODEL), *args, "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_an_edgecnn_model_is_refused(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not onnx")
    result = runner.invoke(app, ["bundle", str(bad), "--target", "linux-x86_64", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "x.onnx" in result.output
    assert not (tmp_path / "b").exists()


def test_pips_failure_becomes_one_line_naming_the_package():
    output = (
        "ERROR: Could not find a version that satisfies the requirement onnxruntime-gpu==1.31.1 (from versions: none)\n"
        "ERROR: No matching distribution found for onnxruntime-gpu==1.31.1\n"
    )
    line = _failure_line(output, ARM, "linux-aarch64")
    assert line.startswith("no wheel of onnxruntime-gpu==1.31.1 for linux-aarch64, Python 3.11")
    assert "\n" not in line
    offline = "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')\nERROR: x\n"
    assert "could not reach the package index" in _failure_line(offline, ARM, "linux-aarch64")
