"""Class names for a model edgecnn did not train, from the files other tools write.

Three forms are read: a text file with one name per line (``labels.txt``); the same with each line starting
with its index (``0 cat``, as Teachable Machine writes it); and ImageNet-style JSON, either a list of names or
an object from index to a name or to ``[wordnet_id, name]`` (Keras' ``imagenet_class_index.json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgecnn.core.contract import MAX_LABEL_LENGTH
from edgecnn.core.errors import ConfigError

_NUMBERED = re.compile(r"^\s*(\d+)[\s:,]+(\S.*)$")
MAX_LABELS_BYTES = 16 * 1024 * 1024


def read_labels(path: str | Path | Sequence[str]) -> tuple[str, ...]:
    """The class names in ``path`` (or the names themselves), in output order, made unique where one repeats.

    ImageNet's own list names two classes "crane" and two "maillot"; a repeated name gets its index
    appended ("crane (517)"), because the contract needs one name per output column.

    Raises:
        ConfigError: The file is missing, empty, or not in one of the forms above (the message says where).
    """
    if not isinstance(path, (str, Path)):
        return _unique([str(name) for name in path])
    path = Path(path)
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ConfigError(
                f"--labels {path} is over {MAX_LABELS_BYTES // 2**20} MiB; is it a labels file?"
            )
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"--labels {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(
            f"--labels {path} is a folder; give a labels file (one name per line, or JSON)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"--labels {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"--labels {path}: cannot read it ({exc.strerror or exc})") from None
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f"--labels {path} is empty")
    names = _from_json(stripped, path) if stripped[0] in "[{" else _from_lines(text, path)
    for i, name in enumerate(names):
        if len(name) > MAX_LABEL_LENGTH:
            raise ConfigError(f"--labels {path}: label {i} is over {MAX_LABEL_LENGTH} characters")
        if re.search(r"[\x00-\x1f]", name):
            raise ConfigError(f"--labels {path}: label {i} contains a control character")
    return _unique(names)


def _from_lines(text: str, path: Path) -> list[str]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ConfigError(f"--labels {path}: line {number} is blank; give one class name per line")
    numbered = [_NUMBERED.match(line) for line in lines]
    if all(numbered) and [int(m.group(1)) for m in numbered if m] == list(range(len(lines))):
        return [m.group(2).strip() for m in numbered if m]  # "0 cat": Teachable Machine's labels.txt
    return [line.strip() for line in lines]


def _from_json(text: str, path: Path) -> list[str]:
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--labels {path} is not valid JSON ({str(exc)[:80]})") from None
    if isinstance(data, dict):
        try:
            keys = sorted(data, key=int)
        except ValueError:
            raise ConfigError(
                f"--labels {path}: a JSON object of labels must map output indices (0, 1, ...) to names"
            ) from None
        if [int(k) for k in keys] != list(range(len(keys))):
            raise ConfigError(f"--labels {path}: the indices must run 0..{len(keys) - 1} without gaps")
        data = [data[k] for k in keys]
    if not isinstance(data, list):
        raise ConfigError(f"--labels {path}: expected a JSON list of names or an object of index -> name")
    names = []
    for i, item in enumerate(data):
        if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item):
            item = item[1]  # [wordnet_id, name]
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"--labels {path}: label {i} is not a name ({json.dumps(item)[:40]})")
        names.append(item.strip())
    return names


def _unique(names: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        out.append(name if name not in seen else f"{name} ({i})")
        seen.add(out[-1])
    if len(set(out)) != len(out):
        raise ConfigError("labels repeat even after numbering the repeats; give unique class names")
    return tuple(out)
