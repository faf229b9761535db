"""``bundle``: a model packed for a Linux board (offline install) or the browser (docs/deploy.md)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli.app import app, handle_errors, out


class Target(str, Enum):
    linux_x86_64 = "linux-x86_64"
    linux_aarch64 = "linux-aarch64"
    web = "web"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@app.command()
@handle_errors
def bundle(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="An edgecnn .onnx model.", show_default=False)
    ],
    target: Annotated[
        Target,
        typer.Option(
            help="linux-x86_64 or linux-aarch64: a folder and .tar.gz that install offline on the board; "
            "web: a static page running the model in the browser."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The bundle folder to create.")],
    python: Annotated[
        list[str] | None,
        typer.Option(
            "--python",
            metavar="VERSION",
            help="The board's Python version (repeat for several); linux targets [default: 3.11].",
            show_default=False,
        ),
    ] = None,
    gpu: Annotated[
        bool,
        typer.Option(
            "--gpu", help="Carry onnxruntime-gpu (CUDA) instead of the CPU onnxruntime; linux-x86_64."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
) -> None:
    """Pack a model and what runs it for a board or the browser: every wheel downloaded now, nothing needed
    from the network on the board; the size and contents are printed (docs/deploy.md)."""
    from edgecnn.tools.deploy import DEFAULT_PYTHONS, build_bundle

    summary = build_bundle(model, target.value, out_dir, python or DEFAULT_PYTHONS, gpu=gpu, force=force)
    for name, size in summary.files:
        out.print(f"{_size(size):>10}  {name}", markup=False)
    out.print(f"{summary.path}: {len(summary.files)} files, {_size(summary.bytes)}", markup=False)
    if summary.archive is not None:
        out.print(f"{summary.archive}: {_size(summary.archive_bytes)}", markup=False)
