"""The TensorRT execution provider: engine cache beside the model, fp16 and int8-from-QDQ modes, honest reasons.

TensorRT compiles the graph into an engine for one GPU, one TensorRT version and one set of input shapes;
building it takes seconds to minutes, so engines are cached. ONNX Runtime names its engine files after the
graph but does not notice a different GPU or TensorRT version, so the cache folder itself is keyed by the
model file's SHA-256, the GPU, the ONNX Runtime and TensorRT versions, the precision flags and the batch
profile: ``model.onnx.trt-cache/<key>/`` beside the model (``~/.cache/edgecnn/tensorrt/<key>/`` when that
folder is not writable), with ``key.json`` saying what the key stands for.

When TensorRT cannot start because its libraries are missing, ``missing_tensorrt_hint`` names them and the
pip package that provides them (``tensorrt-cu<CUDA major>-libs`` of the TensorRT major version this ONNX
Runtime was linked against); ``preload_tensorrt_libraries`` loads them from that wheel, which the system
loader would not search.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn.core.errors import ConfigError

CACHE_SUFFIX = ".trt-cache"
PROVIDER_LIBRARY = "libonnxruntime_providers_tensorrt.so"
#: Distributions that install TensorRT's libraries (with or without its Python bindings).
TENSORRT_DISTRIBUTIONS = (
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu13-libs",
    "tensorrt-cu12-libs",
    "tensorrt-libs",
)
_LIBRARY_NAMES = re.compile(rb"libnv(?:infer|infer_plugin|onnxparser)\.so\.\d+")


@dataclass(frozen=True)
class TensorrtOptions:
    """How the TensorRT provider builds and caches its engine.

    Args:
        fp16: Let TensorRT run layers in fp16 (on for fp16 and int8 models: ``for_precision``).
        int8: int8 from the model's own Q/DQ nodes (explicit quantisation; no calibration table).
        cache: Keep built engines and timing caches in the keyed folder beside the model.
        min_batch: Smallest batch of the optimisation profile.
        opt_batch: The batch TensorRT tunes for.
        max_batch: Largest batch the engine takes; a larger one means a rebuild.
        builder_optimization_level: TensorRT's builder effort, 0 to 5 (3 is TensorRT's default).
        device_id: The GPU to build for and run on.
    """

    fp16: bool = False
    int8: bool = False
    cache: bool = True
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 256
    builder_optimization_level: int = 3
    device_id: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                "TensorRT batch profile needs 1 <= min_batch <= opt_batch <= max_batch, got "
                f"{self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )
        if not 0 <= self.builder_optimization_level <= 5:
            raise ConfigError(
                f"builder_optimization_level must be 0 to 5, got {self.builder_optimization_level}"
            )

    @classmethod
    def for_precision(cls, precision: str, **changes: Any) -> TensorrtOptions:
        """The options for a model of this precision: fp16 layers for fp16 and int8 models, int8 for QDQ."""
        return cls(fp16=precision in ("fp16", "int8"), int8=precision == "int8", **changes)

    def provider_options(
        self, input_name: str, shape: Sequence[int], cache_dir: Path | None
    ) -> dict[str, str]:
        """The option strings of ONNX Runtime's TensorrtExecutionProvider for one NHWC input of ``shape``."""
        dims = "x".join(str(d) for d in shape)
        options = {
            "device_id": str(self.device_id),
            "trt_fp16_enable": "1" if self.fp16 else "0",
            "trt_int8_enable": "1" if self.int8 else "0",
            "trt_builder_optimization_level": str(self.builder_optimization_level),
            "trt_profile_min_shapes": f"{input_name}:{self.min_batch}x{dims}",
            "trt_profile_opt_shapes": f"{input_name}:{self.opt_batch}x{dims}",
            "trt_profile_max_shapes": f"{input_name}:{self.max_batch}x{dims}",
        }
        if cache_dir is not None:
            options.update(
                trt_engine_cache_enable="1",
                trt_engine_cache_path=str(cache_dir),
                trt_timing_cache_enable="1",
                trt_timing_cache_path=str(cache_dir),
            )
        return options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cache_fields(
    model_sha256: str,
    gpu: str,
    onnxruntime_version: str,
    tensorrt_version: str | None,
    options: TensorrtOptions,
) -> dict[str, Any]:
    """Everything an engine depends on, as the cache key records it."""
    return {
        "model_sha256": model_sha256,
        "gpu": gpu,
        "onnxruntime": onnxruntime_version,
        "tensorrt": tensorrt_version or "unknown",
        "fp16": options.fp16,
        "int8": options.int8,
        "batch_profile": [options.min_batch, options.opt_batch, options.max_batch],
        "builder_optimization_level": options.builder_optimization_level,
    }


def cache_key(fields: dict[str, Any]) -> str:
    """A folder name: the model hash's first 12 digits, the GPU, and a digest of every field."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", str(fields.get("gpu", ""))).strip("-").lower()[:40] or "gpu"
    return f"{str(fields.get('model_sha256', ''))[:12]}-{gpu}-{digest}"


@dataclass(frozen=True)
class EngineCache:
    """The engine cache folder of one model, GPU, version set and option set."""

    path: Path
    key: str
    fields: dict[str, Any]

    def has_engine(self) -> bool:
        """True when an earlier session left a built engine here."""
        return self.path.is_dir() and any(self.path.glob("*.engine"))


def engine_cache(model_path: Path, fields: dict[str, Any], user_cache: Path | None = None) -> EngineCache:
    """The keyed cache folder beside the model (created, with key.json), or in the user's cache folder.

    Raises:
        ConfigError: Neither folder can be created.
    """
    key = cache_key(fields)
    fallback = user_cache or _user_cache_root()
    errors = []
    for root in (model_path.with_name(model_path.name + CACHE_SUFFIX), fallback):
        folder = root / key
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "key.json").write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror or exc}")
            continue
        return EngineCache(folder, key, fields)
    raise ConfigError(f"no writable folder for the TensorRT engine cache ({'; '.join(errors)})")


def _user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecnn" / "tensorrt"


def tensorrt_version() -> str | None:
    """The installed TensorRT version: from a pip distribution, else a versioned libnvinfer file name."""
    for name in TENSORRT_DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for folder in tensorrt_library_dirs():
        for path in sorted(folder.glob("libnvinfer.so.*")):
            match = re.fullmatch(r"libnvinfer\.so\.(\d+(?:\.\d+)+)", path.name)
            if match:
                return match.group(1)
    return None


def tensorrt_library_dirs() -> list[Path]:
    """Folders of TensorRT libraries installed from pip (``site-packages/tensorrt_libs``)."""
    found = []
    for entry in sys.path:
        folder = Path(entry or ".") / "tensorrt_libs"
        if folder.is_dir() and folder not in found:
            found.append(folder)
    return found


def needed_libraries(provider_library: Path) -> list[str]:
    """The TensorRT libraries (``libnvinfer.so.10``, ...) the ONNX Runtime TensorRT provider is linked against."""
    try:
        data = provider_library.read_bytes()
    except OSError:
        return []
    return sorted({m.decode() for m in _LIBRARY_NAMES.findall(data)})


def preload_tensorrt_libraries(names: Sequence[str], loader: Callable[..., Any] = ctypes.CDLL) -> list[str]:
    """Load TensorRT libraries from pip's ``tensorrt_libs`` folders; returns the paths that loaded.

    The provider library asks the loader for ``libnvinfer.so.10`` by name; one already loaded under that name
    satisfies it, so the wheel works without LD_LIBRARY_PATH.
    """
    loaded = []
    for name in names:
        for folder in tensorrt_library_dirs():
            path = folder / name
            if not path.is_file():
                continue
            try:
                loader(str(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
                loaded.append(str(path))
            except OSError:
                pass
            break
    return loaded


def missing_libraries(names: Sequence[str], loader: Callable[..., Any] = ctypes.CDLL) -> list[str]:
    """Those of ``names`` that neither the system loader nor a pip ``tensorrt_libs`` folder provides."""
    missing = []
    for name in names:
        try:
            loader(name)
            continue
        except OSError:
            pass
        if not any((folder / name).is_file() for folder in tensorrt_library_dirs()):
            missing.append(name)
    return missing


def pip_requirement(library: str, cuda_version: str | None) -> str:
    """The pip requirement that installs ``library`` (e.g. libnvinfer.so.10) for this CUDA major version."""
    match = re.search(r"\.so\.(\d+)", library)
    major = int(match.group(1)) if match else None
    cuda_major = (cuda_version or "").split(".")[0]
    package = f"tensorrt-cu{cuda_major}-libs" if cuda_major.isdigit() else "tensorrt-libs"
    return f"{package}>={major},<{major + 1}" if major is not None else package


def missing_tensorrt_hint(
    provider_library: Path | None, cuda_version: str | None, loader: Callable[..., Any] = ctypes.CDLL
) -> str | None:
    """One clause naming the missing TensorRT libraries and the pip package that provides them, or None."""
    names = needed_libraries(provider_library) if provider_library is not None else []
    missing = missing_libraries(names, loader) if names else []
    if not missing:
        return None
    major = re.search(r"\.so\.(\d+)", missing[0])
    version = f"TensorRT {major.group(1)} " if major else "TensorRT "
    return (
        f"{version}libraries not found ({', '.join(missing)}): "
        f'pip install "{pip_requirement(missing[0], cuda_version)}"'
    )


def provider_library_path(ort: Any) -> Path | None:
    """Where this ONNX Runtime keeps its TensorRT provider library, or None when it has none."""
    root = getattr(ort, "__file__", None)
    path = Path(root).parent / "capi" / PROVIDER_LIBRARY if root else None
    return path if path is not None and path.is_file() else None


def build_cuda_version(ort: Any) -> str | None:
    """The CUDA version this ONNX Runtime was built for (from its build info), or None."""
    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:
        return None
    version = getattr(build, "cuda_version", None)
    return str(version) if version else None


def runtime_hint(ort: Any) -> str | None:
    """``missing_tensorrt_hint`` for the installed ONNX Runtime."""
    return missing_tensorrt_hint(provider_library_path(ort), build_cuda_version(ort))


def session_options(
    model_path: Path, ort: Any, options: TensorrtOptions | None, device_id: int = 0
) -> tuple[dict[str, str], dict[str, Any]]:
    """The TensorRT provider options for a model file, and what they state (flags, cache folder, cache hit).

    The model's contract is read first: its input gives the batch profile's shapes and its precision the
    default flags (``TensorrtOptions.for_precision``).
    """
    from edgecnn.core.onnxfile import file_sha256, load_onnx, read_contract
    from edgecnn.runtime.cuda import gpu_facts

    contract = read_contract(load_onnx(model_path), what=str(model_path))
    options = options or TensorrtOptions.for_precision(contract.numeric_precision, device_id=device_id)
    cache = None
    if options.cache:
        version = str(getattr(ort, "__version__", "unknown"))
        gpu = str(gpu_facts(options.device_id)["name"])
        fields = cache_fields(file_sha256(model_path), gpu, version, tensorrt_version(), options)
        cache = engine_cache(model_path, fields)
    provider = options.provider_options(
        contract.input.name, contract.input.shape, cache.path if cache else None
    )
    stated = {
        **options.to_dict(),
        "cache": str(cache.path) if cache else None,
        "cache_key": cache.key if cache else None,
        "cache_hit": cache.has_engine() if cache else False,
    }
    return provider, stated


def discard_unused_cache(folder: str | Path | None) -> None:
    """Remove a cache folder that holds nothing but its key.json (the session never started), and its
    parent ``*.trt-cache`` folder when that is left empty."""
    if not folder:
        return
    path = Path(folder)
    try:
        if path.is_dir() and {p.name for p in path.iterdir()} <= {"key.json"}:
            (path / "key.json").unlink(missing_ok=True)
            path.rmdir()
            if path.parent.name.endswith(CACHE_SUFFIX) and not any(path.parent.iterdir()):
                path.parent.rmdir()
    except OSError:  # a folder another process is filling: leave it
        pass
