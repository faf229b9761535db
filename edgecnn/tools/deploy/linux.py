"""Linux bundles: a folder and a .tar.gz that install an edgecnn model and its runtime on a board, offline.

Plan, then commit: the model, the options and the output paths are checked, then edgecnn's wheel is built
and every wheel is downloaded into a temporary folder, where the bundle is assembled and archived. Only a
complete bundle is moved into place (folder and archive renamed together, Ctrl-C held meanwhile); a refusal
or a failed download leaves the output location exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from edgecnn.core.errors import ConfigError, ModelFileError, OutputError
from edgecnn.core.interrupts import deferred_interrupts
from edgecnn.core.onnxfile import load_onnx, read_contract
from edgecnn.core.version import __version__
from edgecnn.tools.deploy.scripts import install_script, readme, run_scripts
from edgecnn.tools.deploy.wheels import WheelTarget, build_edgecnn_wheel, download_for, runtime_distribution

log = logging.getLogger("edgecnn")

#: The Linux targets: platform_machine and the pip platform tags their wheels are chosen by. manylinux_2_28
#: (glibc 2.28: Debian 10+, Raspberry Pi OS buster+, Ubuntu 20.04+) is what ONNX Runtime publishes for aarch64.
LINUX_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "linux-x86_64": ("x86_64", ("manylinux_2_28_x86_64", "manylinux2014_x86_64")),
    "linux-aarch64": ("aarch64", ("manylinux_2_28_aarch64", "manylinux2014_aarch64")),
}
DEFAULT_PYTHONS = ("3.11",)
#: requires-python of edgecnn, and the newest CPython the dependencies publish wheels for in general.
PYTHON_RANGE = ((3, 10), (3, 14))


@dataclass(frozen=True)
class BundleSummary:
    """What a bundle command made.

    Attributes:
        path: The bundle folder.
        archive: The .tar.gz of the folder (None for targets without one).
        files: (path inside the bundle, bytes) of every file, sorted.
        bytes: The folder's size.
        archive_bytes: The archive's size.
    """

    path: Path
    archive: Path | None
    files: list[tuple[str, int]]
    bytes: int
    archive_bytes: int = 0


def check_pythons(pythons: Sequence[str]) -> tuple[str, ...]:
    """The Python versions a bundle is built for, as "3.11", deduplicated in order.

    Raises:
        ConfigError: A version that is not 3.N or that edgecnn does not run on.
    """
    result: list[str] = []
    for text in pythons or DEFAULT_PYTHONS:
        match = re.fullmatch(r"(?:cp)?3\.?(\d{1,2})", text.strip())
        version = (3, int(match.group(1))) if match else None
        if version is None or not PYTHON_RANGE[0] <= version <= PYTHON_RANGE[1]:
            low, high = (".".join(map(str, v)) for v in PYTHON_RANGE)
            raise ConfigError(f"--python {text!r}: give a CPython version from {low} to {high}, such as 3.11")
        if f"3.{version[1]}" not in result:
            result.append(f"3.{version[1]}")
    return tuple(result)


def archive_path(out_dir: Path) -> Path:
    """Where the .tar.gz of a bundle folder goes: beside it, named after it."""
    return out_dir.with_name(out_dir.name + ".tar.gz")


def check_output(out_dir: Path, force: bool) -> None:
    """Refuse an output that exists (unless ``force``) or cannot be created; nothing is written.

    Raises:
        OutputError: The folder or its archive exists, a file is in the way, or the location is not writable.
    """
    for path in (out_dir, archive_path(out_dir)):
        if path.exists() and not force:
            raise OutputError(f"{path} exists; pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file; give a folder name for the bundle")
    if archive_path(out_dir).is_dir():
        raise OutputError(f"{archive_path(out_dir)} is a folder; the bundle's archive goes there")
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}")


def check_model(model: Path) -> str:
    """The model's file name, after checking that it is an edgecnn ONNX model.

    Raises:
        ModelFileError: Missing, not ONNX, or without the edgecnn contract.
    """
    if model.suffix.lower() != ".onnx":
        raise ModelFileError(f"{model}: a bundle carries an .onnx model (export a .keras one first)")
    read_contract(load_onnx(model), what=str(model))
    return model.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.write_text(text, encoding="utf-8")
    if executable:
        path.chmod(0o755)


def _lock(wheels: Sequence[Path]) -> str:
    lines = []
    for wheel in wheels:
        name, version, _, _ = parse_wheel_filename(wheel.name)
        lines.append(f"{name}=={version}")
    return "\n".join(sorted(set(lines), key=str.lower)) + "\n"


def _assemble(
    stage: Path,
    model: Path,
    target: str,
    machine: str,
    pythons: Sequence[str],
    runtime: str,
    locks: dict[str, str],
) -> None:
    """Everything but the wheels (already in ``stage/wheels``): model, locks, scripts, README, manifest."""
    shutil.copy2(model, stage / model.name)
    for python, lock in locks.items():
        _write(stage / f"requirements-cp{python.replace('.', '')}.txt", lock)
    _write(stage / "install.sh", install_script(target, pythons), executable=True)
    for name, text in run_scripts(model.name).items():
        _write(stage / name, text, executable=True)
    _write(
        stage / "README.txt", readme(stage.name, target, machine, pythons, model.name, runtime, __version__)
    )
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    manifest = {
        "edgecnn": __version__,
        "target": target,
        "pythons": list(pythons),
        "runtime": runtime,
        "model": model.name,
        "files": {p.relative_to(stage).as_posix(): _sha256(p) for p in files},
    }
    _write(stage / "bundle.json", json.dumps(manifest, indent=2) + "\n")


def _archive(stage: Path, dest: Path, name: str) -> None:
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        tar.add(stage, arcname=name, recursive=False)
        for path in sorted(stage.rglob("*")):
            tar.add(path, arcname=f"{name}/{path.relative_to(stage).as_posix()}", recursive=False)


def _commit(stage: Path, archive: Path, out_dir: Path, force: bool) -> None:
    """Move the finished folder and archive into place together; an old bundle goes only once both are in."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent
    ) as tmp:
        partial_dir, partial_tar = Path(tmp) / "bundle", Path(tmp) / "bundle.tar.gz"
        shutil.move(str(stage), partial_dir)  # across file systems: a copy, still outside the output names
        shutil.move(str(archive), partial_tar)
        old = Path(tmp) / "old"
        with deferred_interrupts():
            if force and out_dir.exists():
                os.replace(out_dir, old)
            os.replace(partial_dir, out_dir)
            os.replace(partial_tar, archive_path(out_dir))


def summarize(out_dir: Path, archive: Path | None) -> BundleSummary:
    """Sizes and contents of a bundle folder (and its archive)."""
    files = [
        (p.relative_to(out_dir).as_posix(), p.stat().st_size)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file()
    ]
    archive_bytes = archive.stat().st_size if archive is not None else 0
    return BundleSummary(out_dir, archive, files, sum(size for _, size in files), archive_bytes)


def build_linux_bundle(
    model: Path,
    target: str,
    out_dir: Path,
    pythons: Sequence[str] = DEFAULT_PYTHONS,
    gpu: bool = False,
    force: bool = False,
) -> BundleSummary:
    """Build an offline Linux bundle of ``model`` for ``target`` in ``out_dir`` and ``out_dir``.tar.gz.

    Args:
        model: An edgecnn .onnx model.
        target: A key of ``LINUX_TARGETS``.
        out_dir: The bundle folder to create.
        pythons: The board's CPython versions ("3.11"); wheels and an install lock for each.
        gpu: Carry onnxruntime-gpu (CUDA; linux-x86_64 only) instead of the CPU onnxruntime.
        force: Replace an existing bundle folder and archive.

    Returns:
        The bundle's folder, archive, files and sizes.

    Raises:
        ConfigError: An unknown target or Python version, ``gpu`` on aarch64, or a package without a wheel
            for the target (named).
        ModelFileError: Not an edgecnn .onnx model.
        OutputError: The output exists (without ``force``) or cannot be written.
        DependencyError: edgecnn's wheel could not be built, or pip could not download.
    """
    if target not in LINUX_TARGETS:
        raise ConfigError(f"unknown Linux target {target!r}; choose one of {', '.join(LINUX_TARGETS)}")
    machine, platforms = LINUX_TARGETS[target]
    model, out_dir = Path(model), Path(out_dir)
    versions = check_pythons(pythons)
    runtime = runtime_distribution(machine, gpu)
    check_model(model)
    check_output(out_dir, force)
    with tempfile.TemporaryDirectory(prefix="edgecnn-bundle-") as tmp:
        work = Path(tmp)
        stage = work / out_dir.name
        (stage / "wheels").mkdir(parents=True)
        log.info("building edgecnn's wheel")
        edgecnn_wheel = build_edgecnn_wheel(work)
        locks: dict[str, str] = {}
        for python in versions:
            log.info(f"downloading the wheels for {target}, Python {python}")
            dest = work / f"cp{python.replace('.', '')}"
            dest.mkdir()
            wheels = download_for(edgecnn_wheel, WheelTarget(machine, platforms, python), gpu, dest, target)
            locks[python] = _lock(wheels)
            for wheel in wheels:
                if not (stage / "wheels" / wheel.name).exists():
                    shutil.move(str(wheel), stage / "wheels" / wheel.name)
        _assemble(stage, model, target, machine, versions, runtime, locks)
        archive = work / "bundle.tar.gz"
        _archive(stage, archive, out_dir.name)
        _commit(stage, archive, out_dir, force)
    return summarize(out_dir, archive_path(out_dir))


def bundle_holds(summary: BundleSummary, distribution: str) -> bool:
    """Whether the bundle carries a wheel of ``distribution``."""
    wanted = canonicalize_name(distribution)
    return any(
        name.startswith("wheels/") and canonicalize_name(parse_wheel_filename(name[7:])[0]) == wanted
        for name, _ in summary.files
        if name.endswith(".whl")
    )
