"""The learning-rate schedule (warm-up, then cosine decay) and the time budget of ``--max-minutes``."""

from __future__ import annotations

import time
from typing import Any


def schedule(keras: Any, lr: float, total_steps: int, warmup_steps: int) -> Any:
    """Cosine decay to 2% of ``lr`` over ``total_steps``, after a linear warm-up from ``lr``/10 (at most a
    fifth of the steps)."""
    warmup_steps = min(warmup_steps, total_steps // 5)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10 if warmup_steps else lr,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.02,
        warmup_target=lr if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


class EpochTimer:
    """Times the training part of each epoch and stops training before a time budget would be exceeded."""

    def __new__(cls, keras: Any, max_minutes: float | None) -> Any:
        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.budget = max_minutes * 60 if max_minutes else None
                self.started = time.perf_counter()
                self.train_seconds: list[float] = []
                self.epoch_seconds: list[float] = []
                self.out_of_time = False
                self._epoch_start = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._epoch_start = time.perf_counter()

            def on_test_begin(self, logs: Any = None) -> None:
                self.train_seconds.append(time.perf_counter() - self._epoch_start)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                now = time.perf_counter()
                self.epoch_seconds.append(now - self._epoch_start)
                if (
                    self.budget is not None
                    and now - self.started + max(self.epoch_seconds[-3:]) > self.budget
                ):
                    self.out_of_time = True
                    self.model.stop_training = True

            def images_per_second(self, n_train: int) -> float:
                steady = self.train_seconds[1:] or self.train_seconds  # the first epoch includes tracing
                return n_train * len(steady) / sum(steady) if steady and sum(steady) > 0 else 0.0

        return Timer()
