"""``--precision``: train the networks from scratch in mixed bfloat16 where the CPU computes it natively.

Under Keras' ``mixed_bfloat16`` policy the layers compute in bfloat16 while the weights, the optimizer and the
loss stay in float32. On a CPU with AVX-512 BF16 or AMX instructions the default CNN trained 1.45x as many images
per second as in float32 (docs/BENCHMARKS.md, ablation); elsewhere bfloat16 is emulated (not measured here),
so ``auto`` uses it only there. The saved model is always rebuilt in float32 with the trained weights: the
final evaluation, export and inference never see bfloat16 (the history's validation loss, which picks the
best epoch, does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecnn.core.cpuinfo import CPUINFO, cpu_flags
from edgecnn.core.errors import ConfigError

CHOICES = ("auto", "fp32", "bf16")
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}
#: /proc/cpuinfo flags of native bfloat16 arithmetic (x86: AVX-512 BF16, AMX).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: The ``--arch`` choices that can train in bfloat16 (their saved model is rebuilt in float32).
SUPPORTED = ("cnn", "resnet")


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU reports native bfloat16 instructions (False where /proc/cpuinfo cannot be read)."""
    return bool(BF16_FLAGS & cpu_flags(cpuinfo))


def check(choice: str, arch: str) -> None:
    """Refuse an unknown ``--precision``, or bf16 for an architecture that cannot use it."""
    if choice not in CHOICES:
        raise ConfigError(f"--precision must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "bf16" and arch not in SUPPORTED:
        raise ConfigError(
            f"--precision bf16 applies to --arch {' and '.join(SUPPORTED)} only, got --arch {arch}"
        )


def resolve(choice: str, arch: str, on_gpu: bool, cpuinfo: Path = CPUINFO) -> str:
    """The policy to train with: ``float32`` or ``mixed_bfloat16``.

    ``auto`` picks bfloat16 for a network from scratch trained on a CPU that computes it natively, and float32
    everywhere else (GPUs included: their mixed precision is not measured here).
    """
    if choice == "auto":
        native = arch in SUPPORTED and not on_gpu and cpu_has_bf16(cpuinfo)
        return POLICIES["bf16" if native else "fp32"]
    return POLICIES[choice]


@contextmanager
def dtype_policy(keras: Any, policy: str) -> Iterator[None]:
    """Build layers under ``policy``; the global policy is restored afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(model: Any, build: Callable[[str], Any]) -> Any:
    """The same network built in float32 (``build("float32")``, a ``BuiltModel``) with ``model``'s weights.

    The variables of a mixed-precision model are float32 already, so the copy is exact; BatchNormalization's
    moving statistics are weights and travel with it.
    """
    built = build("float32")
    built.model.set_weights(model.get_weights())
    return built
