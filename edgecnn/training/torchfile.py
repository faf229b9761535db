"""A safe reader of PyTorch's legacy (pre-zip) weights files, with no PyTorch and no code run from the file.

A legacy ``.pth`` file is four pickles and the raw storages: a magic number, the protocol version, a dict of
system facts, then the state dict itself, in which every tensor is a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and every storage a persistent id
``("storage", torch.FloatStorage, key, location, numel)``; then the list of storage keys, and for each key in
that order an int64 element count followed by the storage's bytes.

``pickle.load`` or ``torch.load`` on such a file would call whatever globals the file names (``os.system``
among them). This reader's unpickler resolves exactly three kinds of global, ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types, each to a harmless stand-in of its own,
and refuses every other global before anything is called. Tensors are rebuilt with NumPy from their storage,
offset, shape and strides: the strides matter, since ported TensorFlow weights are stored transposed.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgecnn.core.errors import WeightsFileError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: torch storage type -> NumPy dtype of its elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no NumPy dtype: refused by name
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
MAX_TENSORS = 100_000


@dataclass(frozen=True)
class StateDict:
    """The tensors of one weights file, by name, in file order, and the file's identity."""

    tensors: dict[str, np.ndarray]
    path: Path
    sha256: str


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns here: where a tensor lies, resolved once the storages are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> None:
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor whose storage is not a storage")
        for name, value in (("size", size), ("stride", stride)):
            if not isinstance(value, tuple) or not all(isinstance(v, int) and v >= 0 for v in value):
                raise pickle.UnpicklingError(f"a tensor {name} that is not a tuple of whole numbers")
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise pickle.UnpicklingError("a tensor whose size, stride and offset do not fit together")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a tensor with extra state")


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _TensorRef,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals of a legacy state dict, to stand-ins; refuses every other one."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage] | None) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES and self.storages is not None:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"it names the global {module}.{name}, which a weights file has no use for"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None:
            raise pickle.UnpicklingError("a storage outside the state dict")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent id {str(pid)[:60]}")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError("a malformed storage id")
        dtype = STORAGE_DTYPES[kind.name]
        if dtype is None:
            raise pickle.UnpicklingError(f"{kind.name} tensors, which NumPy cannot hold")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, dtype, numel)
        elif known.dtype is not dtype:
            raise pickle.UnpicklingError(f"storage {key} named with two element types")
        return known


def read_state_dict(path: Path | str) -> StateDict:
    """Read a PyTorch legacy state dict as NumPy arrays, running nothing the file names.

    Args:
        path: A ``.pth`` file in PyTorch's legacy (pre-zip) format.

    Returns:
        The tensors by name (C-contiguous copies, strides applied) with the file's path and SHA-256.

    Raises:
        WeightsFileError: The file is missing, truncated, tampered with, in another format, or names a
            global outside the allowed list (nothing is called in that case).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"cannot read the weights file {path}: {exc.strerror or exc}") from None
    try:
        tensors = _parse(raw)
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        struct.error,
    ) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsFileError(f"{path} is not a usable PyTorch legacy weights file: {reason}") from None
    return StateDict(tensors=tensors, path=path, sha256=hashlib.sha256(raw).hexdigest())


def _parse(raw: bytes) -> dict[str, np.ndarray]:
    if raw[:2] == b"PK":
        raise ValueError("it is a zip archive (PyTorch's newer format), not the legacy format")
    f = io.BytesIO(raw)
    if _Unpickler(f, None).load() != MAGIC_NUMBER:
        raise ValueError("no PyTorch legacy magic number at its start")
    if _Unpickler(f, None).load() != PROTOCOL_VERSION:
        raise ValueError("an unknown PyTorch legacy protocol version")
    info = _Unpickler(f, None).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ValueError("it was not written on a little-endian machine")
    storages: dict[str, _Storage] = {}
    state = _Unpickler(f, storages).load()
    if not isinstance(state, dict) or not state:
        raise ValueError("its contents are not a state dict of tensors")
    if len(state) > MAX_TENSORS:
        raise ValueError(f"{len(state)} tensors, more than a weights file holds")
    keys = _Unpickler(f, None).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise ValueError("its list of storages does not match the tensors")
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", _take(f, 8))
        if numel != storage.numel:
            raise ValueError(
                f"storage {key} holds {numel} elements where the state dict says {storage.numel}"
            )
        itemsize = np.dtype(storage.dtype).itemsize
        storage.data = np.frombuffer(_take(f, numel * itemsize), dtype=storage.dtype)
    if f.read(1):
        raise ValueError("bytes after the last storage")
    tensors: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise ValueError(f"entry {str(name)[:60]} is not a named tensor")
        tensors[name] = _materialise(name, ref)
    return tensors


def _take(f: io.BytesIO, count: int) -> bytes:
    if count < 0:
        raise ValueError("a negative storage size")
    data = f.read(count)
    if len(data) != count:
        raise ValueError(f"it is truncated: {count} bytes expected, {len(data)} found")
    return data


def _materialise(name: str, ref: _TensorRef) -> np.ndarray:
    data = ref.storage.data
    assert data is not None  # every storage was read above
    if any(s == 0 for s in ref.size):
        return np.zeros(ref.size, data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= data.size:
        raise ValueError(f"tensor {name} reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :], shape=ref.size, strides=[s * data.itemsize for s in ref.stride], writeable=False
    )
    return np.ascontiguousarray(view)


def write_state_dict(path: Path | str, tensors: dict[str, np.ndarray], transpose: bool = False) -> None:
    """Write float32 tensors as a PyTorch legacy state dict, without PyTorch (tests write their own files).

    Args:
        path: The file to write.
        tensors: Name -> array.
        transpose: Store each tensor's data in reversed axis order with matching strides, as ported
            TensorFlow weights are stored, so that a reader that ignores strides gets the wrong numbers.
    """
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    storages: list[np.ndarray] = []
    body = [b"\x80\x02", _GLOBAL_ORDERED_DICT, b")R("]
    for name, value in tensors.items():
        array = np.asarray(value, np.float32)
        if transpose and array.ndim > 1:
            flat = np.ascontiguousarray(array.transpose()).ravel()
            stride = tuple(int(np.prod(array.shape[:i])) for i in range(array.ndim))
        else:
            flat = array.ravel()
            stride = tuple(int(np.prod(array.shape[i + 1 :])) for i in range(array.ndim))
        key = str(len(storages))
        storages.append(flat)
        body += [_value(name), b"ctorch._utils\n_rebuild_tensor_v2\n((", _value("storage")]
        body += [b"ctorch\nFloatStorage\n", _value(key), _value("cpu"), _value(flat.size), b"NtQ"]
        body += [
            _value(0),
            _value(tuple(array.shape)),
            _value(stride),
            b"\x89",
            _GLOBAL_ORDERED_DICT,
            b")RtR",
        ]
    out.write(b"".join(body) + b"u.")
    pickle.dump([str(i) for i in range(len(storages))], out, protocol=2)
    for flat in storages:
        out.write(struct.pack("<q", flat.size) + flat.astype("<f4").tobytes())
    Path(path).write_bytes(out.getvalue())


_GLOBAL_ORDERED_DICT = b"ccollections\nOrderedDict\n"


def _value(value: Any) -> bytes:
    """The pickle opcodes of a plain value (str, int, tuple of ints), without the protocol header or STOP."""
    return pickletools.optimize(pickle.dumps(value, protocol=2))[2:-1]
