"""The optimizer, its learning-rate schedule (warm-up, then cosine decay), early stopping, and the time budget of
``--max-minutes``.

Without a time budget the cosine spans the epochs (Keras' ``CosineDecay`` on the step count). With one, a
run rarely gets through all its epochs, and a cosine over the epochs would stop with the learning rate still
high. ``BudgetCosine`` then sets the rate before every step from whichever runs out first, the steps or the
time, so the rate reaches its floor as the last epoch that fits the budget runs.
"""

from __future__ import annotations

import math
import time
from typing import Any

#: The cosine ends at this fraction of the peak learning rate.
FLOOR = 0.02
#: Early stopping watches the validation loss from this many thirds of a phase's epochs on.
PATIENCE_FROM = 2
#: AdamW's decoupled weight decay: each step shrinks a weight by learning rate x this.
WEIGHT_DECAY = 1e-4
#: Variables left out of the weight decay: BatchNormalization's scale and shift, and biases.
NO_DECAY = ("gamma", "beta", "bias")


def clock() -> float:
    """Seconds on a monotonic clock: the time budget's only source of time (a test replaces it)."""
    return time.perf_counter()


def make_optimizer(keras: Any, learning_rate: Any, weight_decay: float, ema: float) -> Any:
    """AdamW with decoupled weight decay on the kernels only (not on ``NO_DECAY``: decaying BatchNormalization's
    scale or a bias only pulls the layer's output towards zero), and an EMA of the weights when ``ema`` is set.

    Args:
        keras: The keras module.
        learning_rate: A rate or a schedule.
        weight_decay: The decay per step, as a fraction of the learning rate (0: none).
        ema: The momentum of the weights' moving average (0: no average).
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        use_ema=bool(ema),
        ema_momentum=ema or 0.99,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer


def schedule(keras: Any, lr: float, total_steps: int, warmup_steps: int) -> Any:
    """Cosine decay to ``FLOOR`` x ``lr`` over ``total_steps``, after a linear warm-up from ``lr``/10 (at most a
    fifth of the steps)."""
    warmup_steps = min(warmup_steps, total_steps // 5)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10 if warmup_steps else lr,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=FLOOR,
        warmup_target=lr if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def early_stopping(keras: Any, first_epoch: int, epochs: int, patience: int) -> Any:
    """Stop after ``patience`` epochs without a lower validation loss, counted from two thirds of the phase.

    Until then the cosine holds the learning rate above about a quarter of its peak, and the validation loss
    jumps from epoch to epoch: a stop there gives up the low-rate epochs that gain the most (the runs are in
    the ablation notes of docs/BENCHMARKS.md).

    Args:
        first_epoch: The phase's first epoch (Keras counts the epochs of all phases).
        epochs: The phase's epochs.
    """
    return keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=patience,
        restore_best_weights=True,
        start_from_epoch=first_epoch + PATIENCE_FROM * epochs // 3,
    )


class BudgetCosine:
    """Warm-up, then a cosine whose progress is the larger of the steps done and the time used.

    Args:
        lr: Peak learning rate.
        total_steps: Steps of all the phase's epochs (the ceiling when time is left over).
        warmup_steps: Linear warm-up from ``lr``/10 (at most a fifth of ``total_steps``).
        seconds: The phase's time budget.
    """

    def __init__(self, lr: float, total_steps: int, warmup_steps: int, seconds: float) -> None:
        self.lr = lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(warmup_steps, self.total_steps // 5)
        self.seconds = seconds
        self.progress = 0.0

    def rate(self, step: int, elapsed: float, epoch_seconds: float = 0.0) -> float:
        """The learning rate of ``step``, ``elapsed`` seconds into the phase.

        ``epoch_seconds`` (the last epoch's duration) moves the end of the cosine one epoch earlier: the
        epoch timer stops training when another epoch would not fit, so the last epoch starts about then.
        Progress never goes back (a faster epoch moving the end later does not raise the rate again).
        """
        if step < self.warmup_steps:
            return self.lr / 10 + (self.lr - self.lr / 10) * step / self.warmup_steps
        by_steps = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        by_time = elapsed / max(self.seconds - epoch_seconds, 1e-9)
        self.progress = progress = min(1.0, max(by_steps, by_time, self.progress))
        return self.lr * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))

    def callback(self, keras: Any) -> Any:
        """A Keras callback that sets the optimizer's learning rate before every training step."""
        plan = self

        class SetRate(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.step = 0
                self.started = clock()
                self.epoch_seconds = 0.0
                self._epoch_start = self.started

            def on_train_begin(self, logs: Any = None) -> None:
                self.started = clock()

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._epoch_start = clock()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.epoch_seconds = clock() - self._epoch_start
                if logs is not None:
                    logs["learning_rate"] = self.last

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                elapsed = clock() - self.started
                self.last = plan.rate(self.step, elapsed, self.epoch_seconds)
                self.model.optimizer.learning_rate = self.last
                self.step += 1

        return SetRate()


class EpochTimer:
    """Times the training part of each epoch and stops training before a time budget would be exceeded."""

    def __new__(cls, keras: Any, max_minutes: float | None) -> Any:
        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.budget = max_minutes * 60 if max_minutes else None
                self.started = clock()
                self.train_seconds: list[float] = []
                self.epoch_seconds: list[float] = []
                self.out_of_time = False
                self._epoch_start = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._epoch_start = clock()

            def on_test_begin(self, logs: Any = None) -> None:
                self.train_seconds.append(clock() - self._epoch_start)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                now = clock()
                self.epoch_seconds.append(now - self._epoch_start)
                if (
                    self.budget is not None
                    and now - self.started + max(self.epoch_seconds[-3:]) > self.budget
                ):
                    self.out_of_time = True
                    self.model.stop_training = True

            def remaining(self) -> float | None:
                """Seconds left of the budget (None without one)."""
                if self.budget is None:
                    return None
                return max(0.0, self.budget - (clock() - self.started))

            def images_per_second(self, n_train: int) -> float:
                steady = self.train_seconds[1:] or self.train_seconds  # the first epoch includes tracing
                return n_train * len(steady) / sum(steady) if steady and sum(steady) > 0 else 0.0

        return Timer()
