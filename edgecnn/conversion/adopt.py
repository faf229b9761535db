"""``edgecnn adopt``: give an image classifier from elsewhere an edgecnn contract, once.

The adopted file is a copy of the foreign ONNX graph with the preprocessing prepended (colour order, scaling,
mean/std, layout, dtype: ``preprocess.Preprocessing.nodes``) and a softmax appended to logits, so it takes raw
RGB pixels NHWC like every edgecnn model, and the contract (labels, input size, resize policy) travels inside
it. Before the file is kept, the original (fed the documented transform in NumPy) and the adopted model (fed
raw pixels) run on the same images and must give the same probabilities, within ``ADOPT_ATOL``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.graph import Foreign, inspect_graph, rewire
from edgecnn.conversion.labels import read_labels
from edgecnn.conversion.preprocess import Preprocessing, ResizeOptions
from edgecnn.core.atomic import atomic_output
from edgecnn.core.contract import COLOR_ORDERS, InputSpec, ModelContract
from edgecnn.core.decode import decode_one
from edgecnn.core.errors import ConfigError, ExportError, ModelFileError, OutputError
from edgecnn.core.files import iter_image_files
from edgecnn.core.onnxfile import file_sha256, opset_of, save_onnx, set_contract
from edgecnn.core.version import __version__

#: The adopted file and the original (after the documented transforms) may differ by this much per probability.
ADOPT_ATOL = 1e-5
CHECK_IMAGES = 16

logger = logging.getLogger(__name__)


@dataclass
class AdoptCheck:
    """The original model against the adopted one on the same images."""

    images: int
    max_abs_diff: float
    top1_agreement: float
    source: str
    limit: float = ADOPT_ATOL
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.max_abs_diff <= self.limit

    def describe(self) -> str:
        return (
            f"check on {self.images} images ({self.source}): max |p_original - p_adopted| = "
            f"{self.max_abs_diff:.2e} (limit {self.limit:.0e}), top-1 agreement {self.top1_agreement * 100:.1f}%"
        )


@dataclass
class AdoptResult:
    """What adoption wrote and proved."""

    output: Path
    contract: ModelContract
    check: AdoptCheck
    size_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "labels": len(self.contract.labels),
            "input": self.contract.input.to_dict(),
            "normalization": self.contract.normalization,
            "adopted": self.contract.source.get("adopted"),
            "check": {
                "images": self.check.images,
                "source": self.check.source,
                "max_abs_diff": self.check.max_abs_diff,
                "limit": self.check.limit,
                "top1_agreement": self.check.top1_agreement,
            },
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }


def adopted_path_for(source: Path) -> Path:
    """resnet.onnx -> resnet.edgecnn.onnx"""
    return source.with_name(source.stem + ".edgecnn.onnx")


def adopt_onnx(
    source: str | os.PathLike[str],
    labels: str | Path | Sequence[str],
    preprocessing: Preprocessing,
    resize: ResizeOptions = ResizeOptions(),
    output: str | os.PathLike[str] | None = None,
    output_name: str | None = None,
    check_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> AdoptResult:
    """Write a copy of a foreign ONNX classifier that carries an edgecnn contract and takes raw pixels.

    Args:
        source: The foreign .onnx file (one image input, a class-vector output).
        labels: A labels file (``conversion.labels``) or the names, in output order.
        preprocessing: How the model expects its pixels.
        resize: Input size (when the graph does not fix it) and resize policy.
        output: The adopted .onnx path (default: ``<stem>.edgecnn.onnx`` beside the source).
        output_name: Which graph output holds the class scores, when there are several.
        check_dir: Images to check the adopted file on (default: generated images).
        force: Overwrite an existing output.

    Raises:
        ModelFileError: The file cannot be read or adopted (several inputs, a fixed batch the graph needs,
            an output that is not a class vector); ConfigError: bad options or labels;
        ExportError: the check failed (nothing is written); OutputError: the output exists.
    """
    import onnx

    t0 = time.perf_counter()
    source = Path(source)
    out_path = Path(output) if output else adopted_path_for(source)
    _check_output(source, out_path, force)
    names = read_labels(labels)
    if source.suffix.lower() in (".keras", ".h5", ".hdf5"):
        raise ConfigError(
            f"{source} is a Keras model: convert it with `edgecnn export {source} --labels FILE --preset ...`"
        )
    try:
        proto = onnx.load(str(source))
    except Exception as exc:  # protobuf DecodeError, OSError, external data errors
        raise ModelFileError(
            f"{source} is not a readable ONNX model ({str(exc).splitlines()[0][:120]})"
        ) from None
    if any(p.key == "edgecnn" for p in proto.metadata_props):
        raise ConfigError(f"{source} already carries an edgecnn contract; it needs no adoption")
    original = proto.SerializeToString()
    proto = _at_least_opset_13(proto)
    foreign = inspect_graph(proto, str(source), preprocessing.layout, output_name)
    run_original = _onnx_runner(original, foreign)
    return finish_adoption(
        proto,
        foreign,
        names,
        preprocessing,
        resize,
        run_original,
        out_path,
        source=source,
        exporter=f"edgecnn {__version__} (adopt)",
        check_dir=check_dir,
        force=force,
        limit=ADOPT_ATOL,
        started=t0,
    )


def finish_adoption(
    proto: Any,
    foreign: Foreign,
    labels: Sequence[str],
    preprocessing: Preprocessing,
    resize: ResizeOptions,
    run_original: Callable[[np.ndarray], np.ndarray],
    out_path: Path,
    source: Path,
    exporter: str,
    check_dir: str | os.PathLike[str] | None,
    force: bool,
    limit: float,
    started: float,
    check_option: str = "--check",
) -> AdoptResult:
    """Rewire an inspected foreign graph, check it against the original and write it (ONNX and Keras sources).

    Args:
        run_original: The original model on transformed input (one image at a time is enough).
    """
    say = logger.info
    pre = preprocessing.with_layout(foreign.layout)
    if foreign.channels == 1 and any(v is not None and len(v) == 3 for v in (pre.mean, pre.std)):
        raise ConfigError("the model takes 1 channel (grey): give --mean and --std one value each")
    spec = _input_spec(foreign, resize)
    if len(labels) != foreign.classes and foreign.classes is not None:
        raise ConfigError(
            f"the labels name {len(labels)} classes; the model's output {foreign.output!r} has {foreign.classes}"
        )
    images, image_source, skipped = _check_images(spec, check_dir, check_option)
    raw = np.stack(
        [run_original(pre.apply(images[i : i + 1], foreign.numpy_dtype))[0] for i in range(len(images))]
    )
    classes = _class_count(raw, foreign, len(labels))
    kind = _output_kind(pre.output_kind, foreign, raw)
    reference = _softmax(raw) if kind == "logits" else raw.astype(np.float64)
    notes = []
    if foreign.fixed_batch is not None:
        notes.append(f"the graph's fixed batch of {foreign.fixed_batch} was made dynamic")
    if kind != pre.output_kind:
        notes.append(f"output {foreign.output!r} read as {kind}")
    freed = rewire(proto, foreign, pre, spec.height, spec.width, classes, append_softmax=kind == "logits")
    if freed:
        notes.append(f"{freed} Reshape(s) that spelled out the fixed batch now take any batch")
    contract = ModelContract(
        labels=tuple(labels),
        input=spec,
        arch="adopted",
        normalization=f"in graph: {pre.describe(foreign.channels)}"
        + ("; softmax appended" if kind == "logits" else ""),
        source={
            "model_file": source.name,
            "model_sha256": file_sha256(source) if source.is_file() else None,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "exporter": exporter,
            "opset": opset_of(proto),
            "adopted": {
                **pre.to_dict(),
                "output_kind": kind,
                "original_input": foreign.input,
                "original_input_shape": foreign.input_shape,
                "original_output": foreign.output,
            },
        },
    )
    if contract.source["model_sha256"] is None:
        del contract.source["model_sha256"]
    set_contract(proto, contract)
    proto.producer_name, proto.producer_version = "edgecnn", __version__
    with atomic_output(out_path, force) as tmp:
        save_onnx(proto, tmp)
        check = _check(tmp, images, reference, image_source, limit, skipped)
        say(check.describe())
        if not check.passed:
            raise ExportError(f"adoption check failed: {check.describe()}; nothing was written to {out_path}")
        size = tmp.stat().st_size
    return AdoptResult(out_path, contract, check, size, time.perf_counter() - started, notes)


def _at_least_opset_13(proto: Any) -> Any:
    """The graph converted to opset 13 when it is older: per-channel int8 (the default of ``export --int8``)
    needs DequantizeLinear's axis, which opset 13 brought. The check before writing proves the converted graph
    still gives the original's answers; a graph the converter cannot take stays as it is."""
    from onnx import version_converter

    from edgecnn.core.onnxfile import opset_of

    if opset_of(proto) >= 13:
        return proto
    try:
        return version_converter.convert_version(proto, 13)
    except Exception:  # the converter has no adapter for some old ops; int8 then needs --per-tensor
        logger.info("the model stays at its opset %d (int8 of it will need --per-tensor)", opset_of(proto))
        return proto


def _check_output(source: Path, out_path: Path, force: bool) -> None:
    if not source.is_file():
        raise ModelFileError(
            f"model file not found: {source}" if not source.exists() else f"not a file: {source}"
        )
    if out_path.suffix.lower() != ".onnx":
        raise ConfigError(f"the output must end in .onnx, got {out_path}")
    if out_path.resolve() == source.resolve():
        raise ConfigError(f"the output {out_path} would replace the original; give another -o path")
    if out_path.exists() and not force:
        raise OutputError(f"{out_path} exists; pass --force to overwrite it")


def _input_spec(foreign: Foreign, resize: ResizeOptions) -> InputSpec:
    height, width = foreign.height, foreign.width
    if resize.size is not None:
        wanted = resize.size
        if any(side is not None and side != want for side, want in zip((height, width), wanted)):
            raise ConfigError(
                f"--size {wanted[0]}x{wanted[1]} disagrees with the graph's input size {height}x{width}"
            )
        height, width = wanted
    if height is None or width is None:
        raise ConfigError(
            f"the input {foreign.input!r} has no fixed height and width ({foreign.input_shape}); "
            "pass --size HxW (the size the model was trained at)"
        )
    return InputSpec(
        height=height,
        width=width,
        channels=foreign.channels,
        color_order=COLOR_ORDERS[foreign.channels],
        fit=resize.fit,
        resize=resize.interpolation,
        crop_fraction=resize.crop_fraction if resize.fit == "crop" else None,
        pad_value=resize.pad_value if resize.fit == "letterbox" else None,
    )


def _check_images(
    spec: InputSpec, check_dir: str | os.PathLike[str] | None, option: str = "--check"
) -> tuple[np.ndarray, str, list[tuple[Path, str]]]:
    """Real images through the contract's resize, or generated ones (noise, gradients, flat colours)."""
    skipped: list[tuple[Path, str]] = []
    if check_dir is not None:
        folder = Path(check_dir)
        if not folder.is_dir():
            raise ConfigError(f"{option} {folder} is not a folder of images")
        arrays = []
        for path in iter_image_files([folder], recursive=True, skipped=skipped):
            decoded = decode_one(path, spec)  # core.decode's one rule: an image, or the reason it is skipped
            if decoded.image is None:
                skipped.append((path, decoded.error or "unreadable"))
            else:
                arrays.append(decoded.image)
            if len(arrays) == CHECK_IMAGES:
                break
        if not arrays:
            raise ConfigError(f"no readable images in {option} {folder}")
        return np.stack(arrays).astype(np.float32), f"{option} {folder}", skipped
    rng = np.random.default_rng(0)
    h, w, c = spec.shape
    ys, xs = np.mgrid[0:h, 0:w]
    images = [rng.integers(0, 256, (h, w, c)) for _ in range(4)]
    images += [np.repeat(((xs * 255) // max(1, w - 1))[:, :, None], c, 2), np.full((h, w, c), 128)]
    images += [np.dstack([xs % 256, ys % 256, (xs + ys) % 256])[:, :, :c]]
    return np.stack(images).astype(np.float32), f"{len(images)} generated images", skipped


def _session(model: bytes | str) -> Any:
    """A quiet CPU session: failures come back as exceptions with their reason, not as log lines."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for graphs it cannot load
        raise ModelFileError(f"ONNX Runtime cannot load the model: {ort_reason(exc)}") from None


def ort_reason(exc: BaseException, limit: int = 300) -> str:
    """ONNX Runtime's error message without its status prefix, source paths and C++ signatures."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"(/\S+:\d+ )|(onnxruntime::\S+\([^)]*\)\s*)", "", text)
    return text[:limit]


def _onnx_runner(model_bytes: bytes, foreign: Foreign) -> Callable[[np.ndarray], np.ndarray]:
    session = _session(model_bytes)

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(session.run([foreign.output], {foreign.input: x})[0])
        except Exception as exc:
            raise ModelFileError(
                f"the original model fails on an input of shape {list(x.shape)} ({foreign.dtype_name}): "
                f"{ort_reason(exc)}"
            ) from None

    return run


def _class_count(raw: np.ndarray, foreign: Foreign, labels: int) -> int:
    if raw.ndim != 2 or raw.shape[1] < 2:
        raise ModelFileError(
            f"output {foreign.output!r} gives shape {list(raw.shape)} per batch: not a class vector (batch, classes)"
        )
    if raw.shape[1] != labels:
        raise ConfigError(
            f"the labels name {labels} classes; the model's output {foreign.output!r} has {raw.shape[1]}"
        )
    return int(raw.shape[1])


def _output_kind(wanted: str, foreign: Foreign, raw: np.ndarray) -> str:
    if wanted != "auto":
        return wanted
    if foreign.ends_in_softmax:
        return "probabilities"
    sums_to_one = np.all(raw >= -1e-6) and np.allclose(raw.sum(1), 1.0, atol=1e-3)
    return "probabilities" if sums_to_one else "logits"


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _check(
    path: Path,
    images: np.ndarray,
    reference: np.ndarray,
    source: str,
    limit: float,
    skipped: list[tuple[Path, str]],
) -> AdoptCheck:
    """The adopted file against the reference probabilities, on a batch and on one image."""
    from edgecnn.runtime.predictor import Predictor

    Predictor(
        path, provider="cpu"
    )  # what every command will do: read the contract, check it against the graph
    session = _session(str(path))
    try:
        adopted = np.concatenate([session.run(None, {"image": batch})[0] for batch in (images, images[:1])])
    except Exception as exc:  # a graph that still needs its old fixed batch fails here
        raise ModelFileError(
            f"the adopted graph does not run on a batch of images ({ort_reason(exc)}); export the model with "
            "a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}}))"
        ) from None
    expected = np.concatenate([reference, reference[:1]])
    return AdoptCheck(
        images=len(images),
        max_abs_diff=float(np.abs(adopted.astype(np.float64) - expected).max()),
        top1_agreement=float((adopted.argmax(1) == expected.argmax(1)).mean()),
        source=source,
        limit=limit,
        skipped=skipped,
    )
