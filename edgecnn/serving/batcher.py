"""Dynamic batching: the requests that reach a model within ``max_delay`` run together, up to ``max_batch``
images, on the model's one inference thread.

A request first takes a slot (``admit``): with ``queue_size`` requests already held (decoding or waiting for
the model) it is refused at once with ``Overloaded``, so memory and latency stay bounded under any load. It
then hands its images over (``submit``) and waits on a future. ``close`` refuses new requests, runs every
request already handed over, and ends the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgecnn.runtime.predictor import Predictor
from edgecnn.serving.errors import Overloaded

logger = logging.getLogger("edgecnn")

#: Called after each model run with the batch size and the seconds it took.
OnBatch = Callable[[int, float], None]
#: Called with the number of requests held whenever it changes.
OnDepth = Callable[[int], None]


@dataclass
class _Job:
    images: np.ndarray  # float32 NHWC
    future: Future[np.ndarray]


class Slot:
    """A request's place in a model's queue; released when the request ends, whatever happened."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    """The one admission rule of a model's requests: at most ``queue_size`` held at once (decoding or waiting
    for the model), none once closing; the count goes to ``on_depth`` whenever it changes. Used by the
    ``Batcher`` (which shares ``lock`` with its loop) and by a Ray Serve replica's runner.
    """

    def __init__(
        self,
        name: str,
        queue_size: int,
        on_depth: OnDepth | None = None,
        lock: threading.Condition | None = None,
        stopping: str = "the server is stopping; retry on another replica",
    ) -> None:
        self.name = name
        self.queue_size = queue_size
        self.lock = lock if lock is not None else threading.Condition()
        self.held = 0
        self.closing = False
        self._on_depth = on_depth or (lambda n: None)
        self._stopping = stopping

    def admit(self) -> Slot:
        """A slot for one request, or ``Overloaded`` at once when the queue is full or closing."""
        with self.lock:
            if self.closing:
                raise Overloaded(self._stopping)
            if self.held >= self.queue_size:
                raise Overloaded(
                    f"model {self.name!r} is at capacity ({self.queue_size} requests queued); retry shortly"
                )
            self.held += 1
            held = self.held
        self._on_depth(held)
        return Slot(self._release)

    def _release(self) -> None:
        with self.lock:
            self.held -= 1
            held = self.held
        self._on_depth(held)

    def close(self) -> None:
        """Refuse every request from now on."""
        with self.lock:
            self.closing = True
            self.lock.notify_all()


class Runner(Protocol):
    """What the routes run a model through: this module's ``Batcher`` in one process, a Ray Serve replica's
    batch queue under ``serve --ray`` (serving.ray_serve)."""

    max_batch: int

    def admit(self) -> AbstractContextManager[Slot]: ...

    async def run(self, slot: Slot, images: np.ndarray) -> np.ndarray: ...

    def close(self, timeout: float | None = None) -> None: ...


class Batcher:
    """One model's bounded queue and inference thread.

    Args:
        predictor: The model (``predict_batch`` on float32 NHWC raw pixels).
        max_batch: The most images one model run takes.
        max_delay: Seconds the first request of a batch waits for more.
        queue_size: The most requests held at once; beyond it ``admit`` raises ``Overloaded``.
    """

    def __init__(
        self,
        name: str,
        predictor: Predictor,
        max_batch: int,
        max_delay: float,
        queue_size: int,
        on_batch: OnBatch | None = None,
        on_depth: OnDepth | None = None,
    ) -> None:
        self.name = name
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.queue_size = queue_size
        self._on_batch = on_batch or (lambda n, s: None)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._lock = threading.Condition()
        self._admission = Admission(name, queue_size, on_depth, self._lock)
        self._thread = threading.Thread(target=self._loop, name=f"edgecnn-infer-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests held now (decoding or waiting for the model)."""
        return self._admission.held

    def admit(self) -> Slot:
        """A slot for one request, or ``Overloaded`` at once when the queue is full or the server stopping."""
        return self._admission.admit()

    def submit(self, slot: Slot, images: np.ndarray) -> Future[np.ndarray]:
        """Queue an admitted request's images (at most ``max_batch``); the future gets their probabilities."""
        if not 1 <= len(images) <= self.max_batch:
            raise ValueError(f"a request holds 1 to {self.max_batch} images, got {len(images)}")
        future: Future[np.ndarray] = Future()
        with self._lock:
            # Admitted before close: its slot is counted, and the loop runs every job before it ends.
            self._jobs.append(_Job(images, future))
            self._lock.notify()
        return future

    async def run(self, slot: Slot, images: np.ndarray) -> np.ndarray:
        """``submit``, awaited: the probabilities of an admitted request's images."""
        return await asyncio.wrap_future(self.submit(slot, images))

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, run those already handed over, stop the thread."""
        self._admission.close()  # wakes the loop: it shares the lock
        self._thread.join(timeout)

    def _take(self) -> list[_Job] | None:
        """The next batch: wait for a first job, then up to ``max_delay`` for more, up to ``max_batch`` images.
        None when closing and nothing is left to run."""
        with self._lock:
            while not self._jobs:
                if self._admission.closing and self._admission.held == 0:
                    return None
                # Closing with requests still decoding: they will submit soon.
                self._lock.wait(0.05 if self._admission.closing else None)
            deadline = time.monotonic() + self.max_delay
            while True:
                images = sum(len(job.images) for job in self._jobs)
                left = deadline - time.monotonic()
                if images >= self.max_batch or left <= 0 or self._admission.closing:
                    break
                self._lock.wait(left)
            batch: list[_Job] = []
            count = 0
            while self._jobs and count + len(self._jobs[0].images) <= self.max_batch:
                job = self._jobs.popleft()
                batch.append(job)
                count += len(job.images)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            images = batch[0].images if len(batch) == 1 else np.concatenate([job.images for job in batch])
            probs = self.predictor.predict_batch(images)
        except Exception as exc:  # the model's failure goes to each waiting request, the thread goes on
            logger.error(f"model {self.name!r} failed on a batch of {len(batch)} requests: {exc}")
            for job in batch:
                _settle(job.future, exc)
            return
        self._on_batch(len(images), time.perf_counter() - started)
        at = 0
        for job in batch:
            n = len(job.images)
            _settle(job.future, probs[at : at + n])
            at += n


def _settle(future: Future[np.ndarray], outcome: np.ndarray | BaseException) -> None:
    """Give a request its result, unless it was cancelled meanwhile (its client went away, or the server's
    grace period ended): the thread goes on with the others."""
    with contextlib.suppress(InvalidStateError):
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
