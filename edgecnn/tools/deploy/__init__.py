"""``edgecnn bundle``: a model and what runs it, packed for where it runs (docs/deploy.md).

One table of targets drives the command's choices and the dispatch: the Linux boards (``linux.py``: a folder
and a .tar.gz that install offline) and the browser (``web.py``: a static page over ONNX Runtime Web).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgecnn.core.errors import ConfigError
from edgecnn.tools.deploy.linux import (
    DEFAULT_PYTHONS,
    LINUX_TARGETS,
    BundleSummary,
    build_linux_bundle,
    summarize,
)

#: Every target ``edgecnn bundle`` builds, in the order ``--help`` lists them.
TARGETS = (*LINUX_TARGETS, "web")

__all__ = ["DEFAULT_PYTHONS", "TARGETS", "BundleSummary", "build_bundle"]


def _web_bundle(model: Path, out_dir: Path, force: bool) -> BundleSummary:
    from edgecnn.tools.deploy.web import build_web_bundle

    made = build_web_bundle(model, out_dir, force=force)
    return summarize(Path(made.path), None)


def build_bundle(
    model: str | Path,
    target: str,
    out_dir: str | Path,
    pythons: Sequence[str] = DEFAULT_PYTHONS,
    gpu: bool = False,
    force: bool = False,
) -> BundleSummary:
    """Pack ``model`` for ``target`` into ``out_dir``.

    Args:
        model: An edgecnn .onnx model.
        target: One of ``TARGETS``: linux-x86_64, linux-aarch64 (an offline bundle) or web (a static page).
        out_dir: The folder to create (Linux targets also write ``out_dir``.tar.gz beside it).
        pythons: The board's CPython versions (Linux targets).
        gpu: Carry the CUDA ONNX Runtime instead of the CPU one (linux-x86_64).
        force: Replace what is there.

    Returns:
        The bundle's folder, archive, files and sizes.

    Raises:
        ConfigError: An unknown target, or an option the target does not take.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "web":
        if gpu or tuple(pythons) != tuple(DEFAULT_PYTHONS):
            raise ConfigError(
                "--gpu and --python apply to the linux targets; the web page runs in the browser"
            )
        return _web_bundle(Path(model), Path(out_dir), force)
    return build_linux_bundle(Path(model), target, Path(out_dir), pythons, gpu=gpu, force=force)
