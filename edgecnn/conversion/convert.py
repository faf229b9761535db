"""``edgecnn export``: Keras to a self-describing ONNX file, proven equal to the Keras model before it is kept.

This is the only module that knows tf2onnx. Keras 3 breaks ``tf2onnx.convert.from_keras``; we convert a
``tf.function`` of the inference-only model with ``tf2onnx.convert.from_function``, naming the input
``image`` and the output ``probabilities``. The contract from the training report goes into the file's
metadata, and the parity gate (largest probability difference at most 1e-4; a top-1 flip only on a near-tie)
runs on the written file before it replaces anything at the output path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.labels import read_labels
from edgecnn.conversion.preprocess import AdoptOptions
from edgecnn.conversion.quantize import quantize_model
from edgecnn.conversion.samples import (
    int8_samples,
    parity_samples,
    run_report,
)
from edgecnn.conversion.tta import add_flip_tta, check_tta, flip_average
from edgecnn.core.atomic import atomic_output
from edgecnn.core.contract import INPUT_NAME, OUTPUT_NAME, InputSpec, ModelContract
from edgecnn.core.dataset import Sample
from edgecnn.core.decode import iter_batches
from edgecnn.core.errors import ConfigError, ExportError, ModelFileError, OutputError
from edgecnn.core.onnxfile import file_sha256, save_onnx, set_contract
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
    flips: int = 0  # images whose top-1 class differs
    flip_margin: float = 0.0  # the largest Keras margin between the two classes of a flipped image

    @property
    def passed(self) -> bool:
        near_ties = self.flip_margin <= 2 * self.max_abs_diff
        return self.images > 0 and self.max_abs_diff <= PARITY_ATOL and near_ties

    def describe(self) -> str:
        tie = "near-ties" if self.flip_margin <= 2 * self.max_abs_diff else "not near-ties"
        flips = f" ({self.flips} flip(s), Keras margin {self.flip_margin:.1e}: {tie})" if self.flips else ""
        return (
            f"parity on {self.images} images from {self.source}: max |p_keras - p_onnx| = {self.max_abs_diff:.2e} "
            f"(limit {PARITY_ATOL:.0e}), top-1 agreement {self.top1_agreement * 100:.1f}%{flips}"
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
    fp16: Any = None  # fp16.Fp16Result when --fp16 was given
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
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ModelFileError(
            f"{path} is a Keras .h5 model edgecnn did not train: pass --labels FILE and how it expects its "
            "pixels (--preset or --scale)"
        )
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"{path} is not a .keras model; give a run folder or a .keras file")
    return path, path.parent


def convert_to_onnx(keras_model: Any, contract: ModelContract, opset: int) -> Any:
    """Convert an inference-only Keras model to an ONNX ModelProto with the stable tensor names."""
    from edgecnn.conversion.keras2onnx import keras_to_onnx

    return keras_to_onnx(
        keras_model, [None, *contract.input.shape], INPUT_NAME, OUTPUT_NAME, opset, "the model"
    )


def check_parity(
    keras_model: Any, onnx_path: Path, contract: ModelContract, samples: Sequence[Sample], source: str
) -> ParityReport:
    """Run Keras and ONNX Runtime (CPU, full graph optimisation) on the same decoded images."""
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(onnx_path, provider="cpu")
    skipped: list[tuple[Path, str]] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for batch, _, _, bad in iter_batches(samples, contract, batch_size=16, workers=None):
        skipped.extend(bad)
        if len(batch):
            pairs.append((np.asarray(keras_model(batch, training=False)), predictor.predict_batch(batch)))
    if not pairs:
        raise ExportError(f"no readable images in {source} to check the export against Keras")
    p_keras, p_onnx = (np.concatenate(side) for side in zip(*pairs))
    return judge_parity(p_keras, p_onnx, source, skipped)


def judge_parity(
    p_keras: np.ndarray, p_onnx: np.ndarray, source: str, skipped: list[tuple[Path, str]] | None = None
) -> ParityReport:
    """The parity verdict on Keras and ONNX Runtime probabilities (images x classes) of the same images.

    The largest difference must be within ``PARITY_ATOL``; a top-1 flip is accepted only as a near-tie, the
    Keras margin between the two classes within twice the largest difference (as far as it can move a gap).
    """
    p_keras, p_onnx = np.asarray(p_keras, np.float64), np.asarray(p_onnx, np.float64)
    rows, top_keras, top_onnx = np.arange(len(p_keras)), p_keras.argmax(1), p_onnx.argmax(1)
    flipped = top_keras != top_onnx
    margins = (p_keras[rows, top_keras] - p_keras[rows, top_onnx])[flipped]
    return ParityReport(
        images=len(p_keras),
        max_abs_diff=float(np.abs(p_keras - p_onnx).max()),
        top1_agreement=1.0 - float(flipped.mean()),
        source=source,
        skipped=list(skipped or []),
        flips=int(flipped.sum()),
        flip_margin=float(margins.max()) if len(margins) else 0.0,
    )


def export_model(
    source: str | Path,
    output: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    calib_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    parity_images: int = PARITY_IMAGES,
    tta: str | None = None,
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
        tta: "flip" puts test-time augmentation in the graph (``conversion.tta``); the parity gate then
            compares with Keras averaging the same two views.

    Raises:
        ExportError: Conversion failed or the parity gate failed (no file is left at the output path).
        OutputError: The output exists and ``force`` is off.
    """
    say = logger.info
    tta = check_tta(tta)
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset must be between 13 and 21, got {opset}")
    model_path, run_dir = resolve_source(source)
    out_path = Path(output) if output else run_dir / "model.onnx"
    if out_path.suffix.lower() != ".onnx":
        raise ConfigError(f"the output must end in .onnx, got {out_path}")
    if out_path.exists() and not force:
        raise OutputError(
            f"{out_path} exists; pass --force to overwrite it (or --int8/--fp16 alone to reuse it)"
        )
    contract = load_keras_contract(model_path)
    report = run_report(run_dir)
    samples, sample_source = parity_samples(contract, report, calib_dir, eval_dir, parity_images)

    from edgecnn.training.models import import_keras

    import_keras()
    t0 = time.perf_counter()
    keras_model = load_keras_model(model_path)
    say(f"converting {model_path} to ONNX (opset {opset})...")
    proto = convert_to_onnx(keras_model, contract, opset)
    if tta == "flip":
        add_flip_tta(proto, contract.num_classes)
    contract = contract.with_updates(
        tta=tta,
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
        forward = flip_average(keras_model) if tta == "flip" else keras_model
        parity = check_parity(forward, tmp, contract, samples, sample_source)
        for path, reason in parity.skipped[:5]:
            say(f"skipped parity image {path}: {reason}")
        say(parity.describe())
        if not parity.passed:
            raise ExportError(f"parity gate failed: {parity.describe()}; nothing was written to {out_path}")
        size = tmp.stat().st_size
    return ExportResult(
        output=out_path, contract=contract, parity=parity, size_bytes=size, seconds=time.perf_counter() - t0
    )


def current_fp32(onnx_path: Path, keras_path: Path, tta: str | None = None) -> ModelContract | None:
    """The contract of ``onnx_path`` when it is an edgecnn fp32 export of exactly this .keras file (with the
    same test-time augmentation), else None."""
    from edgecnn.core.onnxfile import load_onnx, read_contract

    try:
        contract = read_contract(load_onnx(onnx_path))
    except ModelFileError:
        return None
    current = contract.quantization is None and contract.source.get("model_sha256") == file_sha256(keras_path)
    current = current and contract.tta == tta
    return contract if current else None


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
    accuracy_gate: bool = True,
    fp16: bool = False,
    fp16_output: str | Path | None = None,
    foreign: AdoptOptions | None = None,
    tta: str | None = None,
    int8_fallback: bool = True,
    reduce_range: str = "auto",
) -> ExportResult:
    """``edgecnn export``: the fp32 file with its parity gate, then (with ``int8``) the calibrated int8 file and
    (with ``fp16``) the fp16 file with its parity gate against fp32 (``export.fp16``).

    With ``int8`` or ``fp16`` and an fp32 file already exported from the same .keras file, the fp32 file is
    reused. ``source`` may also be an edgecnn .onnx file (exported or adopted): only the int8 and fp16 files
    are derived from it, calibrated on --calib and gated on --eval. With ``foreign`` (the labels and
    preprocessing of a Keras model edgecnn did not train), the .keras/.h5 file is converted and adopted
    (``conversion.foreign``). The int8 and fp16 accuracy gates need labelled images: without them nothing is written, unless
    ``accuracy_gate`` is off.
    ``reduce_range`` ("auto", "on", "off") gives int8 weights 7 bits for x86 CPUs without VNNI, whose int8
    kernels saturate with 8 (``core.cpuinfo.int8_saturates``); auto: when the exporting CPU is one.

    Raises:
        ConfigError: Bad options, or the accuracy gate is on and there are no labelled images.
        DatasetError: A --calib or --eval folder that is missing or cannot be read.
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
    seven_bits = resolve_reduce_range(reduce_range)
    if (int8 or fp16) and not max_accuracy_drop >= 0:  # also refuses NaN, which no drop could be within
        raise ConfigError(f"--max-accuracy-drop must be 0 or more, got {max_accuracy_drop}")
    from edgecnn.conversion.fp16 import export_fp16, fp16_path_for, fp16_samples

    tta = check_tta(tta)
    source = Path(source)
    if tta is not None and (foreign is not None or source.suffix.lower() == ".onnx"):
        raise ConfigError("--tta applies to models edgecnn trained (a run folder or its .keras file)")
    onnx_source = source.suffix.lower() == ".onnx"
    if onnx_source:
        _check_onnx_source(source, output, int8, fp16, foreign)
        model_path, run_dir, fp32_path = source, source.parent, source
    elif foreign is not None:
        model_path, run_dir = source, source.parent
        fp32_path = Path(output) if output else source.with_suffix(".onnx")
    else:
        model_path, run_dir = resolve_source(source)
        fp32_path = Path(output) if output else run_dir / "model.onnx"
    report = run_report(run_dir) if foreign is None and not onnx_source else {}
    int8_path = Path(int8_output) if int8_output else int8_path_for(fp32_path)
    fp16_path = Path(fp16_output) if fp16_output else fp16_path_for(fp32_path)
    for wanted, path in ((int8, int8_path), (fp16, fp16_path)):
        if wanted and path.exists() and not force:
            raise OutputError(f"{path} exists; pass --force to overwrite it")
    if fp16 and fp16_path.suffix.lower() != ".onnx":
        raise ConfigError(f"the fp16 output must end in .onnx, got {fp16_path}")
    if onnx_source:
        from edgecnn.core.onnxfile import load_onnx, read_contract

        contract = read_contract(load_onnx(source), what=str(source))
        result = ExportResult(
            source, contract, ParityReport(0, 0.0, 1.0, "the source"), source.stat().st_size, 0.0
        )
        result.notes.append("derived from an edgecnn ONNX file")
    elif foreign is not None:  # the labels are enough to choose the gates' images before anything is written
        contract = ModelContract(labels=read_labels(foreign.labels), input=InputSpec.square(1))
    else:
        contract = load_keras_contract(model_path)
    if int8:
        calib, calib_source, evals, eval_source = int8_samples(
            contract, report, calib_dir, calib_size, eval_dir, accuracy_gate
        )
    if fp16:
        half_samples, half_source = fp16_samples(contract, report, calib_dir, eval_dir, accuracy_gate)
    derived = int8 or fp16
    if foreign is not None:
        check = ("--eval", eval_dir) if eval_dir is not None else ("--calib", calib_dir)
        result = _export_foreign(model_path, foreign, fp32_path, opset, force, check)
    elif not onnx_source:
        exists = derived and not force and fp32_path.exists()
        reused = current_fp32(fp32_path, model_path, tta) if exists else None
        if reused is not None:
            say(f"{fp32_path} is already an export of {model_path}: reusing it")
            result = ExportResult(
                fp32_path, reused, ParityReport(0, 0.0, 1.0, "earlier export"), fp32_path.stat().st_size, 0.0
            )
            result.notes.append("fp32 file reused (same source model)")
        else:
            result = export_model(
                model_path,
                fp32_path,
                opset=opset,
                force=force,
                calib_dir=calib_dir,
                eval_dir=eval_dir,
                tta=tta,
            )
    if fp16:
        result.fp16 = export_fp16(
            fp32_path, fp16_path, half_samples, half_source, max_accuracy_drop, accuracy_gate, force
        )
    if not int8:
        return result
    if evals:
        what = "accuracy is checked" if evals[0][1] >= 0 else "agreement with fp32 is measured (no labels)"
        say(f"int8 {what} on {len(evals)} images from {eval_source}")
    say(f"quantising to int8 (QDQ, {calib_method}, calibrated on {len(calib)} images from {calib_source})...")
    result.int8 = quantize_model(
        fp32_path,
        int8_path,
        calib,
        calib_source,
        eval_samples=evals or None,
        method=calib_method,
        per_channel=per_channel,
        max_accuracy_drop=max_accuracy_drop,
        force=force,
        accuracy_gate=accuracy_gate,
        fallback=int8_fallback,
        reduce_range=seven_bits,
    )
    return result


def resolve_reduce_range(choice: str) -> bool:
    """``--reduce-range`` as a bool: auto is on where this CPU's int8 kernels saturate with 8-bit weights.

    Raises:
        ConfigError: A choice other than auto, on and off.
    """
    from edgecnn.core.cpuinfo import int8_saturates

    if choice not in ("auto", "on", "off"):
        raise ConfigError(f"--reduce-range must be auto, on or off, got {choice!r}")
    if choice == "auto":
        if int8_saturates():
            logger.info(
                "int8 weights in 7 bits (--reduce-range auto): this CPU has no VNNI, and ONNX Runtime's int8 "
                "kernels here saturate with 8-bit weights; --reduce-range off for a model that runs on VNNI, "
                "AMX or Arm CPUs only"
            )
            return True
        return False
    return choice == "on"


def _check_onnx_source(source: Path, output: Any, int8: bool, fp16: bool, foreign: Any) -> None:
    if foreign is not None:
        raise ConfigError(
            f"--labels and the preprocessing options are for Keras models; give {source.name} a contract "
            "with `edgecnn adopt`"
        )
    if output is not None:
        raise ConfigError(f"--output names the fp32 file; with an .onnx source that is {source} itself")
    if not (int8 or fp16):
        raise ConfigError(
            f"{source} is already ONNX: pass --int8 and/or --fp16 to derive from it "
            "(or `edgecnn adopt` to give a model from elsewhere a contract)"
        )


def _export_foreign(
    model_path: Path, foreign: AdoptOptions, output: Path, opset: int, force: bool, images: tuple[str, Any]
) -> ExportResult:
    from edgecnn.conversion.foreign import export_foreign_keras

    option, folder = images
    adopted = export_foreign_keras(model_path, foreign, output, opset, force, folder, PARITY_ATOL, option)
    check = adopted.check
    parity = ParityReport(check.images, check.max_abs_diff, check.top1_agreement, check.source, check.skipped)
    result = ExportResult(adopted.output, adopted.contract, parity, adopted.size_bytes, adopted.seconds)
    result.notes.extend(adopted.notes)
    return result
