"""The wheels of a Linux bundle: edgecnn's own wheel, and every dependency's wheel for the target platform.

pip evaluates environment markers (``platform_machine``, ``python_version``) against the machine it runs on,
even with ``--platform``: asked for an aarch64 bundle on a PC it would pick ``onnxruntime-gpu``, which has no
aarch64 wheel. So edgecnn's own requirements are evaluated here for the target (``target_environment``), the
ONNX Runtime is chosen by one rule (``runtime_distribution``), pip downloads that list for the target's tags,
and ``missing_requirements`` checks every downloaded wheel's own requirements under the target's markers,
downloading what the build machine's markers left out.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from edgecnn.core.errors import ConfigError, DependencyError

#: The extras a bundle installs: the inference side and ``edgecnn serve``; never ``train`` (TensorFlow).
BUNDLE_EXTRAS = ("serve",)
#: Distributions that would bring the training side; a bundle refuses to carry them.
TRAINING_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "tf-keras")
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class WheelTarget:
    """A platform and Python version that wheels are downloaded for."""

    machine: str  # platform_machine: x86_64, aarch64
    platforms: tuple[str, ...]  # pip --platform tags; pip also accepts the older manylinux tags they imply
    python: str  # "3.11"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")


def target_environment(target: WheelTarget) -> dict[str, str]:
    """The marker environment of a CPython ``target.python`` on Linux ``target.machine``."""
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        platform_machine=target.machine,
        python_version=target.python,
        python_full_version=target.python + ".0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        implementation_version=target.python + ".0",
    )
    return env


def runtime_distribution(machine: str, gpu: bool) -> str:
    """The ONNX Runtime a bundle carries: the CPU package at the edge, the CUDA one only when asked for.

    Raises:
        ConfigError: ``gpu`` on a machine that ONNX Runtime publishes no CUDA wheel for.
    """
    if not gpu:
        return "onnxruntime"
    if machine != "x86_64":
        raise ConfigError(
            f"--gpu: onnxruntime-gpu publishes no wheel for linux-{machine}; "
            "leave --gpu out (the bundle runs on the CPU) or bundle for linux-x86_64"
        )
    return "onnxruntime-gpu"


def _is_runtime(name: str) -> bool:
    return canonicalize_name(name) in ("onnxruntime", "onnxruntime-gpu")


def wheel_requirements(wheel: Path) -> tuple[str, list[Requirement]]:
    """The name and the ``Requires-Dist`` entries of a wheel file."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        meta = email.parser.Parser().parsestr(zf.read(name).decode("utf-8"))
    return meta["Name"], [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def applies(req: Requirement, env: dict[str, str], extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` is needed on ``env`` when ``extras`` are installed: the one marker rule."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras))


def pinned(req: Requirement) -> Requirement:
    """``req`` pinned to the version installed here when it satisfies it: the bundle carries what runs here."""
    name = canonicalize_name(req.name)
    candidates = ("onnxruntime-gpu", "onnxruntime") if _is_runtime(name) else (name,)
    for candidate in candidates:
        try:
            version = metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
        if req.specifier.contains(version, prereleases=True):
            return Requirement(
                f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}=={version}"
            )
    return Requirement(
        f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}"
    )


def bundle_requirements(edgecnn_wheel: Path, target: WheelTarget, gpu: bool) -> list[Requirement]:
    """edgecnn's requirements with the serve extra, for the target, its ONNX Runtime chosen, pinned to here."""
    _, reqs = wheel_requirements(edgecnn_wheel)
    env = target_environment(target)
    runtime = runtime_distribution(target.machine, gpu)
    chosen: dict[str, Requirement] = {}
    for req in reqs:
        if not applies(req, env, BUNDLE_EXTRAS) and not _is_runtime(req.name):
            continue
        if _is_runtime(req.name):
            if runtime in chosen:
                continue
            req = Requirement(f"{runtime}{req.specifier}")
        req.marker = None
        chosen[canonicalize_name(req.name)] = pinned(req)
    return list(chosen.values())


def missing_requirements(wheel_dir: Path, target: WheelTarget, skip: Sequence[str] = ()) -> list[Requirement]:
    """Requirements of the wheels in ``wheel_dir`` (on the target's markers) that no wheel there provides.

    ``skip`` names wheels whose requirements were resolved already (edgecnn's own, its runtime swapped).
    """
    env = target_environment(target)
    wheels = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheel_dir.glob("*.whl")}
    missing: dict[str, Requirement] = {}
    for name, wheel in sorted(wheels.items()):
        if name in skip:
            continue
        for req in wheel_requirements(wheel)[1]:
            # extras a wheel's dependents asked for are not known here; its base requirements are what
            # every install needs
            if applies(req, env) and canonicalize_name(req.name) not in wheels:
                req.marker = None
                missing.setdefault(canonicalize_name(req.name), req)
    return list(missing.values())


def _failure_line(output: str, target: WheelTarget, label: str) -> str:
    """pip's failure as one line that names the package."""
    where = f"{label}, Python {target.python}"
    found = re.findall(r"No matching distribution found for ([^\s]+)", output)
    if found:
        return (
            f"no wheel of {found[-1]} for {where}: a bundle installs offline, so every package needs a wheel "
            "for the board; choose another --python or target"
        )
    conflict = re.search(r"conflict is caused by:\s*\n((?:\s+.+\n?)+)", output)
    if conflict:
        lines = "; ".join(line.strip() for line in conflict.group(1).splitlines() if line.strip())
        return f"the requirements for {where} conflict: {lines}"
    if re.search(
        r"NewConnectionError|Name or service not known|Network is unreachable|name resolution", output
    ):
        return "could not reach the package index to download the bundle's wheels (pip's settings apply)"
    last = [line for line in output.splitlines() if line.startswith("ERROR:")]
    return f"pip could not download the wheels for {where}: " + (
        last[-1][6:].strip() if last else "no reason given"
    )


def pip_download(
    requirements: Sequence[Requirement | str], target: WheelTarget, dest: Path, label: str
) -> None:
    """Download the wheels of ``requirements`` and their dependencies for ``target`` into ``dest``.

    Raises:
        ConfigError: A package has no wheel for the target (named), or the requirements conflict.
        DependencyError: pip failed otherwise (the package index out of reach, for example).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-input", "--disable-pip-version-check"]
    cmd += [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--abi",
        target.abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    cmd += ["--python-version", target.python.replace(".", ""), "-d", str(dest)]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    cmd += [str(r) for r in requirements]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DependencyError(f"pip download for {label} took over {PIP_TIMEOUT_S} s; try again") from None
    if result.returncode != 0:
        line = _failure_line(result.stdout + result.stderr, target, label)
        if line.startswith(("no wheel", "the requirements")):
            raise ConfigError(line)
        raise DependencyError(line)


def download_for(edgecnn_wheel: Path, target: WheelTarget, gpu: bool, dest: Path, label: str) -> list[Path]:
    """Every wheel edgecnn[serve] needs on ``target``, in ``dest`` (edgecnn's and pip's own included).

    Returns:
        The wheel files, sorted by name: the install lock of this Python version.
    """
    shutil.copy2(edgecnn_wheel, dest / edgecnn_wheel.name)
    pip_download(
        [*bundle_requirements(edgecnn_wheel, target, gpu), pinned(Requirement("pip"))], target, dest, label
    )
    for _ in range(5):  # what the build machine's markers left out, and then its own dependencies
        missing = missing_requirements(dest, target, skip=("edgecnn",))
        if not missing:
            break
        pip_download(missing, target, dest, label)
    else:
        names = ", ".join(sorted(str(r) for r in missing))
        raise DependencyError(f"the wheels for {label}, Python {target.python} still lack {names}")
    wheels = sorted(dest.glob("*.whl"))
    training = [
        w.name for w in wheels if canonicalize_name(parse_wheel_filename(w.name)[0]) in TRAINING_DISTRIBUTIONS
    ]
    if training:  # a dependency pulled the training side in: the bundle would not be the inference side
        raise DependencyError(f"the bundle's dependencies bring in the training side: {', '.join(training)}")
    return wheels


def source_root() -> Path:
    """The source tree edgecnn is running from.

    Raises:
        DependencyError: edgecnn runs from an installed copy; its wheel is built from a source checkout.
    """
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"edgecnn"', pyproject.read_text(encoding="utf-8")):
        return root
    raise DependencyError(
        "`edgecnn bundle` builds edgecnn's own wheel from its source checkout; run it from a clone "
        "(pip install -e .) rather than an installed copy"
    )


def build_edgecnn_wheel(dest: Path) -> Path:
    """edgecnn's own wheel, built from a copy of its source tree (the checkout is left untouched).

    Raises:
        DependencyError: No source tree, or the build failed.
    """
    root = source_root()
    with tempfile.TemporaryDirectory(prefix="edgecnn-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in ("edgecnn", "models"):
            shutil.copytree(root / name, src / name, ignore=ignore)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).exists():
                shutil.copy2(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-input"]
        result = subprocess.run(
            [*cmd, "--disable-pip-version-check", str(src), "-w", str(dest)],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            env={**os.environ, "PIP_NO_INDEX": "1"},
        )
    wheels = sorted(dest.glob("edgecnn-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DependencyError(f"building edgecnn's wheel failed: {tail[0]}")
    return wheels[-1]
