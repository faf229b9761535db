"""Calibration images for static int8: decoded once, then fed to ONNX Runtime's calibrators.

Decoding goes through the model contract's preprocessing (``core.decode``), the one inference uses, so the
calibrated ranges are those of real inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecnn.core.contract import ModelContract
from edgecnn.core.dataset import Sample
from edgecnn.core.decode import iter_batches


def decode_batches(
    samples: Sequence[Sample], contract: ModelContract, batch_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[Path, str]]]:
    """Decoded float32 batches and their labels; unreadable files are returned, not raised."""
    batches, labels, skipped = [], [], []
    for batch, y, _, bad in iter_batches(samples, contract, batch_size, workers=None):
        skipped.extend(bad)
        if len(batch):
            batches.append(batch)
            labels.append(y)
    return batches, labels, skipped


def even_batches(batches: Sequence[np.ndarray], most: int = 8) -> list[np.ndarray]:
    """The same images in batches of one size: the largest divisor of their count up to ``most``.

    ONNX Runtime's histogram calibrators (entropy, percentile) stack every batch's tensors into one array, which
    fails on a short last batch ("inhomogeneous shape"); minmax does not care.
    """
    if not batches:
        return []
    images = np.concatenate(list(batches))
    size = max(d for d in range(1, min(most, len(images)) + 1) if len(images) % d == 0)
    return [images[i : i + size] for i in range(0, len(images), size)]


class CalibrationReader:
    """A CalibrationDataReader over already-decoded calibration images, in batches of one size."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        ragged = len({len(b) for b in batches}) > 1
        self.batches = even_batches(batches) if ragged else list(batches)
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.batches):
            return None
        batch = self.batches[self.index]
        self.index += 1
        return {self.input_name: batch}

    def rewind(self) -> None:
        self.index = 0
