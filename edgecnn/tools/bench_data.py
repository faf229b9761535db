"""What a benchmark feeds its models and checks them against: input batches and accuracy on ``--data``.

Without a labelled folder the batches are random pixel values and no accuracy is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import DatasetError, EdgecnnError

if TYPE_CHECKING:
    from edgecnn.tools.bench import BenchModel

ImageSource = Callable[[InputSpec, int], np.ndarray]


def image_source(data_dir: Path | None, most: int) -> ImageSource:
    """A function giving a float32 batch for an input spec: decoded images, or random pixel values."""
    decoded: dict[InputSpec, np.ndarray] = {}

    def batch(spec: InputSpec, size: int) -> np.ndarray:
        if data_dir is None:
            rng = np.random.default_rng(size)
            return rng.integers(0, 256, (size, *spec.shape)).astype(np.float32)
        if spec not in decoded:
            decoded[spec] = _decode_images(data_dir, spec, most)
        pool = decoded[spec]
        return pool[np.arange(size) % len(pool)].astype(np.float32)

    return batch


def _decode_images(data_dir: Path, spec: InputSpec, count: int) -> np.ndarray:
    from edgecnn.core.decode import decode_parallel
    from edgecnn.core.files import iter_image_files
    from edgecnn.core.imaging import IMAGE_SUFFIXES

    files = [p for p in iter_image_files([data_dir], recursive=True) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"no image files in {data_dir}")
    step = max(1, len(files) // count)  # spread the picks over all the class folders
    picked = files[::step][:count]
    images = [d.image for d in decode_parallel(picked, spec) if d.image is not None]
    if not images:
        raise DatasetError(f"none of the {len(picked)} image files tried in {data_dir} could be read")
    return np.stack(images)


def measure_accuracy(models: Sequence[BenchModel], data_dir: Path) -> list[dict[str, Any]]:
    """Accuracy of each model on the labelled folder (CPU), and how often its top-1 matches the first model's."""
    from edgecnn.apps.evaluate import load_onnx_model as load_model
    from edgecnn.apps.evaluate import run_on_folder

    entries: list[dict[str, Any]] = []
    first: dict[Path, str] | None = None
    for model in models:
        entry: dict[str, Any] = {
            "model": str(model.path),
            "accuracy": None,
            "images": 0,
            "agreement_with_first": None,
            "error": None,
        }
        try:
            result = run_on_folder(load_model(model.path, provider="cpu"), data_dir)
        except EdgecnnError as exc:
            entry["error"] = str(exc)
            entries.append(entry)
            continue
        top1 = {
            p: model.contract.labels[i] for p, i in zip(result.paths, result.probabilities.argmax(axis=1))
        }
        if model.index == 0:
            first = top1
        common = [p for p in top1 if first is not None and p in first]
        entry.update(accuracy=round(float(result.metrics.accuracy), 6), images=len(result.paths))
        if first is not None and common:
            entry["agreement_with_first"] = round(sum(top1[p] == first[p] for p in common) / len(common), 6)
        entries.append(entry)
    return entries
