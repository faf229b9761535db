"""Mixed-precision int8 for a model that misses its accuracy budget: the costliest layers stay in fp32.

When no calibration candidate meets ``--max-accuracy-drop``, ``quantize_model`` hands the most accurate one
here. Two stages:

1. **Sensitivity**, on the calibration images. Each quantisable node (Conv, ConvTranspose, Gemm, MatMul) is
   quantised *alone* (ONNX Runtime's ``nodes_to_quantize``, the candidate's calibration method and scales),
   and the model's output probabilities are compared with the fp32 model's: the cost of a layer is the mean
   total-variation distance ``0.5 * sum |p_int8 - p_fp32|`` over the images (0: unchanged; 1: every image's
   probability moved to other classes), with the share of changed top-1 answers as tie-break. A layer alone
   is measured, not the model with one layer left out, because leaving one layer out hides a second ruinous
   layer: while either is quantised the output stays wrong, so both look harmless. Probabilities are what
   the model delivers, so the error is measured there rather than tensor by tensor, where the error of a
   layer mixes with everything quantised before it. The other layers run in fp32 on float inputs
   (``float_inputs``). The calibration images rank the layers; the labelled evaluation images stay the
   judge, as for the candidates.
2. **Greedy**, on the labelled evaluation images. First the bound: every layer whose quantisation changed
   the output kept in fp32 (at least one quantisable layer stays int8). If even that misses the budget there
   is nothing to search and the export fails. Otherwise the layers are kept in fp32 one at a time, most
   costly first, and the accuracy is checked after each, until the budget is met: the fewest fp32 layers in
   that order.

A layer kept in fp32 has fp32 weights and reads float inputs. What it cannot undo: a tensor that int8
neighbours share is still quantised for them, so damage done by an activation's range (rather than by a
layer's weights) can outlast the fallback; the bound then fails and says so.

The cost is one quantisation per quantisable node on at most ``PROBE_IMAGES`` images, plus one full
quantisation and evaluation per greedy step and one for the bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import ExportError
from edgecnn.core.onnxfile import load_onnx, save_onnx

QUANTISABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Relu and Clip stay nodes: otherwise the quantiser drops them and lets the clamp of the next Q stand in, and
# a layer that reads the float tensor before that Q (float_inputs) would miss its activation.
KEEP_ACTIVATIONS = {"QDQKeepRemovableActivations": True}
PROBE_IMAGES = 64  # enough to rank layers; bounds the cost of one quantisation per node on large models
FALLBACK_NAME = "sensitivity"
METRIC = "mean total-variation distance of the output probabilities from fp32, the node quantised alone"

logger = logging.getLogger(__name__)

Predict = Callable[[Path, Sequence[np.ndarray]], np.ndarray]


@dataclass
class Candidate:
    """One quantisation attempt (calibration method, weight scales) and how it scored."""

    method: str
    per_channel: bool
    accuracy: float | None = None
    agreement: float | None = None
    within_budget: bool | None = None
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "per_channel": self.per_channel,
            "accuracy": self.accuracy,
            "top1_agreement": self.agreement,
            "within_budget": self.within_budget,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


@dataclass
class Judge:
    """Scores a model file on the evaluation images: accuracy, top-1 agreement with fp32, the budget."""

    batches: list[np.ndarray]
    labels: np.ndarray
    fp32_probs: np.ndarray
    max_accuracy_drop: float
    predict: Predict

    @property
    def images(self) -> int:
        return int(len(self.labels))

    @property
    def fp32_accuracy(self) -> float | None:
        """fp32 accuracy on the labelled images, or None when none is labelled (label -1)."""
        return _accuracy(self.fp32_probs, self.labels)

    def score(self, path: Path) -> tuple[float | None, float, bool | None]:
        """(accuracy, top-1 agreement with fp32, within the budget); accuracy and budget None without labels."""
        probs = self.predict(path, self.batches)
        agreement = float((probs.argmax(1) == self.fp32_probs.argmax(1)).mean())
        accuracy, fp32 = _accuracy(probs, self.labels), self.fp32_accuracy
        if accuracy is None or fp32 is None:
            return None, agreement, None
        return accuracy, agreement, (fp32 - accuracy) * 100 <= self.max_accuracy_drop + 1e-9


@dataclass
class LayerCost:
    """What quantising one node alone does to the output probabilities."""

    node: str
    op_type: str
    error: float  # mean total-variation distance from fp32 (see METRIC)
    top1_changed: float  # share of probe images whose top-1 answer changes

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "op_type": self.op_type,
            "error": round(self.error, 6),
            "top1_changed": round(self.top1_changed, 4),
        }


@dataclass
class Step:
    """One model tried by the fallback: these nodes in fp32, the rest int8, scored on the evaluation images."""

    fp32_nodes: list[str]
    accuracy: float | None
    agreement: float
    within_budget: bool
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_nodes": self.fp32_nodes,
            "accuracy": self.accuracy,
            "top1_agreement": self.agreement,
            "within_budget": self.within_budget,
        }


@dataclass
class Fallback:
    """The outcome of the search: the layer costs, the bound, the greedy steps and the model that met it."""

    method: str
    per_channel: bool
    probe_images: int
    layers: list[LayerCost] = field(default_factory=list)  # most costly first
    bound: Step | None = None  # every sensitive layer in fp32
    steps: list[Step] = field(default_factory=list)
    path: Path | None = None  # the model within the budget, in the scratch folder
    seconds: float = 0.0

    @property
    def met(self) -> bool:
        return self.path is not None

    @property
    def fp32_nodes(self) -> list[str]:
        """The nodes kept in fp32 by the model that met the budget (empty when none did)."""
        return list(self.steps[-1].fp32_nodes) if self.met and self.steps else []

    @property
    def accuracy(self) -> float | None:
        return self.steps[-1].accuracy if self.met else None

    @property
    def agreement(self) -> float | None:
        return self.steps[-1].agreement if self.met else None

    def op_type(self, node: str) -> str:
        return next((c.op_type for c in self.layers if c.node == node), "?")

    def describe_failure(self) -> str:
        """Why the search found nothing, for the export error."""
        if self.bound is None and len(self.layers) < 2:
            return f"no layer can stay fp32: the model has {len(self.layers)} quantisable layer(s) and one must be int8"
        if self.bound is None:
            return "no layer can stay fp32 to recover accuracy: none changes the output when quantised alone"
        acc = f"{self.bound.accuracy * 100:.2f}%" if self.bound.accuracy is not None else "n/a"
        return f"even with its {len(self.bound.fp32_nodes)} most sensitive layer(s) kept in fp32 the accuracy is {acc}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": FALLBACK_NAME,
            "metric": METRIC,
            "base_calibration_method": self.method,
            "base_per_channel": self.per_channel,
            "probe_images": self.probe_images,
            "met_budget": self.met,
            "fp32_nodes": self.fp32_nodes,
            "accuracy": self.accuracy,
            "top1_agreement": self.agreement,
            "layers": [c.to_dict() for c in self.layers],
            "bound": self.bound.to_dict() if self.bound else None,
            "steps": [s.to_dict() for s in self.steps],
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Search:
    """What the fallback works on: the pre-processed graph, the images, and how to quantise and score."""

    pre_path: Path  # the graph quantize_static reads; node names are this graph's
    fp32_path: Path
    scratch: Path
    input_name: str
    calib: Sequence[np.ndarray]
    judge: Judge
    quantize: Callable[..., None]  # quantize.quantize_once


def most_accurate(candidates: Sequence[Candidate]) -> Candidate:
    """The most accurate candidate, then the most in agreement with fp32; the first tried among equals."""
    return max(candidates, key=lambda c: (c.accuracy or 0.0, c.agreement or 0.0))  # max keeps the first


def over_budget_error(
    candidates: Sequence[Candidate], fp32_acc: float | None, budget: float, fallback: Fallback | None
) -> ExportError:
    """The export error when no candidate, nor the fallback when it ran, meets the accuracy budget."""
    detail = "; ".join(
        f"{c.method}/{'per-channel' if c.per_channel else 'per-tensor'}: {_score(c)}" for c in candidates
    )
    fp32_text = f"{fp32_acc * 100:.2f}%" if fp32_acc is not None else "n/a"
    also = f", and {fallback.describe_failure()}" if fallback is not None else ""
    tried_all = {c.method for c in candidates} >= {"minmax", "entropy", "percentile"}
    advice = ("" if tried_all else "--calib-method auto, ") + "more --calib-size, or a larger budget"
    return ExportError(
        f"int8 accuracy drops more than {budget} pp below fp32 ({fp32_text}) for every candidate "
        f"({detail}){also}; nothing was written. Try {advice}"
    )


def quantisable_nodes(model: Any) -> list[tuple[str, str]]:
    """(name, op type) of the named nodes the fallback may keep in fp32, in graph order."""
    return [(n.name, n.op_type) for n in model.graph.node if n.op_type in QUANTISABLE_OPS and n.name]


def contract_fields(fallback: Fallback | None, plain_accuracy: float | None) -> dict[str, Any]:
    """The int8 contract's record of mixed precision: which nodes stayed fp32, how they were chosen."""
    return {
        "fallback": FALLBACK_NAME if fallback is not None and fallback.met else None,
        "fp32_nodes": fallback.fp32_nodes if fallback is not None else [],
        "plain_int8_accuracy": plain_accuracy,
    }


def keep_fp32_until_within_budget(search: Search, method: str, per_channel: bool) -> Fallback:
    """Keep the fewest, most costly layers in fp32 until the accuracy budget is met.

    Args:
        search: The graph, calibration images, judge and quantiser (see ``Search``).
        method: The calibration method of the candidate to start from.
        per_channel: Its weight scales.

    Returns:
        The search's outcome; ``met`` is False (and ``path`` None) when even the bound misses the budget.
    """
    say = logger.info
    started = time.perf_counter()
    probe = _first_images(search.calib, PROBE_IMAGES)
    result = Fallback(method, per_channel, sum(len(b) for b in probe))
    say(
        f"int8 misses the budget: measuring each layer's cost alone ({result.method}, "
        f"{'per-channel' if result.per_channel else 'per-tensor'}, {result.probe_images} calibration images)..."
    )
    result.layers = rank_layers(search, result, probe)
    # a layer whose quantisation changes nothing alone is no suspect; one layer at least stays int8
    sensitive = [c.node for c in result.layers if c.error > 0][: max(len(result.layers) - 1, 0)]
    if not sensitive:
        result.seconds = time.perf_counter() - started
        return result
    result.bound = _try(search, result, sensitive, "bound")
    say(f"  all {len(sensitive)} sensitive layer(s) in fp32: {_step_text(result.bound)}")
    if result.bound.within_budget:
        for k in range(1, len(sensitive) + 1):
            step = result.bound if k == len(sensitive) else _try(search, result, sensitive[:k], f"keep{k}")
            result.steps.append(step)
            say(f"  {k} layer(s) in fp32 ({', '.join(step.fp32_nodes)}): {_step_text(step)}")
            if step.within_budget:
                result.path = step.path
                break
    result.seconds = time.perf_counter() - started
    return result


def rank_layers(search: Search, base: Fallback, probe: Sequence[np.ndarray]) -> list[LayerCost]:
    """Each quantisable node's cost when quantised alone with ``base``'s settings, most costly first."""
    fp32 = search.judge.predict(search.fp32_path, probe)
    costs = []
    nodes = quantisable_nodes(load_onnx(search.pre_path))
    for i, (node, op_type) in enumerate(nodes):
        path = search.scratch / f"candidate-probe{i}.onnx"
        _quantize(search, base, path, probe, nodes_to_quantize=[node])
        float_inputs(path, {name for name, _ in nodes} - {node})
        probs = search.judge.predict(path, probe)
        error = float(0.5 * np.abs(probs - fp32).sum(1).mean())
        changed = float((probs.argmax(1) != fp32.argmax(1)).mean())
        costs.append(LayerCost(node, op_type, error, changed))
        logger.info(f"  {node} ({op_type}) alone: error {error:.4f}, top-1 changed on {changed * 100:.1f}%")
    return sorted(costs, key=lambda c: (-c.error, -c.top1_changed))  # stable: graph order among equals


def _try(search: Search, base: Fallback, fp32_nodes: list[str], tag: str) -> Step:
    # "candidate" in the name: every int8 model tried on the way is a candidate of this export
    path = search.scratch / f"candidate-fallback-{tag}.onnx"
    _quantize(search, base, path, search.calib, nodes_to_exclude=fp32_nodes)
    float_inputs(path, set(fp32_nodes))
    accuracy, agreement, within = search.judge.score(path)
    return Step(list(fp32_nodes), accuracy, agreement, bool(within), path)


def float_inputs(path: Path, fp32_nodes: Collection[str]) -> None:
    """Let the fp32 nodes of a quantised model read the float tensors their quantised inputs came from.

    ``nodes_to_exclude`` keeps a node's weights float but not its input: the Q/DQ pair made for a quantised
    neighbour stays in front of it. That costs accuracy, and worse, the WeightBiasQuantization optimisation of
    recent ONNX Runtime releases (seen with 1.31) quantises at session start the float weights of any Conv,
    ConvTranspose or Gemm fed by a per-tensor DequantizeLinear (int8, symmetric, per tensor): the layer kept in
    fp32 would run in int8 after all. Rewired to the tensor before the pair, it runs in fp32 on every runtime; the pair stays
    for the other consumers, or goes when none is left. The model must keep its Relu/Clip nodes
    (``KEEP_ACTIVATIONS``).
    """
    model = load_onnx(path)
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name not in fp32_nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":  # an activation; stored weights have no Q
                node.input[i] = q.input[0]
    _drop_unused_qdq(model)
    save_onnx(model, path)


def _drop_unused_qdq(model: Any) -> None:
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)
        ]
        for node in dead:
            model.graph.node.remove(node)
        if not dead:
            break
    # their scales and zero points too: ONNX Runtime warns about every unused initializer at session start
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def _quantize(search: Search, base: Fallback, path: Path, images: Sequence[np.ndarray], **nodes: Any) -> None:
    search.quantize(
        search.pre_path,
        path,
        images,
        search.input_name,
        base.method,
        base.per_channel,
        options=KEEP_ACTIVATIONS,
        **nodes,
    )


def _first_images(batches: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
    taken, total = [], 0
    for batch in batches:
        if total >= count:
            break
        taken.append(batch[: count - total])
        total += len(taken[-1])
    return taken


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float | None:
    labelled = labels >= 0
    return float((probs.argmax(1)[labelled] == labels[labelled]).mean()) if labelled.any() else None


def _score(candidate: Candidate) -> str:
    if candidate.error:
        return f"failed ({candidate.error})"
    return f"{candidate.accuracy * 100:.2f}%" if candidate.accuracy is not None else "not measured"


def _step_text(step: Step) -> str:
    acc = f"accuracy {step.accuracy * 100:.2f}%, " if step.accuracy is not None else ""
    return f"{acc}agreement {step.agreement * 100:.2f}%, {'within' if step.within_budget else 'over'} budget"
