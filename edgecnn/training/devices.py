"""Training on several devices of one machine with ``tf.distribute.MirroredStrategy``.

Each replica holds a copy of the model and takes ``--batch-size`` images a step, so the global batch is
``--batch-size`` x replicas; the learning rate is scaled by the number of replicas (the linear scaling rule:
the same number of epochs sees the same number of images in fewer, larger steps). Gradients are summed across
replicas every step, so the weights stay identical on every device and the saved model is the same kind of
file as a one-device run. Several GPUs are used when visible; without GPUs, a machine's CPU can be split into
logical devices (how the tests run it).

Multi-host training (MultiWorkerMirroredStrategy) is not offered: under Keras 3 it fails (keras issue 20585).
Keras releases before 3.10 produced NaN losses under MirroredStrategy; the ``train`` extra pins keras>=3.10.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import ConfigError


@dataclass
class Devices:
    """The devices a run trains on, and the strategy that spreads it over them (None: one device)."""

    names: list[str]
    strategy: Any = None

    @property
    def replicas(self) -> int:
        return len(self.names) if self.strategy is not None else 1

    @property
    def on_gpu(self) -> bool:
        return any("GPU:" in name for name in self.names)

    def scope(self) -> Any:
        """The context in which the model and its optimizer must be built."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return f"one device ({self.names[0] if self.names else 'default'})"
        return f"{self.replicas} devices ({', '.join(self.names)}) with MirroredStrategy"


def parse_devices(value: str | int) -> str | int:
    """``auto``, ``all`` or a positive count, as given to ``--devices``.

    Raises:
        ConfigError: Anything else.
    """
    text = str(value).strip().lower()
    if text in ("auto", "all"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"--devices must be auto, all or a positive number, got {value!r}")


def select_devices(tf: Any, wanted: str | int) -> Devices:
    """The devices for ``--devices``: ``auto`` (every GPU when there are several, else one device), ``all``
    (every GPU, or every logical CPU device when there is no GPU) or the first N of those.

    Raises:
        ConfigError: More devices asked for than are visible.
    """
    wanted = parse_devices(wanted)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    pool = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    if wanted == "auto":
        chosen = gpus if len(gpus) > 1 else pool[:1]
    elif wanted == "all":
        chosen = pool
    else:
        assert isinstance(wanted, int)
        if wanted > len(pool):
            kind = "GPU" if gpus else "CPU"
            raise ConfigError(
                f"--devices {wanted}: only {len(pool)} {kind} device(s) visible ({', '.join(pool)})"
            )
        chosen = pool[:wanted]
    if len(chosen) <= 1:
        return Devices(chosen)
    # NCCL reduces across GPUs; CPU devices (and mixed sets) reduce through one device.
    reduce = None if gpus else tf.distribute.ReductionToOneDevice()
    return Devices(chosen, tf.distribute.MirroredStrategy(devices=chosen, cross_device_ops=reduce))
