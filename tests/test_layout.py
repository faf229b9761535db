"""The package's shape: the import rules hold, they can fail, and the inference side never loads TensorFlow."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgecnn

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports"
)
needs_linter = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (dev extra)")
INFERENCE_PACKAGES = ("edgecnn.core", "edgecnn.runtime", "edgecnn.apps")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_linter
def test_import_rules_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@needs_linter
@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/errors.py", "import edgecnn.apps.outputs", "Package layers"),
        ("apps/sorting.py", "import edgecnn.training.plots", "Package layers"),
        ("runtime/predictor.py", "import tensorflow", "Inference side without training"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path, module, line, broken):
    """The rules can fail: a scratch copy of the package with one forbidden import breaks a contract."""
    shutil.copytree(ROOT / "edgecnn", tmp_path / "edgecnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "edgecnn" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # forbidden\n", encoding="utf-8")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "0 broken" not in result.stdout
    assert f"{broken} BROKEN" in result.stdout, result.stdout


def test_inference_side_and_package_never_import_tensorflow():
    """Every module of core, runtime and apps, plus ``edgecnn`` and ``edgecnn.load``: no TensorFlow."""
    modules = ["edgecnn", "edgecnn.api", "edgecnn.runtime.model"]
    for package in INFERENCE_PACKAGES:
        path = ROOT / package.replace(".", "/")
        modules += [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]
    assert len(modules) > 15
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import edgecnn\n"
        f"m = edgecnn.load({str(ROOT / 'models' / 'shapes-cnn.int8.onnx')!r}, provider='cpu')\n"
        f"p = m.predict({str(ROOT / 'samples' / 'circle-1.jpg')!r})\n"
        "assert p.label == 'circle', p\n"
        "heavy = [n for n in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_edgecnn_is_cheap():
    code = (
        "import sys, edgecnn\n"
        "loaded = [n for n in ('onnxruntime', 'cv2', 'tensorflow', 'numpy', 'PIL') if n in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert edgecnn.__version__ and callable(edgecnn.load)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_no_module_is_over_450_lines():
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "edgecnn").rglob("*.py")}
    too_long = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > 450}
    assert not too_long, too_long


def test_version_is_one_place():
    from importlib import metadata

    assert edgecnn.__version__ == metadata.version("edgecnn")


def test_packaged_subpackages_match_the_folders():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"edgecnn"} | {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgecnn").glob("*/**/__init__.py")
    }
    # the data-only folders are listed too: it keeps setuptools from warning on every install
    data_only = {"edgecnn.reports.templates", "edgecnn.tools.deploy.web_assets"}
    assert listed == on_disk | {"edgecnn.models"} | data_only


def test_the_wheel_carries_the_default_model_and_the_contract_schema(tmp_path):
    """A plain `pip install .` (not editable) must have a default model: the wheel carries it."""
    import zipfile

    pytest.importorskip("setuptools")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # a newcomer's first `make install` shows no deprecation or "Package would be ignored" pages
    build_log = result.stdout + result.stderr
    assert "deprecated" not in build_log.lower() and "would be ignored" not in build_log, build_log[-3000:]
    (wheel,) = tmp_path.glob("edgecnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgecnn/models/shapes-cnn.int8.onnx" in names and "edgecnn/py.typed" in names
    assert (
        "edgecnn/reports/templates/base.html.j2" in names and "edgecnn/reports/templates/report.js" in names
    )
    assert (
        "edgecnn/tools/deploy/web_assets/index.html" in names
        and "edgecnn/tools/deploy/web_assets/preprocess.mjs" in names
    )
    assert any(n.startswith("edgecnn/core/") and n.endswith(".json") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_public_functions_are_not_shadowed_by_subpackages():
    """Importing every subpackage must leave edgecnn.load/classify/evaluate/export/train the API functions."""
    code = (
        "import importlib, pkgutil, edgecnn\n"
        "for m in pkgutil.iter_modules(edgecnn.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('edgecnn.' + m.name)\n"
        "import edgecnn.conversion.convert, edgecnn.training.train\n"
        "for name in ('load', 'classify', 'evaluate', 'export', 'train'):\n"
        "    assert callable(getattr(edgecnn, name)) and not hasattr(getattr(edgecnn, name), '__path__'), name\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
