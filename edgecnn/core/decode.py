"""Decoding many image files in worker threads, in order, with bounded memory; batches for a model."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.dataset import Sample
from edgecnn.core.errors import EdgecnnError, ImageError
from edgecnn.core.imaging import failure_reason, load_image

T = TypeVar("T")


@dataclass(frozen=True)
class Decoded(Generic[T]):
    """One item after decoding: the model input, or the reason it could not be made."""

    item: T
    image: np.ndarray | None
    error: str | None


def skip_reason(exc: BaseException) -> str:
    """Why one file is skipped (``imaging.failure_reason``, the one wording)."""
    return failure_reason(exc)


def decode_one(
    item: T,
    spec: InputSpec,
    path_of: Callable[[T], str | os.PathLike[str] | bytes] = lambda item: item,  # type: ignore[assignment,return-value]
) -> Decoded[T]:
    """The one rule for how a file that cannot be used becomes a skipped item: its model input, or its reason.

    ``load_image`` turns every decoder error into an ``ImageError`` (``imaging.failure_reason``), and so does
    ``path_of`` when it reads the file itself; anything else is a bug and keeps its traceback.
    """
    try:
        return Decoded(item, load_image(path_of(item), spec), None)
    except ImageError as exc:
        return Decoded(item, None, str(exc) or "unreadable")


def default_workers() -> int:
    """Decoding threads: one per CPU core (decoders release the GIL), at least one, at most 16."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    return max(1, min(16, count))


def decode_parallel(
    items: Iterable[T],
    spec: InputSpec,
    workers: int | None = None,
    window: int | None = None,
    path_of: Callable[[T], str | os.PathLike[str] | bytes] = lambda item: item,  # type: ignore[assignment,return-value]
) -> Iterator[Decoded[T]]:
    """Decode images in worker threads, yielding results in input order with a bounded number in flight.

    Args:
        items: Items to decode (paths, or anything ``path_of`` maps to a path); consumed lazily.
        spec: The model's input spec.
        workers: Decoding threads (default: CPU count).
        window: Most images decoded ahead of the consumer (default: 4 per worker, at least 32): memory stays
            bounded however many items there are.
        path_of: Maps an item to the file to decode (a path, or its bytes); it raises only ``ImageError``.
    """
    workers = workers or default_workers()
    if workers < 1:
        raise EdgecnnError(f"--workers must be at least 1, got {workers}")
    window = window or max(32, 4 * workers)

    def work(item: T) -> Decoded[T]:
        return decode_one(item, spec, path_of)

    pending: deque[Future[Decoded[T]]] = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgecnn-decode") as pool:
        try:
            for item in iterator:
                pending.append(pool.submit(work, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def decode_batches(
    items: Iterable[T],
    spec: InputSpec,
    batch_size: int,
    workers: int | None = None,
    path_of: Callable[[T], str | os.PathLike[str]] = lambda item: item,  # type: ignore[assignment,return-value]
) -> Iterator[list[Decoded[T]]]:
    """``decode_parallel`` in groups of ``batch_size`` items (decoded or not), in input order; the last may be
    shorter. The one batching step between decoding and a model, for every caller."""
    if batch_size < 1:
        raise EdgecnnError(f"--batch-size must be at least 1, got {batch_size}")
    group: list[Decoded[T]] = []
    for result in decode_parallel(items, spec, workers=workers, path_of=path_of):
        group.append(result)
        if len(group) == batch_size:
            yield group
            group = []
    if group:
        yield group


def iter_batches(
    samples: Sequence[Sample], contract: ModelContract, batch_size: int, workers: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[Path], list[tuple[Path, str]]]]:
    """Decoded (float32 batch, labels, paths, skipped) tuples over labelled samples, in order."""
    for group in decode_batches(samples, contract.input, batch_size, workers, path_of=lambda s: s[0]):
        ok = [d for d in group if d.image is not None]
        skipped = [(d.item[0], d.error or "unreadable") for d in group if d.image is None]
        batch = (
            np.stack([d.image for d in ok]).astype(np.float32)  # type: ignore[misc]
            if ok
            else np.zeros((0, *contract.input.shape), np.float32)
        )
        yield batch, np.array([d.item[1] for d in ok], dtype=np.int64), [d.item[0] for d in ok], skipped
