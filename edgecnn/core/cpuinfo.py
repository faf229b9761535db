"""The CPU as Linux describes it in /proc/cpuinfo: read by the machine report and by training's ``--precision``."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_fields(path: Path = CPUINFO) -> dict[str, str]:
    """The first value of each ``key : value`` field (the first CPU's), or {} where the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_flags(path: Path = CPUINFO) -> set[str]:
    """The instruction-set flags (x86 ``flags``, Arm ``Features``); empty where they cannot be read."""
    fields = cpu_fields(path)
    return set((fields.get("flags") or fields.get("Features") or "").split())


#: x86 instructions with which ONNX Runtime multiplies int8 without 16-bit intermediate sums.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_saturates(flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU can saturate with full 8-bit weights.

    Without VNNI, x86 CPUs with AVX2 (AVX-512 too) multiply int8 with VPMADDUBSW, which adds two u8 x s8
    products in a signed 16-bit lane: 2 x 255 x 127 does not fit, and the sum clips. Seven-bit weights
    (``reduce_range``) keep it within range. Arm's kernels widen first and do not clip. False where the
    flags cannot be read.

    Args:
        flags: The CPU's flags (default: this machine's, from /proc/cpuinfo).
    """
    flags = cpu_flags() if flags is None else flags
    return "avx2" in flags and not (VNNI_FLAGS & flags)
