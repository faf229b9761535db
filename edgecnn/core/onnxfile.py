"""ONNX files on disk: the contract in ``metadata_props``, atomic writes, and facts for ``edgecnn info``.

Uses the ``onnx`` package only (no TensorFlow, no ONNX Runtime).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

from edgecnn.core.contract import METADATA_KEY, ModelContract, contract_from_metadata
from edgecnn.core.errors import ModelFileError

#: ONNX Runtime 1.2x reads IR version 10 and older; onnx itself may write newer.
MAX_IR_VERSION = 10


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """Load an ONNX file, with a one-line error for anything that is not a readable ONNX model.

    Raises:
        ModelFileError: Missing, empty, not ONNX, or truncated.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}" if not path.exists() else f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(f"{path} is not an ONNX model, or it is truncated ({str(exc)[:80]})") from None
    if not model.graph.node or not model.graph.input or not model.graph.output:
        raise ModelFileError(f"{path} is not an ONNX model (no graph), or it is truncated")
    return model


def read_contract(model: Any, what: str = "this model") -> ModelContract:
    """The edgecnn contract of a loaded ONNX model (ContractError when missing or malformed)."""
    meta = {p.key: p.value for p in model.metadata_props}
    return contract_from_metadata(meta, what=what)


def set_contract(model: Any, contract: ModelContract) -> None:
    """Write the contract into the model's metadata_props (replacing an earlier one)."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, contract.to_json())]:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value


def name_batch_dimension(model: Any, name: str = "batch") -> None:
    """Give the dynamic first axis of every graph input and output a readable name."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = name


def opset_of(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def parameter_count(model: Any) -> int:
    """Number of weight values stored in the graph's initializers."""
    total = 0
    for init in model.graph.initializer:
        count = 1
        for d in init.dims:
            count *= int(d)
        total += count
    return total


def op_counts(model: Any) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def is_quantized(model: Any) -> bool:
    ops = op_counts(model)
    return bool(
        ops.get("QuantizeLinear")
        or ops.get("DequantizeLinear")
        or ops.get("QLinearConv")
        or ops.get("ConvInteger")
    )


def save_onnx(model: Any, path: Path) -> None:
    """Save a model with an IR version ONNX Runtime can read."""
    import onnx

    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    onnx.save(model, str(path))
