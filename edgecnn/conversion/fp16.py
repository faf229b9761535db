"""fp16 export: the fp32 ONNX model in float16, kept only through a parity gate and the int8 accuracy budget.

Conversion is ONNX Runtime's own float16 converter (``onnxruntime.transformers.float16``, ONNX Runtime's
maintained copy of onnxconverter-common's converter, in every onnxruntime wheel: no extra dependency) with
``keep_io_types=True``: the input stays float32 raw pixels and the output float32 probabilities, so the
contract and every caller are unchanged. The ops in ``BLOCKED_OPS`` stay in float32 because fp16 loses
accuracy there: Softmax and the other exponentials and logarithms (exp overflows
fp16 above about 11), the reductions that sum many values (a sum over a feature map can pass fp16's largest
value, 65504), and the normalisations with square roots and reciprocals. A float32 -> fp16 -> float32 cast
pair that the converter leaves behind a blocked op (the softmax output, rounded for nothing) is removed.

The gates run on real images before anything is at the output path:

1. Parity with the fp32 file: the largest probability difference at most ``FP16_MAX_ABS_DIFF`` (1e-2), and a
   top-1 flip only on a near-tie (the fp32 margin between the two classes within twice the largest
   difference: the rule of the fp32 parity gate). Why 1e-2: fp16 keeps 11 significant bits (relative
   rounding 4.9e-4 per operation); through the ten or so layers of these CNNs the logits move by about 1e-3
   relative, which moves a softmax probability by about 1e-3. 1e-2 leaves a tenfold margin for deeper
   models and still catches a broken conversion, which overflows to inf/NaN or moves probabilities by 0.1
   and more. Non-finite outputs fail.
2. Accuracy: the int8 export's budget (``--max-accuracy-drop`` percentage points on labelled images), with
   its ``accuracy_gate`` switch, recorded the same way in the contract.

Where the gate runs: provider "auto", so CUDA when it really starts (fp16 arithmetic on the GPU), else the
CPU. ONNX Runtime's CPU provider runs an fp16 model but has fp16 kernels for few ops: it inserts casts and
runs most nodes in float32, so on the CPU the gate measures the rounding of the weights and of the values
crossing the casts, not fp16 arithmetic. The contract records the provider that judged the file
(``quantization.gate_provider``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.calibration import decode_batches
from edgecnn.conversion.convert import ParityReport, judge_parity
from edgecnn.conversion.quantize import drop_pp, latency_sample, measure_latency
from edgecnn.conversion.samples import folder_samples, parity_samples, training_samples
from edgecnn.core.atomic import atomic_output
from edgecnn.core.contract import ModelContract
from edgecnn.core.dataset import Sample
from edgecnn.core.errors import ConfigError, DatasetError, DependencyError, ExportError
from edgecnn.core.onnxfile import file_sha256, load_onnx, read_contract, save_onnx, set_contract

FP16_MAX_ABS_DIFF = 1e-2
BLOCKED_OPS = (
    "Softmax",
    "LogSoftmax",
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "GlobalAveragePool",
    "LayerNormalization",
)
LATENCY_BATCH = 8
NO_LABELS_HINT = (
    "pass --eval DIR (one sub-folder per class, named as the model's labels), or --no-accuracy-gate to write "
    "the fp16 model through its parity gate only (its contract records that)"
)
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT, FLOAT16

logger = logging.getLogger(__name__)


@dataclass
class Fp16Result:
    """The written fp16 model and the evidence for it."""

    output: Path
    contract: ModelContract
    fp32_size: int
    fp16_size: int
    parity: ParityReport
    gate_provider: str
    fp32_accuracy: float | None
    fp16_accuracy: float | None
    eval_images: int
    max_accuracy_drop: float
    accuracy_gate: str
    fp32_latency_ms: float
    fp16_latency_ms: float
    latency_batch: int = LATENCY_BATCH
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "fp32_bytes": self.fp32_size,
            "fp16_bytes": self.fp16_size,
            "size_ratio": round(self.size_ratio, 4),
            "gate_provider": self.gate_provider,
            "parity_images": self.parity.images,
            "parity_max_abs_diff": self.parity.max_abs_diff,
            "parity_limit": FP16_MAX_ABS_DIFF,
            "parity_top1_agreement": self.parity.top1_agreement,
            "eval_images": self.eval_images,
            "fp32_accuracy": self.fp32_accuracy,
            "fp16_accuracy": self.fp16_accuracy,
            "accuracy_drop_pp": drop_pp(self.fp32_accuracy, self.fp16_accuracy),
            "accuracy_gate": self.accuracy_gate,
            "max_accuracy_drop_pp": self.max_accuracy_drop,
            "latency_batch": self.latency_batch,
            "fp32_latency_ms": round(self.fp32_latency_ms, 3),
            "fp16_latency_ms": round(self.fp16_latency_ms, 3),
            "speedup": round(self.speedup, 3),
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }

    @property
    def size_ratio(self) -> float:
        return self.fp16_size / self.fp32_size if self.fp32_size else 0.0

    @property
    def speedup(self) -> float:
        return self.fp32_latency_ms / self.fp16_latency_ms if self.fp16_latency_ms else 0.0


def fp16_path_for(fp32_path: Path) -> Path:
    """model.onnx -> model.fp16.onnx"""
    return fp32_path.with_name(fp32_path.stem + ".fp16.onnx")


def fp16_parity_passed(report: ParityReport) -> bool:
    """The fp16 parity verdict: finite, within ``FP16_MAX_ABS_DIFF``, top-1 flips only on near-ties."""
    diff = report.max_abs_diff
    return (
        report.images > 0
        and bool(np.isfinite(diff))
        and diff <= FP16_MAX_ABS_DIFF
        and (report.flip_margin <= 2 * diff)
    )


def describe_fp16_parity(report: ParityReport, provider: str) -> str:
    tie = "near-ties" if report.flip_margin <= 2 * report.max_abs_diff else "not near-ties"
    flips = f" ({report.flips} flip(s), fp32 margin {report.flip_margin:.1e}: {tie})" if report.flips else ""
    return (
        f"fp16 parity on {report.images} images from {report.source} ({provider}): max |p_fp32 - p_fp16| = "
        f"{report.max_abs_diff:.2e} (limit {FP16_MAX_ABS_DIFF:.0e}), top-1 agreement "
        f"{report.top1_agreement * 100:.1f}%{flips}"
    )


def fp16_samples(
    contract: ModelContract,
    report: dict[str, Any],
    calib_dir: str | Path | None,
    eval_dir: str | Path | None,
    accuracy_gate: bool,
    parity_images: int = 64,
) -> tuple[list[Sample], str]:
    """Images for the fp16 gates: --eval (labelled ones first), else the run's validation images; without
    any, the parity gate alone runs on --calib or the run's images. Chosen before anything is written.

    Raises:
        ConfigError: The accuracy gate is on and there is no labelled image.
        DatasetError: A folder that is missing or cannot be read.
    """
    if eval_dir is not None:
        found = folder_samples(eval_dir, contract, "--eval")
        evals, source = [s for s in found if s[1] >= 0] or found, f"--eval {eval_dir}"
    else:
        try:
            evals = training_samples(report)[1]
        except DatasetError:
            evals = []
        source = (
            "the run's validation images" if report else "no --eval folder (the model has no training run)"
        )
    if accuracy_gate and not any(label >= 0 for _, label in evals):
        why = " (no class folders)" if evals else ""
        raise ConfigError(f"no labelled images in {source}{why} to check fp16 accuracy; {NO_LABELS_HINT}")
    if evals:
        return evals, source
    return parity_samples(contract, report, calib_dir, None, parity_images)


def convert_float16(model: Any) -> Any:
    """The model with float16 weights and arithmetic, float32 inputs and outputs, ``BLOCKED_OPS`` in float32.

    Raises:
        DependencyError: ONNX Runtime's float16 converter cannot be imported.
        ExportError: The converter failed on this graph.
    """
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:
        raise DependencyError(f"fp16 export needs onnxruntime's float16 converter ({exc})") from None
    blocked = sorted({*DEFAULT_OP_BLOCK_LIST, *BLOCKED_OPS})
    try:
        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    except Exception as exc:  # the converter raises many kinds for graphs it cannot handle
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ExportError(f"the float16 conversion failed: {first}") from None
    drop_round_trips(converted)
    return converted


def drop_round_trips(model: Any) -> int:
    """Replace float32 -> float16 -> float32 cast pairs by one Identity; returns how many were removed.

    Such a pair only rounds a float32 value (a blocked op's output on its way to a float32 graph output).
    """
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    outputs = {v.name for v in graph.output}
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    removed = 0
    for first in list(graph.node):
        if first.op_type != "Cast" or _cast_to(first) != _FLOAT16 or types.get(first.input[0]) != _FLOAT:
            continue
        after = users.get(first.output[0], [])
        if not after or first.output[0] in outputs:
            continue
        if any(n.op_type != "Cast" or _cast_to(n) != _FLOAT for n in after):
            continue
        for node in after:
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = first.input[0]
        graph.node.remove(first)
        removed += 1
    return removed


def _cast_to(node: Any) -> int | None:
    return next((int(a.i) for a in node.attribute if a.name == "to"), None)


def export_fp16(
    fp32_path: Path,
    output: Path,
    samples: Sequence[Sample],
    source: str,
    max_accuracy_drop: float = 1.0,
    accuracy_gate: bool = True,
    force: bool = False,
) -> Fp16Result:
    """Convert an edgecnn fp32 model to fp16 and write it only if it passes its gates.

    Args:
        fp32_path: The fp32 model written by ``export_model``.
        output: Where the fp16 model goes (written atomically).
        samples: Real images for parity and, those with labels, for accuracy.
        source: Where they came from, for messages and the contract.
        max_accuracy_drop: Largest accuracy loss allowed, in percentage points (0 or more).
        accuracy_gate: Enforce ``max_accuracy_drop``; off, the contract records that it was not enforced.
        force: Overwrite an existing output.

    Raises:
        ConfigError: Bad options, an already converted model, or no labelled image with the gate on.
        ExportError: The conversion or a gate failed (nothing is written).
        OutputError: The output exists and ``force`` is off.
    """
    from edgecnn.core.version import __version__, onnxruntime_version
    from edgecnn.runtime.predictor import Predictor

    if not max_accuracy_drop >= 0:
        raise ConfigError(f"--max-accuracy-drop must be 0 or more, got {max_accuracy_drop}")
    fp32 = load_onnx(fp32_path)
    contract = read_contract(fp32, what=str(fp32_path))
    if contract.numeric_precision != "fp32":
        raise ConfigError(f"{fp32_path} is {contract.numeric_precision}; convert the fp32 model to fp16")
    batches, label_batches, skipped = decode_batches(samples, contract, batch_size=32)
    for path, reason in skipped[:5]:
        logger.info(f"skipped fp16 gate image {path}: {reason}")
    if not batches:
        raise ExportError(f"no readable images in {source} to check the fp16 model against fp32")
    labels = np.concatenate(label_batches)
    labelled = labels >= 0
    if accuracy_gate and not labelled.any():
        raise ConfigError(
            f"no labelled images in {source} could be read to check fp16 accuracy; {NO_LABELS_HINT}"
        )
    logger.info(
        f"converting {fp32_path} to fp16 (float32 input and output; {', '.join(BLOCKED_OPS[:3])}... kept in float32)"
    )
    converted = convert_float16(fp32)
    facts: dict[str, Any] = {
        "conversion": "float16",
        "io_types": "float32",
        "blocked_ops": list(BLOCKED_OPS),
        "tool": f"onnxruntime.transformers.float16 {onnxruntime_version()}",
        "fp32_sha256": file_sha256(fp32_path),
    }
    reference = Predictor(fp32_path, provider="cpu")
    p32 = np.concatenate([reference.predict_batch(b) for b in batches])
    with tempfile.TemporaryDirectory(prefix="edgecnn-fp16-") as scratch:
        candidate = Path(scratch) / "candidate.onnx"
        set_contract(converted, contract.with_updates(precision="fp16", quantization=facts))
        save_onnx(converted, candidate)
        judge = Predictor(candidate, provider="auto")
        p16 = np.concatenate([judge.predict_batch(b) for b in batches])
        provider = judge.provider
        judge.close()
    parity = judge_parity(p32, p16, source, skipped)
    logger.info(describe_fp16_parity(parity, provider))
    if not fp16_parity_passed(parity):
        raise ExportError(
            f"fp16 parity gate failed: {describe_fp16_parity(parity, provider)}; nothing was written to {output}"
        )
    fp32_acc = float((p32.argmax(1)[labelled] == labels[labelled]).mean()) if labelled.any() else None
    fp16_acc = float((p16.argmax(1)[labelled] == labels[labelled]).mean()) if labelled.any() else None
    gate = (
        "passed"
        if accuracy_gate
        else "off (budget not enforced)"
        if labelled.any()
        else "skipped (no labelled images)"
    )
    if fp32_acc is not None and fp16_acc is not None:
        logger.info(
            f"fp16 accuracy on {int(labelled.sum())} images: fp32 {fp32_acc * 100:.2f}%, fp16 {fp16_acc * 100:.2f}%"
        )
        over = (fp32_acc - fp16_acc) * 100 > max_accuracy_drop + 1e-9
        if accuracy_gate and over:
            raise ExportError(
                f"fp16 accuracy drops {(fp32_acc - fp16_acc) * 100:.2f} pp below fp32 ({fp32_acc * 100:.2f}%), more "
                f"than --max-accuracy-drop {max_accuracy_drop}; nothing was written to {output}"
            )
    if not accuracy_gate:
        logger.warning(f"fp16 accuracy gate {gate}: --max-accuracy-drop is not checked")
    final = contract.with_updates(
        precision="fp16",
        edgecnn_version=__version__,
        quantization={
            **facts,
            "gate_provider": provider,
            "parity_images": parity.images,
            "max_abs_diff": float(parity.max_abs_diff),
            "max_abs_diff_limit": FP16_MAX_ABS_DIFF,
            "top1_agreement": parity.top1_agreement,
            "fp32_accuracy": fp32_acc,
            "fp16_accuracy": fp16_acc,
            "eval_images": int(labelled.sum()),
            "accuracy_gate": gate,
            "max_accuracy_drop_pp": max_accuracy_drop if accuracy_gate else None,
            "accuracy_drop_pp": drop_pp(fp32_acc, fp16_acc),
        },
    )
    set_contract(converted, final)
    converted.producer_name = "edgecnn"
    with atomic_output(output, force) as tmp:
        save_onnx(converted, tmp)
        sample = latency_sample(batches, LATENCY_BATCH)
        fp32_ms, fp16_ms = measure_latency(fp32_path, sample), measure_latency(tmp, sample)
        size = tmp.stat().st_size
    return Fp16Result(
        output=output,
        contract=final,
        fp32_size=fp32_path.stat().st_size,
        fp16_size=size,
        parity=parity,
        gate_provider=provider,
        fp32_accuracy=fp32_acc,
        fp16_accuracy=fp16_acc,
        eval_images=int(labelled.sum()),
        max_accuracy_drop=max_accuracy_drop,
        accuracy_gate=gate,
        fp32_latency_ms=fp32_ms,
        fp16_latency_ms=fp16_ms,
        skipped=list(skipped),
    )
