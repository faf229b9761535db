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
