"""Static int8 quantisation (ONNX Runtime, QDQ format), calibrated on real images, with an accuracy budget.

Calibration images go through ``imaging.load_image``, the preprocessing the model was trained with. The
result is checked on a labelled folder: accuracy against the fp32 model, top-1 agreement, and the speed-up
measured here; an int8 model that loses more than the budget is not written, nor one that no labelled image
can check, unless the gate is turned off (the contract then says so). ``method="auto"`` tries the
calibration methods with and without per-channel weights and keeps the most accurate within the budget. When
none is within it, the layers whose quantisation costs the most stay in fp32, the fewest that meet the budget
(``sensitivity.py``); the contract lists them.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.conversion.calibration import decode_batches, even_batches
from edgecnn.conversion.qdq import preprocess_for_quantization, quantize_once
from edgecnn.conversion.sensitivity import (
    Candidate,
    Fallback,
    Judge,
    Search,
    contract_fields,
    keep_fp32_until_within_budget,
    most_accurate,
    over_budget_error,
)
from edgecnn.core.atomic import atomic_output
from edgecnn.core.contract import ModelContract
from edgecnn.core.dataset import Sample
from edgecnn.core.errors import ConfigError, DatasetError, ExportError
from edgecnn.core.onnxfile import (
    file_sha256,
    load_onnx,
    op_counts,
    opset_of,
    read_contract,
    save_onnx,
    set_contract,
)
from edgecnn.core.version import onnxruntime_version

METHODS = ("minmax", "entropy", "percentile")
METHOD_CHOICES = (*METHODS, "auto")
NO_LABELS_HINT = (
    "pass --eval DIR (one sub-folder per class, named as the model's labels), or --no-accuracy-gate to write "
    "the int8 model unchecked (its contract records that)"
)

logger = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    """The written int8 model and the evidence for it."""

    output: Path
    contract: ModelContract
    fp32_size: int
    int8_size: int
    calib_images: int
    chosen: Candidate
    fp32_accuracy: float | None
    int8_accuracy: float | None
    agreement: float | None
    eval_images: int
    fp32_latency_ms: float
    int8_latency_ms: float
    latency_batch: int
    candidates: list[Candidate] = field(default_factory=list)
    max_accuracy_drop: float = 1.0
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # calibration and evaluation files
    accuracy_gate: str = "passed"  # or "off (budget not enforced)", "skipped (no labelled images)"
    fallback: Fallback | None = None  # the search for fp32 layers, when no candidate met the budget
    plain_int8_latency_ms: float | None = None  # the chosen candidate with every layer int8, when it differs

    @property
    def speedup(self) -> float:
        return self.fp32_latency_ms / self.int8_latency_ms if self.int8_latency_ms else 0.0

    @property
    def size_ratio(self) -> float:
        return self.int8_size / self.fp32_size if self.fp32_size else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "method": self.chosen.method,
            "per_channel": self.chosen.per_channel,
            "reduce_range": bool((self.contract.quantization or {}).get("reduce_range")),
            "calib_images": self.calib_images,
            "fp32_bytes": self.fp32_size,
            "int8_bytes": self.int8_size,
            "size_ratio": round(self.size_ratio, 4),
            "eval_images": self.eval_images,
            "fp32_accuracy": self.fp32_accuracy,
            "int8_accuracy": self.int8_accuracy,
            "accuracy_drop_pp": drop_pp(self.fp32_accuracy, self.int8_accuracy),
            "accuracy_gate": self.accuracy_gate,
            "top1_agreement": self.agreement,
            "latency_batch": self.latency_batch,
            "fp32_latency_ms": round(self.fp32_latency_ms, 3),
            "int8_latency_ms": round(self.int8_latency_ms, 3),
            "speedup": round(self.speedup, 3),
            "plain_int8_latency_ms": None
            if self.plain_int8_latency_ms is None
            else round(self.plain_int8_latency_ms, 3),
            "fallback": self.fallback.to_dict() if self.fallback else None,
            "max_accuracy_drop_pp": self.max_accuracy_drop,
            "candidates": [c.to_dict() for c in self.candidates],
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }


def drop_pp(fp32_accuracy: float | None, int8_accuracy: float | None) -> float | None:
    """The accuracy lost by int8, in percentage points (rounded to 0.001), or None when not measured."""
    if fp32_accuracy is None or int8_accuracy is None:
        return None
    return round((fp32_accuracy - int8_accuracy) * 100, 3)


def predict_all(model_path: Path, batches: Sequence[np.ndarray]) -> np.ndarray:
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider="cpu")
    return np.concatenate([predictor.predict_batch(b) for b in batches]) if batches else np.zeros((0, 0))


def latency_sample(batches: list[np.ndarray], size: int) -> np.ndarray:
    """A batch of ``size`` real images for timing: the first ones decoded, repeated when there are fewer."""
    sample = np.concatenate(batches)[:size]
    return np.resize(sample, (size, *sample.shape[1:])) if len(sample) < size else sample


def measure_latency(model_path: Path, batch: np.ndarray, runs: int = 10) -> float:
    """Median milliseconds of one batch on the CPU provider, after a warm-up run."""
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider="cpu")
    predictor.predict_batch(batch)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        predictor.predict_batch(batch)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def quantize_model(
    fp32_path: Path,
    output: Path,
    calib_samples: Sequence[Sample],
    calib_source: str,
    eval_samples: Sequence[Sample] | None = None,
    method: str = "minmax",
    per_channel: bool = True,
    max_accuracy_drop: float = 1.0,
    force: bool = False,
    latency_batch: int = 8,
    accuracy_gate: bool = True,
    fallback: bool = True,
    reduce_range: bool = False,
) -> QuantizeResult:
    """Quantise an edgecnn fp32 ONNX model to int8 and check it against the fp32 model.

    Args:
        fp32_path: The fp32 model written by ``export_model``.
        output: Where the int8 model goes (written atomically).
        calib_samples: Images to calibrate on (labels unused).
        calib_source: Where they came from, for the contract.
        eval_samples: Labelled images for accuracy and agreement (needed by ``method="auto"`` and the gate;
            unlabelled ones, label -1, give agreement only).
        method: "minmax", "entropy", "percentile" or "auto".
        per_channel: Per-channel weight scales (ignored by "auto", which tries both).
        max_accuracy_drop: Largest accuracy loss allowed, in percentage points (0 or more).
        force: Overwrite an existing output.
        latency_batch: Batch size of the speed comparison.
        accuracy_gate: Enforce ``max_accuracy_drop``, which needs labelled images. Off: accuracy is measured
            when it can be, the budget is not enforced, and the contract's ``accuracy_gate`` says so.
        fallback: When the gate is on and no candidate meets the budget, keep the fewest most costly layers
            of the most accurate candidate in fp32 until it does (``sensitivity.py``). Off: fail instead.
        reduce_range: Seven-bit weights, for x86 CPUs without VNNI (``core.cpuinfo.int8_saturates``).

    Raises:
        ConfigError: Bad options, or the gate is on and no labelled image can be read.
        ExportError: No candidate within the accuracy budget, even with the fallback (nothing is written).
    """
    say = logger.info
    if method not in METHOD_CHOICES:
        raise ConfigError(f"unknown --calib-method {method!r}; choose from {', '.join(METHOD_CHOICES)}")
    if not max_accuracy_drop >= 0:  # NaN too: no drop is ever within it
        raise ConfigError(f"--max-accuracy-drop must be 0 or more, got {max_accuracy_drop}")
    fp32 = load_onnx(fp32_path)
    contract = read_contract(fp32, what=str(fp32_path))
    if contract.quantization:
        raise ConfigError(f"{fp32_path} is already quantised; quantise the fp32 model")
    if opset_of(fp32) > 20:
        raise ConfigError(
            f"static int8 needs opset 20 or lower (the model has {opset_of(fp32)}); re-export with --opset 17"
        )
    if method == "auto" and not eval_samples:
        raise ConfigError("--calib-method auto needs labelled images to compare candidates: pass --eval DIR")

    eval_bad: list[tuple[Path, str]] = []
    judge = None
    if eval_samples:
        say(f"decoding {len(eval_samples)} evaluation images...")
        eval_batches, label_batches, eval_bad = decode_batches(eval_samples, contract, batch_size=32)
        _log_skipped(say, "evaluation", eval_bad)
        if eval_batches:
            fp32_probs = predict_all(fp32_path, eval_batches)
            judge = Judge(
                eval_batches, np.concatenate(label_batches), fp32_probs, max_accuracy_drop, predict_all
            )
    fp32_acc = judge.fp32_accuracy if judge else None
    if fp32_acc is None and accuracy_gate:
        given = sum(1 for _, label in eval_samples or [] if label >= 0)
        why = f"none of the {given} could be read" if given else "none given"
        raise ConfigError(f"no labelled images to check int8 accuracy ({why}); {NO_LABELS_HINT}")
    measured = fp32_acc is not None
    gate = (
        "passed"
        if accuracy_gate
        else "off (budget not enforced)"
        if measured
        else "skipped (no labelled images)"
    )
    if not accuracy_gate:
        logger.warning(f"int8 accuracy gate {gate}: --max-accuracy-drop is not checked")

    say(f"decoding {len(calib_samples)} calibration images...")
    calib, _, calib_bad = decode_batches(calib_samples, contract, batch_size=8)
    calib = even_batches(calib)  # once: every quantisation of this export reads them as they are
    calib_count = sum(len(b) for b in calib)
    if not calib_count:
        raise DatasetError(f"none of the calibration images in {calib_source} could be read")
    _log_skipped(say, "calibration", calib_bad)

    candidates = (
        [Candidate(m, pc) for m in METHODS for pc in (True, False)]
        if method == "auto"
        else [Candidate(method, per_channel)]
    )
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-") as scratch_dir:
        scratch = Path(scratch_dir)
        pre = scratch / "pre.onnx"
        preprocess_for_quantization(fp32_path, pre)
        for i, cand in enumerate(candidates):
            path = scratch / f"candidate{i}.onnx"
            t = time.perf_counter()
            try:
                quantize_once(
                    pre,
                    path,
                    calib,
                    contract.input.name,
                    cand.method,
                    cand.per_channel,
                    reduce_range=reduce_range,
                )
            except Exception as exc:  # a method can fail on a graph; auto keeps going with the others
                cand.error = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                say(f"  {cand.method} per-channel={cand.per_channel}: failed ({cand.error})")
                if method != "auto":
                    raise ExportError(f"int8 quantisation failed: {cand.error}") from None
                continue
            cand.seconds = time.perf_counter() - t
            if judge is not None:
                cand.accuracy, cand.agreement, cand.within_budget = judge.score(path)
                say(
                    f"  {cand.method} per-channel={cand.per_channel}: "
                    + (f"accuracy {cand.accuracy * 100:.2f}% " if cand.accuracy is not None else "")
                    + f"agreement {cand.agreement * 100:.2f}%"
                )
        usable = [c for c in candidates if c.error is None and (c.within_budget or not accuracy_gate)]
        tried = [c for c in candidates if c.error is None]
        rescue = None
        if not usable and fallback and judge is not None and tried:
            best = most_accurate(tried)
            quantize = partial(quantize_once, reduce_range=reduce_range)
            search = Search(pre, fp32_path, scratch, contract.input.name, calib, judge, quantize)
            rescue = keep_fp32_until_within_budget(search, best.method, best.per_channel)
            usable = [best] if rescue.met else []
        if not usable:
            raise over_budget_error(candidates, fp32_acc, max_accuracy_drop, rescue)
        chosen = most_accurate(usable)
        plain_path = scratch / f"candidate{candidates.index(chosen)}.onnx"
        chosen_path = rescue.path if rescue is not None and rescue.path else plain_path
        int8_acc, agreement = (
            (rescue.accuracy, rescue.agreement) if rescue else (chosen.accuracy, chosen.agreement)
        )
        int8 = load_onnx(chosen_path)
        int8_contract = contract.with_updates(
            quantization={
                "format": "QDQ",
                "weights": "int8",
                "activations": "uint8",
                "per_channel": chosen.per_channel,
                "reduce_range": reduce_range,
                "calibration_method": chosen.method,
                "calibration_images": calib_count,
                "calibration_source": calib_source,
                "tool": f"onnxruntime.quantization {onnxruntime_version()}",
                "fp32_accuracy": fp32_acc,
                "int8_accuracy": int8_acc,
                "top1_agreement": agreement,
                "eval_images": judge.images if judge else 0,
                "fp32_sha256": file_sha256(fp32_path),
                "accuracy_gate": gate,
                "max_accuracy_drop_pp": max_accuracy_drop if accuracy_gate else None,
                "accuracy_drop_pp": drop_pp(fp32_acc, int8_acc),
                **contract_fields(rescue, chosen.accuracy),
            }
        )
        set_contract(int8, int8_contract)
        int8.producer_name = "edgecnn"
        with atomic_output(output, force) as tmp:
            save_onnx(int8, tmp)
            check = load_onnx(tmp)
            if not op_counts(check).get("QuantizeLinear"):
                raise ExportError("the quantised model has no QuantizeLinear nodes; refusing to write it")
            sample = latency_sample(calib, latency_batch)
            fp32_ms = measure_latency(fp32_path, sample)
            int8_ms = measure_latency(tmp, sample)
            plain_ms = measure_latency(plain_path, sample) if rescue is not None else None
            int8_size = tmp.stat().st_size
    if (
        int8_ms > fp32_ms
    ):  # depthwise and squeeze-excite networks often are, on CPUs without int8 dot products
        logger.warning(
            f"the int8 file is slower than fp32 on this machine ({int8_ms:.1f} ms vs {fp32_ms:.1f} ms)"
        )
    return QuantizeResult(
        output=output,
        contract=int8_contract,
        fp32_size=fp32_path.stat().st_size,
        int8_size=int8_size,
        calib_images=calib_count,
        chosen=chosen,
        fp32_accuracy=fp32_acc,
        int8_accuracy=int8_acc,
        agreement=agreement,
        eval_images=judge.images if judge else 0,
        fp32_latency_ms=fp32_ms,
        int8_latency_ms=int8_ms,
        latency_batch=latency_batch,
        candidates=candidates,
        max_accuracy_drop=max_accuracy_drop,
        skipped=list(dict.fromkeys([*calib_bad, *eval_bad])),
        accuracy_gate=gate,
        fallback=rescue,
        plain_int8_latency_ms=plain_ms,
    )


def _log_skipped(say: Any, use: str, skipped: Sequence[tuple[Path, str]], shown: int = 5) -> None:
    for path, reason in skipped[:shown]:
        say(f"skipped {use} file {path}: {reason}")
    if len(skipped) > shown:
        say(f"... and {len(skipped) - shown} more skipped {use} file(s) (--json lists them all)")
