"""Which real images an export uses: for the parity check, for int8 calibration, and for the int8 accuracy
gate; chosen (and checked) before anything is written."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecnn.apps.evaluate import resolve_eval_dir
from edgecnn.conversion.quantize import NO_LABELS_HINT
from edgecnn.core.contract import ModelContract
from edgecnn.core.dataset import Sample, discover, list_class_folder
from edgecnn.core.errors import ConfigError, DatasetError
from edgecnn.core.files import iter_image_files


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


def folder_samples(folder: str | Path, contract: ModelContract, option: str = "--calib") -> list[Sample]:
    """Samples of a labelled folder (class folders named as the model's labels), or of a plain image folder.

    Raises:
        DatasetError: The folder is missing, is not a folder, or cannot be listed (the message names ``option``).
    """
    try:
        root = resolve_eval_dir(folder)
        if not root.is_dir():
            state = "is not a folder" if root.exists() else "not found"
            raise DatasetError(f"{option} {root} {state}: give a folder of class folders or of images")
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError as exc:
        raise DatasetError(f"{option} {folder}: cannot read the folder ({exc.strerror or exc})") from None
    if subdirs:
        return list_class_folder(root, classes=list(contract.labels)).samples
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


def parity_samples(
    contract: ModelContract,
    report: dict[str, Any],
    calib_dir: str | Path | None,
    eval_dir: str | Path | None,
    count: int,
) -> tuple[list[Sample], str]:
    """Real images for the parity check: --eval, else --calib, else the run's validation then training data."""
    if eval_dir is not None:
        return sample_across_classes(folder_samples(eval_dir, contract, "--eval"), count), str(eval_dir)
    if calib_dir is not None:
        return sample_across_classes(folder_samples(calib_dir, contract), count), str(calib_dir)
    train, val, where = training_samples(report)
    kind = "validation" if val else "training"
    return sample_across_classes(val or train, count), f"the run's {kind} data ({where})"


def int8_samples(
    contract: ModelContract,
    report: dict[str, Any],
    calib_dir: str | Path | None,
    calib_size: int,
    eval_dir: str | Path | None,
    accuracy_gate: bool = True,
) -> tuple[list[Sample], str, list[Sample], str]:
    """Calibration images (--calib, else the run's training images) and images for the int8 accuracy gate
    (--eval, else the run's validation images), with where each came from; read before anything is written.

    Raises:
        ConfigError: ``accuracy_gate`` is on and none of the evaluation images has a label.
        DatasetError: A folder that is missing or cannot be read.
    """
    run_val: list[Sample] = []
    if calib_dir is not None:
        calib, calib_source = folder_samples(calib_dir, contract), str(calib_dir)
        with contextlib.suppress(DatasetError):  # the run's data may be gone: --calib replaces it
            run_val = training_samples(report)[1] if eval_dir is None else []
    else:
        calib, run_val, where = training_samples(report)
        calib_source = f"training images of the run ({where})"
    if eval_dir is not None:
        found = folder_samples(eval_dir, contract, "--eval")
        evals, eval_source = [s for s in found if s[1] >= 0] or found, f"--eval {eval_dir}"
    else:
        no_run = "no --eval folder (the model has no training run)"
        evals, eval_source = run_val, "the run's validation images" if report else no_run
    if accuracy_gate and not any(label >= 0 for _, label in evals):
        why = " (no class folders)" if evals else ""
        raise ConfigError(
            f"no labelled images in {eval_source}{why} to check int8 accuracy; {NO_LABELS_HINT}"
        )
    return sample_across_classes(calib, calib_size, seed=1), calib_source, evals, eval_source
