"""The shell scripts and README inside a Linux bundle: install offline, then classify, webcam and serve.

The scripts run ``python -m edgecnn`` from the bundle's virtual environment rather than its console script, and
put ``$LAUNCHER`` before every Python they start (empty on the board): with ``LAUNCHER="qemu-aarch64 -L ROOTFS"``
an arm64 bundle installs and runs on a PC, which is how its proof runs.
"""

from __future__ import annotations

from collections.abc import Sequence

INSTALL_SH = """#!/bin/sh
# Install this bundle offline: a virtual environment in ./venv, every package from ./wheels (no network).
#   ./install.sh                 with the board's python3
#   PYTHON=python3.11 ./install.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${{PYTHON:-python3}}
LAUNCHER=${{LAUNCHER:-}}
VENV=${{VENV:-$HERE/venv}}
TAG=$($LAUNCHER "$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])') || {{
    echo "install.sh: cannot run $PYTHON; give the interpreter as PYTHON=..." >&2; exit 2; }}
LOCK="$HERE/requirements-$TAG.txt"
if [ ! -f "$LOCK" ]; then
    echo "install.sh: this bundle is for {pythons} on {target}; $PYTHON is $TAG" >&2
    exit 2
fi
$LAUNCHER "$PYTHON" -m venv --without-pip "$VENV"
# pip runs from its own wheel in the bundle, so the board needs no python3-venv or python3-pip package.
# The lock lists every package (--no-deps): pip neither resolves nor reaches an index, and no pip
# configuration of the board applies.
PIP_WHEEL=$(ls "$HERE"/wheels/pip-*.whl | head -n 1)
PIP_CONFIG_FILE=/dev/null $LAUNCHER "$VENV/bin/python" "$PIP_WHEEL/pip" install --isolated --no-index \\
    --disable-pip-version-check --no-deps --find-links "$HERE/wheels" -r "$LOCK" {quiet}
$LAUNCHER "$VENV/bin/python" -m edgecnn --version
echo "installed in $VENV; try ./run-classify.sh IMAGES"
"""

RUN_SH = """#!/bin/sh
# {what}
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
LAUNCHER=${{LAUNCHER:-}}
VENV=${{VENV:-$HERE/venv}}
[ -x "$VENV/bin/python" ] || {{ echo "{name}: run ./install.sh first" >&2; exit 2; }}
exec $LAUNCHER "$VENV/bin/python" -m edgecnn {command} "$@"
"""

RUN_COMMANDS = {
    "run-classify.sh": (
        "Classify images and folders: ./run-classify.sh IMAGES... [-o results.csv] [--top-k 3]",
        'classify --model "$HERE/{model}"',
    ),
    "run-webcam.sh": (
        "Classify a camera, a video file or a stream: ./run-webcam.sh [--camera 0] [--no-display]",
        'webcam --model "$HERE/{model}"',
    ),
    "run-serve.sh": (
        "Serve the model over HTTP (Open Inference Protocol): ./run-serve.sh [--host 0.0.0.0] [--port 8000]",
        'serve "$HERE/{model}"',
    ),
}

README = """{title}
{underline}

An offline edgecnn bundle for {target} ({pythons}), built by edgecnn {version}.

  {model}          the model (labels, input size and preprocessing travel inside it)
  wheels/          every package it needs, for {target}: edgecnn (inference side; no TensorFlow), {runtime}, ...
  requirements-*.txt  the install lock of each Python version
  install.sh       installs offline into ./venv
  run-classify.sh  classify images and folders
  run-webcam.sh    classify a camera, video file or stream
  run-serve.sh     serve the model over HTTP

Copy the folder (or the .tar.gz) to the board, then:

  tar xzf {title}.tar.gz && cd {title}
  ./install.sh                    # no network needed
  ./run-classify.sh photos/ -o results.csv
  ./run-webcam.sh --camera 0 --no-display
  ./run-serve.sh --host 0.0.0.0 --port 8000

Requirements on the board: Linux {machine} with glibc 2.28 or newer (Raspberry Pi OS and Debian bookworm,
Ubuntu 20.04 and newer), {pythons}, and libGL and GLib for OpenCV (`sudo apt install libgl1 libglib2.0-0`
where they are missing).
"""


def install_script(target: str, pythons: Sequence[str], quiet: bool = True) -> str:
    """install.sh for a bundle of ``target`` holding locks for ``pythons`` ("3.11", ...)."""
    names = " or ".join(f"Python {p}" for p in pythons)
    return INSTALL_SH.format(target=target, pythons=names, quiet="--quiet" if quiet else "")


def run_scripts(model: str) -> dict[str, str]:
    """The run-*.sh scripts, each running one edgecnn command on the bundle's model."""
    return {
        name: RUN_SH.format(what=what, name=name, command=command.format(model=model))
        for name, (what, command) in RUN_COMMANDS.items()
    }


def readme(
    title: str, target: str, machine: str, pythons: Sequence[str], model: str, runtime: str, version: str
) -> str:
    """README.txt: what is in the bundle and how to install and run it on the board."""
    return README.format(
        title=title,
        underline="=" * len(title),
        target=target,
        machine=machine,
        pythons=" or ".join(f"Python {p}" for p in pythons),
        model=model,
        runtime=runtime,
        version=version,
    )
