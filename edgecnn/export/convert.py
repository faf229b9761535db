"""``edgecnn export``: Keras to a self-describing ONNX file, proven equal to the Keras model before it is kept.

This is the only module that knows tf2onnx. Keras 3 breaks ``tf2onnx.convert.from_keras``; we convert a
``tf.function`` of the inference-only model with ``tf2onnx.convert.from_function``, naming the input
``image`` and the output ``probabilities``. The contract from the training report goes into the file's
metadata, and the parity gate (largest probability difference at most 1e-4, same top-1 on every image) runs
on the written file before it replaces anything at the output path.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.apps.evaluate import resolve_eval_dir
from edgecnn.core.atomic import atomic_output
from edgecnn.core.contract import INPUT_NAME, OUTPUT_NAME, ModelContract
from edgecnn.core.dataset import Sample, discover, list_class_folder
from edgecnn.core.decode import iter_batches
from edgecnn.core.errors import ConfigError, DatasetError, ExportError, ModelFileError, OutputError
from edgecnn.core.onnxfile import file_sha256, name_batch_dimension, save_onnx, set_contract
from edgecnn.core.version import __version__
from edgecnn.training.keras_io import load_keras_contract, load_keras_model

PARITY_ATOL = 1e-4
PARITY_IMAGES = 64
DEFAULT_OPSET = 17
MAX_INT8_OPSET = 20

logger = logging.getLogger(__name__)


@dataclass
class ParityReport:
    """Keras against ONNX Runtime on the same real images."""

    images: int
    max_abs_diff: float
    top1_agreement: float
    source: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.max_abs_diff <= PARITY_ATOL and self.top1_agreement == 1.0

    def describe(self) -> str:
        return (
            f"parity on {self.images} images from {self.source}: max |p_keras - p_onnx| = {self.max_abs_diff:.2e} "
            f"(limit {PARITY_ATOL:.0e}), top-1 agreement {self.top1_agreement * 100:.1f}%"
        )


@dataclass
class ExportResult:
    """What an export wrote and proved."""

    output: Path
    contract: ModelContract
    parity: ParityReport
    size_bytes: int
    seconds: float
    int8: Any = None  # quantize.QuantizeResult when --int8 was given
    notes: list[str] = field(default_factory=list)


def resolve_source(source: str | Path) -> tuple[Path, Path]:
    """(model.keras, run folder) for a run folder or a .keras file."""
    path = Path(source)
    if path.is_dir():
        model = path / "model.keras"
        if not model.is_file():
            raise ModelFileError(
                f"no model.keras in {path}; give a run folder from `edgecnn train` or a .keras file"
            )
        return model, path
    if not path.exists():
        raise ModelFileError(f"model not found: {path}")
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"{path} is not a .keras model; give a run folder or a .keras file")
    return path, path.parent


def run_report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def training_samples(report: dict[str, Any]) -> tuple[list[Sample], list[Sample], str]:
    """The (train, val) samples recorded in a run's report, re-discovered with the run's seed and split."""
    data = report.get("data") or {}
    layout = data.get("layout")
    train_dir = data.get("train_dir")
    if not train_dir:
        raise DatasetError("the run's report does not record its training data; pass --calib DIR")
    try:
        if layout == "train/val folders":
            splits = discover(Path(train_dir).parent, seed=data.get("seed", 42))
        elif layout == "val-dir":
            splits = discover(train_dir, val_dir=data.get("val_dir"), seed=data.get("seed", 42))
        else:
            splits = discover(train_dir, val_split=data.get("val_split"), seed=data.get("seed", 42))
    except DatasetError as exc:
        raise DatasetError(f"the run's training data is no longer usable ({exc}); pass --calib DIR") from None
    where = splits.train_dir.parent if splits.layout == "train/val folders" else splits.train_dir
    return splits.train, splits.val, str(where)


def folder_samples(folder: str | Path, contract: ModelContract) -> list[Sample]:
    """Samples of a labelled folder (class folders named as the model's labels), or of a plain image folder."""
    root = resolve_eval_dir(folder)
    if not root.is_dir():
        raise DatasetError(f"folder not found: {root}")
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs:
        return list_class_folder(root, classes=list(contract.labels)).samples
    from edgecnn.core.files import iter_image_files

    return [(p, -1) for p in iter_image_files([root])]


def sample_across_classes(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Sample]:
    """Up to ``count`` samples, spread evenly over the classes, chosen with a fixed seed."""
    by_class: dict[int, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    rng = random.Random(seed)
    for items in by_class.values():
        rng.shuffle(items)
    chosen: list[Sample] = []
    queues = [list(v) for _, v in sorted(by_class.items())]
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop())
    return sorted(chosen)


def convert_to_onnx(keras_model: Any, contract: ModelContract, opset: int) -> Any:
    """Convert an inference-only Keras model to an ONNX ModelProto with the stable tensor names."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, *contract.input.shape], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec)
    def forward(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: keras_model(image, training=False)}

    try:
        model_proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many kinds for unsupported graphs
        raise ExportError(
            f"tf2onnx could not convert the model at opset {opset}: {str(exc).splitlines()[0][:200]}"
        ) from None
    name_batch_dimension(model_proto)
    names_in = [i.name for i in model_proto.graph.input]
    names_out = [o.name for o in model_proto.graph.output]
    if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
        raise ExportError(f"unexpected tensor names after conversion: inputs {names_in}, outputs {names_out}")
    return model_proto


def check_parity(
    keras_model: Any, onnx_path: Path, contract: ModelContract, samples: Sequence[Sample], source: str
) -> ParityReport:
    """Run Keras and ONNX Runtime (CPU, full graph optimisation) on the same decoded images."""
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(onnx_path, provider="cpu")
    skipped: list[tuple[Path, str]] = []
    diffs: list[float] = []
    agree = 0
    total = 0
    for batch, _, _, bad in iter_batches(samples, contract, batch_size=16, workers=None):
        for path, reason in bad:
            skipped.append((path, reason))
        if not len(batch):
            continue
        p_keras = np.asarray(keras_model(batch, training=False))
        p_onnx = predictor.predict_batch(batch)
        diffs.append(float(np.abs(p_keras - p_onnx).max()))
        agree += int((p_keras.argmax(1) == p_onnx.argmax(1)).sum())
        total += len(batch)
    if not total:
        raise ExportError(f"no readable images in {source} to check the export against Keras")
    return ParityReport(
        images=total, max_abs_diff=max(diffs), top1_agreement=agree / total, source=source, skipped=skipped
    )


def export_model(
    source: str | Path,
    output: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    calib_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    parity_images: int = PARITY_IMAGES,
) -> ExportResult:
    """Export a trained Keras model to ONNX with its contract, and prove parity before keeping the file.

    Args:
        source: A run folder from ``edgecnn train`` or a .keras file with report.json beside it.
        output: The .onnx path (default: ``RUN_DIR/model.onnx``).
        opset: ONNX opset (13 to 21; int8 needs 20 or lower).
        force: Overwrite an existing output file.
        calib_dir: Images for the parity check (and calibration); default: the run's data.
        eval_dir: A labelled folder; preferred for the parity check when given.
        parity_images: How many real images the parity check runs on.

    Raises:
        ExportError: Conversion failed or the parity gate failed (no file is left at the output path).
        OutputError: The output exists and ``force`` is off.
    """
    say = logger.info
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset must be between 13 and 21, got {opset}")
    model_path, run_dir = resolve_source(source)
    out_path = Path(output) if output else run_dir / "model.onnx"
    if out_path.suffix.lower() != ".onnx":
        raise ConfigError(f"the output must end in .onnx, got {out_path}")
    if out_path.exists() and not force:
        raise OutputError(f"{out_path} exists; pass --force to overwrite it (or --int8 alone to reuse it)")
    contract = load_keras_contract(model_path)
    report = run_report(run_dir)
    samples, sample_source = parity_samples(contract, report, calib_dir, eval_dir, parity_images)

    from edgecnn.training.models import import_keras

    import_keras()
    t0 = time.perf_counter()
    keras_model = load_keras_model(model_path)
    say(f"converting {model_path} to ONNX (opset {opset})...")
    proto = convert_to_onnx(keras_model, contract, opset)
    contract = contract.with_updates(
        source={
            "model_file": model_path.name,
            "model_sha256": file_sha256(model_path),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "exporter": f"edgecnn {__version__} (tf2onnx.convert.from_function)",
            "opset": opset,
        },
        edgecnn_version=__version__,
    )
    set_contract(proto, contract)
    proto.producer_name = "edgecnn"
    proto.producer_version = __version__
    with atomic_output(out_path, force) as tmp:
        save_onnx(proto, tmp)
        parity = check_parity(keras_model, tmp, contract, samples, sample_source)
        for path, reason in parity.skipped[:5]:
            say(f"skipped parity image {path}: {reason}")
        say(parity.describe())
        if not parity.passed:
            raise ExportError(f"parity gate failed: {parity.describe()}; nothing was written to {out_path}")
        size = tmp.stat().st_size
    return ExportResult(
        output=out_path, contract=contract, parity=parity, size_bytes=size, seconds=time.perf_counter() - t0
    )


def parity_samples(
    contract: ModelContract,
    report: dict[str, Any],
    calib_dir: str | Path | None,
    eval_dir: str | Path | None,
    count: int,
) -> tuple[list[Sample], str]:
    """Real images for the parity check: --eval, else --calib, else the run's validation then training data."""
    if eval_dir is not None:
        return sample_across_classes(folder_samples(eval_dir, contract), count), str(eval_dir)
    if calib_dir is not None:
        return sample_across_classes(folder_samples(calib_dir, contract), count), str(calib_dir)
    train, val, where = training_samples(report)
    return sample_across_classes(
        val or train, count
    ), f"the run's {'validation' if val else 'training'} data ({where})"


def fp32_is_current(onnx_path: Path, keras_path: Path) -> bool:
    """True when ``onnx_path`` is an edgecnn fp32 export of exactly this .keras file."""
    from edgecnn.core.onnxfile import load_onnx, read_contract

    try:
        contract = read_contract(load_onnx(onnx_path))
    except ModelFileError:
        return False
    return contract.quantization is None and contract.source.get("model_sha256") == file_sha256(keras_path)


def int8_path_for(fp32_path: Path) -> Path:
    """model.onnx -> model.int8.onnx"""
    return fp32_path.with_name(fp32_path.stem + ".int8.onnx")


def export_all(
    source: str | Path,
    output: str | Path | None = None,
    int8: bool = False,
    int8_output: str | Path | None = None,
    calib_dir: str | Path | None = None,
    calib_size: int = 300,
    calib_method: str = "minmax",
    per_channel: bool = True,
    eval_dir: str | Path | None = None,
    max_accuracy_drop: float = 1.0,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
) -> ExportResult:
    """``edgecnn export``: the fp32 file with its parity gate, then (with ``int8``) the calibrated int8 file.

    With ``int8`` and an fp32 file already exported from the same .keras file, the fp32 file is reused.

    Raises:
        ExportError: A gate failed; the file it guards is not written.
        OutputError: An output exists and ``force`` is off.
    """
    say = logger.info
    if int8 and opset > MAX_INT8_OPSET:
        raise ConfigError(
            f"int8 needs --opset {MAX_INT8_OPSET} or lower (QuantizeLinear-23 is not in ONNX Runtime); got {opset}"
        )
    if calib_size < 1:
        raise ConfigError(f"--calib-size must be at least 1, got {calib_size}")
    model_path, run_dir = resolve_source(source)
    fp32_path = Path(output) if output else run_dir / "model.onnx"
    int8_path = Path(int8_output) if int8_output else int8_path_for(fp32_path)
    if int8 and int8_path.exists() and not force:
        raise OutputError(f"{int8_path} exists; pass --force to overwrite it")
    if int8 and not force and fp32_path.exists() and fp32_is_current(fp32_path, model_path):
        say(f"{fp32_path} is already an export of {model_path}: reusing it")
        from edgecnn.core.onnxfile import load_onnx, read_contract

        contract = read_contract(load_onnx(fp32_path))
        result = ExportResult(
            fp32_path, contract, ParityReport(0, 0.0, 1.0, "earlier export"), fp32_path.stat().st_size, 0.0
        )
        result.notes.append("fp32 file reused (same source model)")
    else:
        result = export_model(
            model_path, fp32_path, opset=opset, force=force, calib_dir=calib_dir, eval_dir=eval_dir
        )
    if not int8:
        return result

    from edgecnn.export.quantize import quantize_model

    contract = result.contract
    report = run_report(run_dir)
    if calib_dir is not None:
        calib_all, calib_source = folder_samples(calib_dir, contract), str(calib_dir)
        run_val: list[Sample] = []
    else:
        calib_all, run_val, where = training_samples(report)
        calib_source = f"training images of the run ({where})"
    calib = sample_across_classes(calib_all, calib_size, seed=1)
    if eval_dir is not None:
        eval_samples = [s for s in folder_samples(eval_dir, contract) if s[1] >= 0] or folder_samples(
            eval_dir, contract
        )
        eval_source = str(eval_dir)
    else:
        if calib_dir is not None:
            try:
                _, run_val, _ = training_samples(report)
            except DatasetError:
                run_val = []
        eval_samples, eval_source = run_val, "the run's validation images"
    if eval_samples:
        say(f"int8 accuracy is checked on {len(eval_samples)} images from {eval_source}")
    else:
        say("no labelled images to check int8 accuracy: pass --eval DIR to enforce --max-accuracy-drop")
    say(f"quantising to int8 (QDQ, {calib_method}, calibrated on {len(calib)} images from {calib_source})...")
    result.int8 = quantize_model(
        fp32_path,
        int8_path,
        calib,
        calib_source,
        eval_samples=eval_samples or None,
        method=calib_method,
        per_channel=per_channel,
        max_accuracy_drop=max_accuracy_drop,
        force=force,
    )
    return result
