"""The web bundle: a static folder that classifies images and the camera in the browser.

The folder holds index.html, app.mjs (the page), preprocess.mjs (edgecnn's imaging rules in JavaScript),
style.css, serve.py (a static server that sets the cross-origin isolation headers), the model as model.onnx,
ONNX Runtime Web under ort/ (vendored from the pinned npm package) and bundle.json (what was bundled). The
page reads the model's contract from model.onnx itself (``metadata_props``, key ``edgecnn``).

Everything is checked before the disk is touched: the model and its contract, the output folder, the ONNX
Runtime Web package (its npm integrity hash). The folder is written beside its destination and renamed into
place, so it is either the old folder or the complete new one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.errors import ConfigError, DependencyError, OutputError
from edgecnn.core.onnxfile import file_sha256, load_onnx, read_contract

ORT_WEB_VERSION = "1.22.0"
#: The npm registry's integrity field for that version's tarball.
ORT_WEB_INTEGRITY = (
    "sha512-Ud/+EBo6mhuaQWt/OjaOk0iNWjXqJoeeMFr6xQEERZdIZH2OWpGzuujz7lfuOBjUa6TEE/sc4nb7Da5dNL34fg=="
)
ORT_WEB_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
#: Files taken from the package: the ES module with the WebGPU and WebAssembly backends, its WebAssembly
#: runtime (SIMD, threaded when the page is cross-origin isolated) and package.json (version, MIT licence).
ORT_WEB_FILES = (
    "dist/ort.webgpu.min.mjs",
    "dist/ort-wasm-simd-threaded.jsep.mjs",
    "dist/ort-wasm-simd-threaded.jsep.wasm",
    "package.json",
)
#: Environment variable naming a local copy (the .tgz from ``npm pack onnxruntime-web@VERSION``, or the
#: unpacked package folder) for machines without the npm registry.
ORT_WEB_ENV = "EDGECNN_ORT_WEB"
ASSETS = ("index.html", "app.mjs", "preprocess.mjs", "style.css", "serve.py")
#: What preprocess.mjs reproduces; pil-bilinear (Pillow's filter on the whole file) is not.
WEB_RESIZES = ("area", "linear", "cubic")
MANIFEST = "bundle.json"


@dataclass(frozen=True)
class WebBundle:
    """A written web bundle: its folder, files (relative paths) and total size in bytes."""

    path: Path
    files: tuple[str, ...]
    bytes: int
    ort_web: str = ORT_WEB_VERSION

    def __getitem__(self, key: str) -> object:  # read like the summary dict the CLI prints
        return getattr(self, key)


def assets_dir() -> Path:
    """The page's static files, shipped as package data beside this module."""
    return Path(__file__).resolve().parent / "web_assets"


def cache_dir() -> Path:
    """~/.cache/edgecnn/onnxruntime-web (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecnn" / "onnxruntime-web"


def build_web_bundle(
    model: Path, out_dir: Path, force: bool = False, ort_web: Path | None = None
) -> WebBundle:
    """Write the static web bundle of ``model`` to ``out_dir``.

    Args:
        model: An edgecnn ONNX model (its contract travels inside it).
        out_dir: The folder to create.
        force: Replace ``out_dir`` when it holds an earlier web bundle.
        ort_web: A local onnxruntime-web package (.tgz or folder); else $EDGECNN_ORT_WEB, the cache, or the
            npm registry (the tarball's integrity hash is checked in every case but a folder).

    Returns:
        The bundle's folder, files and size.

    Raises:
        ModelFileError: The model cannot be read or carries no edgecnn contract.
        ConfigError: The contract asks for something the page does not reproduce.
        OutputError: ``out_dir`` exists (without ``force``, or holds something other than a web bundle).
        DependencyError: ONNX Runtime Web cannot be found, downloaded or verified.
    """
    model, out_dir = Path(model), Path(out_dir)
    contract = read_contract(load_onnx(model), what=str(model))
    if contract.input.resize not in WEB_RESIZES:
        raise ConfigError(
            f"{model}: resize {contract.input.resize!r} is not reproduced by the web page "
            f"(it does {', '.join(WEB_RESIZES)}); export the model with one of those"
        )
    check_out_dir(out_dir, force)
    ort_files = ort_web_files(ort_web)
    files: dict[str, bytes | Path] = {name: assets_dir() / name for name in ASSETS}
    files["model.onnx"] = model
    files.update({f"ort/{Path(name).name}": data for name, data in ort_files.items()})
    manifest = {
        "model": model.name,
        "model_sha256": file_sha256(model),
        "labels": len(contract.labels),
        "onnxruntime_web": ORT_WEB_VERSION,
        "files": sorted([*files, MANIFEST]),
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    _write_folder(out_dir, files)
    written = tuple(sorted(files))
    size = sum((out_dir / name).stat().st_size for name in written)
    return WebBundle(path=out_dir, files=written, bytes=size)


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output folder that exists, unless ``force`` and it is an earlier web bundle."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file; give a folder for the bundle")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise OutputError(f"{out_dir} exists; pass --force to replace it")
        if not (out_dir / MANIFEST).is_file() or not (out_dir / "index.html").is_file():
            raise OutputError(
                f"{out_dir} is not a web bundle; refusing to replace it (choose another folder)"
            )
    parent = out_dir.resolve().parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}: permission denied")


def ort_web_files(local: Path | None = None) -> dict[str, bytes]:
    """The vendored ONNX Runtime Web files (ORT_WEB_FILES), by path inside the package.

    Raises:
        DependencyError: The copy is missing, is another version, fails its integrity check, or cannot be
            downloaded.
    """
    source = local or (Path(os.environ[ORT_WEB_ENV]) if os.environ.get(ORT_WEB_ENV) else None)
    if source is not None and source.is_dir():
        return _from_folder(source)
    if source is not None:
        if not source.is_file():
            raise DependencyError(f"onnxruntime-web copy not found: {source}")
        return _from_tarball(source.read_bytes(), str(source))
    cached = cache_dir() / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if cached.is_file():
        data = cached.read_bytes()
        if _integrity(data) == ORT_WEB_INTEGRITY:
            return _from_tarball(data, str(cached))
    data = _download()
    files = _from_tarball(data, ORT_WEB_URL)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, cached)
    return files


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _download() -> bytes:
    try:
        with urllib.request.urlopen(ORT_WEB_URL, timeout=60) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise DependencyError(
            f"cannot download onnxruntime-web {ORT_WEB_VERSION} from the npm registry ({exc}); on a machine "
            f"without it, run `npm pack onnxruntime-web@{ORT_WEB_VERSION}` elsewhere and set "
            f"{ORT_WEB_ENV} to the .tgz"
        ) from None


def _from_tarball(data: bytes, where: str) -> dict[str, bytes]:
    if _integrity(data) != ORT_WEB_INTEGRITY:
        raise DependencyError(
            f"{where} is not the onnxruntime-web {ORT_WEB_VERSION} npm tarball (its sha512 integrity differs)"
        )
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/")
            if name in ORT_WEB_FILES and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    files[name] = handle.read()
    return _complete(files, where)


def _from_folder(folder: Path) -> dict[str, bytes]:
    try:
        package = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DependencyError(
            f"{folder} is not an onnxruntime-web package folder (no package.json)"
        ) from None
    if package.get("name") != "onnxruntime-web" or package.get("version") != ORT_WEB_VERSION:
        raise DependencyError(
            f"{folder} holds {package.get('name')} {package.get('version')}; "
            f"the page needs onnxruntime-web {ORT_WEB_VERSION}"
        )
    return _complete(
        {name: (folder / name).read_bytes() for name in ORT_WEB_FILES if (folder / name).is_file()},
        str(folder),
    )


def _complete(files: dict[str, bytes], where: str) -> dict[str, bytes]:
    missing = [name for name in ORT_WEB_FILES if name not in files]
    if missing:
        raise DependencyError(f"{where} lacks {', '.join(missing)} (onnxruntime-web {ORT_WEB_VERSION})")
    return files


def _write_folder(out_dir: Path, files: dict[str, bytes | Path]) -> None:
    """Write every file into a folder beside ``out_dir``, then rename it into place (the old one removed)."""
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    old: Path | None = None
    try:
        for name, content in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        os.chmod(staging, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=parent))
            os.replace(out_dir, old / "bundle")
        try:
            os.replace(staging, out_dir)
        except OSError:
            if old is not None:  # put the earlier bundle back: the folder is the old one or the new one
                os.replace(old / "bundle", out_dir)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
