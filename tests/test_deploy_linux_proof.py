"""Proof that the Linux bundles install offline and give the source install's answers (docs/deploy.md).

- linux-x86_64: the bundle's install.sh in a fresh virtual environment (pip --no-index, no pip configuration)
  classifies samples/ with the source install's labels and probabilities within 1e-6.
- linux-aarch64: Debian's arm64 Python (bookworm packages fetched with apt and unpacked into a root folder)
  under qemu-user: the same install.sh and run script, the same top-1 as x86_64, fp32 probabilities within
  1e-4, int8 within INT8_BOUND (measured: ARM's int8 kernels are not x86's). Emulated time is no speed figure.

These download from the package index and emulate a CPU: marked ``deploy`` (make deploy-check,
make deploy-check-arm64). Downloads are cached under ~/.cache/edgecnn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecnn
from edgecnn.tools.deploy import build_bundle

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
FP32 = ROOT / "models" / "shapes-cnn.onnx"
INT8 = ROOT / "models" / "shapes-cnn.int8.onnx"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecnn"
#: aarch64 against x86_64, measured on samples/ (docs/deploy.md). The model alone (the same decoded inputs on both
#: machines): fp32 2.4e-7 (the issue's 1e-4 holds), int8 0.0, bounded at 1e-3 for ARM's own int8 kernels.
#: From the files: fp32 3.0e-7, int8 0.0 (the area resize is exact, so both machines feed the model the same
#: bytes; OpenCV's own INTER_AREA put 12 of circle-transparent.png's 6,912 values one level apart: 1.8e-4).
INT8_BOUND = 1e-3
FP32_FILE_BOUND = 1e-4
INT8_FILE_BOUND = 1e-3
#: Debian bookworm's arm64 Python and what OpenCV's wheel needs from the system (libGL, GLib).
ARM64_PACKAGES = ("python3.11", "libgl1", "libglib2.0-0")
#: Every sample image, sorted: the same list in each run.
PROBE = """
import json, sys
from pathlib import Path
import numpy as np
import edgecnn
from edgecnn.core.imaging import load_image
out = {}
files = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix in (".jpg", ".png"))
for model in sys.argv[2:]:
    m = edgecnn.load(model, provider="cpu", threads=1)
    out[Path(model).name] = {p.name: m.predict(p).probabilities for p in files}
    # the model alone: the same decoded inputs (decoded on x86_64, saved beside the model) on each machine
    inputs = np.load(model + ".inputs.npy")
    out[Path(model).name + " inputs"] = {p.name: r.probabilities for p, r in zip(files, m.predict(inputs))}
print(json.dumps(out))
"""


def probabilities(python: list[str], models: list[Path], env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        [*python, "-c", PROBE, str(SAMPLES), *map(str, models)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd="/",  # the bundle's edgecnn, not the checkout's
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def source_probabilities(models: list[Path]) -> dict:
    """The source install's answers; also saves each model's decoded inputs for the model-only comparison."""
    from edgecnn.core.imaging import load_image

    out = {}
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    for model in models:
        m = edgecnn.load(model, provider="cpu", threads=1)
        out[model.name] = {p.name: m.predict(p).probabilities for p in files}
        inputs = np.stack([load_image(p, m.contract.input) for p in files])
        out[model.name + " inputs"] = {p.name: r.probabilities for p, r in zip(files, m.predict(inputs))}
    return out


def staged_models(models: list[Path], where: Path) -> list[Path]:
    """Copies of ``models`` with their decoded samples beside them (model.onnx.inputs.npy)."""
    from edgecnn.core.imaging import load_image

    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    staged = []
    for model in models:
        copy = where / model.name
        shutil.copy2(model, copy)
        spec = edgecnn.load(model, provider="cpu").contract.input
        np.save(f"{copy}.inputs.npy", np.stack([load_image(p, spec) for p in files]))
        staged.append(copy)
    return staged


def compare(a: dict, b: dict) -> tuple[int, int, float]:
    """(images, same top-1, largest probability difference) of two runs of one model."""
    same, worst = 0, 0.0
    for name, probs in a.items():
        labels = sorted(probs)
        pa, pb = np.array([probs[k] for k in labels]), np.array([b[name][k] for k in labels])
        same += int(labels[pa.argmax()] == labels[pb.argmax()])
        worst = max(worst, float(np.abs(pa - pb).max()))
    return len(a), same, worst


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a board: no PYTHONPATH into the checkout, no pip configuration or index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", **extra}


def install(bundle: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["sh", str(bundle / "install.sh")], capture_output=True, text=True, timeout=1800, env=env, cwd="/"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def x86_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("x86") / "shapes-x86_64"
    return build_bundle(FP32, "linux-x86_64", out).path


def test_the_x86_64_bundle_installs_offline_and_agrees_with_the_source_install(x86_bundle):
    base = getattr(sys, "_base_executable", sys.executable)  # a fresh venv: not this one's packages
    env = clean_env(PYTHON=base)
    install(x86_bundle, env)
    venv_python = x86_bundle / "venv" / "bin" / "python"
    where = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import edgecnn, onnxruntime; print(edgecnn.__file__, onnxruntime.__file__)",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd="/",
    )
    assert str(x86_bundle / "venv") in where.stdout and str(ROOT) not in where.stdout, (
        where.stdout + where.stderr
    )
    run = subprocess.run(
        [str(x86_bundle / "run-classify.sh"), str(SAMPLES), "-o", str(x86_bundle / "r.csv"), "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd="/",
        timeout=600,
    )
    assert run.returncode == 0 and "11 classified" in run.stderr + run.stdout, run.stderr[-2000:]
    models = staged_models([FP32, INT8], x86_bundle.parent)
    bundled, source = probabilities([str(venv_python)], models, clean_env()), source_probabilities(models)
    for key in sorted(source):
        n, same, worst = compare(bundled[key], source[key])
        print(f"x86_64 bundle vs source, {key}: {same}/{n} top-1, largest difference {worst:.2e}")
        assert n == 11 and same == n and worst <= 1e-6


def arm64_rootfs() -> Path:
    """Debian bookworm's arm64 Python unpacked into a root folder (cached): apt for arm64, dpkg-deb -x."""
    root = CACHE / "arm64-rootfs" / "root"
    if (root / "usr" / "bin" / "python3.11").exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.fail("the arm64 proof needs Debian's apt-get and dpkg-deb")
    if (
        "arm64"
        not in subprocess.run(
            ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
        ).stdout
    ):
        subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    debs = CACHE / "arm64-rootfs" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    status = debs.parent / "empty-status"
    status.write_text("")
    # the packages' dependency closure as a system without any package would need it
    uris = subprocess.run(
        [
            "apt-get",
            "-o",
            f"Dir::State::status={status}",
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Architecture=arm64",
            "--print-uris",
            "-qq",
            "install",
            "--no-install-recommends",
            "-y",
            *(f"{p}:arm64" for p in ARM64_PACKAGES),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = []
    for filename in (u for u in uris if u.endswith(".deb") and not u.startswith("'")):
        name, version, arch = filename[: -len(".deb")].split("_")
        names.append(f"{name}:{arch}={version.replace('%3a', ':')}")
    subprocess.run(["apt-get", "download", "-qq", *names], cwd=debs, check=True, capture_output=True)
    partial = root.with_name("root.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    # qemu-user 7 passes the PC's /proc/cpuinfo through; ONNX Runtime's CPU probe needs an ARM one there
    (partial / "proc").mkdir(exist_ok=True)
    core = (
        "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    )
    (partial / "proc" / "cpuinfo").write_text("".join(core.format(i=i) for i in range(os.cpu_count() or 1)))
    partial.rename(root)
    return root


def test_the_aarch64_bundle_installs_offline_under_qemu_and_agrees_with_x86_64(tmp_path):
    if shutil.which("qemu-aarch64") is None:
        pytest.fail("the arm64 proof needs qemu-user (apt install qemu-user)")
    root = arm64_rootfs()
    bundle = build_bundle(FP32, "linux-aarch64", tmp_path / "shapes-aarch64").path
    assert "onnxruntime-gpu" not in (bundle / "requirements-cp311.txt").read_text()
    launcher = f"qemu-aarch64 -L {root}"
    env = clean_env(LAUNCHER=launcher, PYTHON=str(root / "usr" / "bin" / "python3.11"))
    install(bundle, env)
    machine = subprocess.run(
        [
            *launcher.split(),
            str(bundle / "venv" / "bin" / "python"),
            "-c",
            "import platform; print(platform.machine())",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd="/",
    )
    assert machine.stdout.strip() == "aarch64", machine.stderr
    run = subprocess.run(
        [str(bundle / "run-classify.sh"), str(SAMPLES), "-o", str(tmp_path / "r.csv"), "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env(LAUNCHER=launcher),
        cwd="/",
        timeout=1800,
    )
    assert run.returncode == 0 and "11 classified" in run.stderr + run.stdout, run.stderr[-2000:]
    models = staged_models([FP32, INT8], tmp_path)
    arm = probabilities([*launcher.split(), str(bundle / "venv" / "bin" / "python")], models, clean_env())
    x86 = source_probabilities(models)
    bounds = {
        FP32.name: FP32_FILE_BOUND,
        FP32.name + " inputs": 1e-4,
        INT8.name: INT8_FILE_BOUND,
        INT8.name + " inputs": INT8_BOUND,
    }
    for key, bound in bounds.items():
        n, same, worst = compare(arm[key], x86[key])
        print(f"aarch64 (qemu) vs x86_64, {key}: {same}/{n} top-1, largest difference {worst:.2e}")
        assert n == 11 and same == n and worst <= bound
