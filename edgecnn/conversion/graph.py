"""Reading a foreign classifier's graph (its one image input, its class-score output) and rewiring it to take
raw pixels under edgecnn's tensor names: the graph surgery behind ``edgecnn adopt``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.conversion.preprocess import Preprocessing
from edgecnn.core.contract import INPUT_NAME, OUTPUT_NAME
from edgecnn.core.errors import ConfigError, ModelFileError

Dim = int | str | None


@dataclass
class Foreign:
    """The facts of a foreign graph that adoption needs."""

    input: str
    input_shape: list[Dim]
    layout: str  # NCHW or NHWC
    channels: int
    height: int | None
    width: int | None
    elem_type: int  # ONNX TensorProto element type of the input
    output: str
    classes: int | None
    output_elem_type: int
    ends_in_softmax: bool
    fixed_batch: int | None

    @property
    def numpy_dtype(self) -> Any:
        from onnx import helper

        return helper.tensor_dtype_to_np_dtype(self.elem_type)

    @property
    def dtype_name(self) -> str:
        return str(np.dtype(self.numpy_dtype))


def inspect_graph(proto: Any, what: str, layout: str = "auto", output_name: str | None = None) -> Foreign:
    """The input and output of a foreign classifier, with a clear refusal for what cannot be adopted.

    Raises:
        ModelFileError: Not one image input of rank 4, or no output that is a class vector.
        ConfigError: The layout cannot be read from the shape and was not given, or ``output_name`` is unknown.
    """
    from onnx import TensorProto

    graph = proto.graph
    constants = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise ModelFileError(
            f"{what} has {len(inputs)} inputs ({names}); edgecnn adopts models with one image input"
        )
    value = inputs[0]
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8):
        raise ModelFileError(
            f"input {value.name!r} of {what} is {TensorProto.DataType.Name(elem_type).lower()}; "
            "edgecnn adopts float32, float16 or uint8 image inputs"
        )
    dims = _dims(value)
    if dims is None or len(dims) != 4:
        shown = "unknown" if dims is None else dims
        extra = " (no batch dimension)" if dims is not None and len(dims) == 3 else ""
        raise ModelFileError(
            f"input {value.name!r} of {what} has shape {shown}{extra}: not an image batch (N, C, H, W) or (N, H, W, C)"
        )
    layout = layout if layout != "auto" else _layout(value.name, dims)
    channels = dims[1] if layout == "NCHW" else dims[3]
    height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    if channels not in (1, 3):
        raise ModelFileError(
            f"input {value.name!r} has {channels} channels in {layout} (shape {dims}); edgecnn feeds 1 or 3 channels"
        )
    output = _output(graph, what, output_name)
    out_dims = _dims(output)
    if out_dims is not None and len(out_dims) != 2:
        raise ModelFileError(
            f"output {output.name!r} of {what} has shape {out_dims}: not a class vector (batch, classes)"
        )
    out_type = output.type.tensor_type.elem_type
    if out_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise ModelFileError(f"output {output.name!r} of {what} is not float scores")
    return Foreign(
        input=value.name,
        input_shape=dims,
        layout=layout,
        channels=int(channels),
        height=height if isinstance(height, int) else None,
        width=width if isinstance(width, int) else None,
        elem_type=elem_type,
        output=output.name,
        classes=out_dims[1] if out_dims is not None and isinstance(out_dims[1], int) else None,
        output_elem_type=out_type,
        ends_in_softmax=_produced_by_softmax(graph, output.name),
        fixed_batch=dims[0] if isinstance(dims[0], int) else None,
    )


def rewire(
    proto: Any,
    foreign: Foreign,
    pre: Preprocessing,
    height: int,
    width: int,
    classes: int,
    append_softmax: bool,
) -> int:
    """Make the graph take raw NHWC RGB pixels as ``image`` and give probabilities as ``probabilities``.

    The preprocessing nodes go in front of the original input, a softmax (or an identity) after the chosen
    output; other outputs and what only they used are dropped, and a fixed batch becomes dynamic.

    Returns:
        How many Reshapes that spelled out a fixed batch were freed (``free_reshape_batch``).
    """
    from onnx import TensorProto, helper

    if foreign.elem_type == TensorProto.UINT8 and (pre.scale != "0-255" or pre.mean or pre.std):
        raise ConfigError("the model takes uint8 pixels: use --scale 0-255 without --mean or --std")
    graph = proto.graph
    used = _names(graph)
    internal_in, internal_out = foreign.input, foreign.output
    if INPUT_NAME in used:  # the input, the output or any tensor inside may be called "image"
        fresh = _fresh(INPUT_NAME, used)
        _rename(graph, INPUT_NAME, fresh)
        internal_in = fresh if internal_in == INPUT_NAME else internal_in
        internal_out = fresh if internal_out == INPUT_NAME else internal_out
    keep_name = (
        internal_out == OUTPUT_NAME and not append_softmax and foreign.output_elem_type == TensorProto.FLOAT
    )
    if OUTPUT_NAME in used and not keep_name:
        fresh = _fresh(OUTPUT_NAME, used)
        _rename(graph, OUTPUT_NAME, fresh)
        internal_in = fresh if internal_in == OUTPUT_NAME else internal_in
        internal_out = fresh if internal_out == OUTPUT_NAME else internal_out
    pixels = helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, ["batch", height, width, foreign.channels]
    )
    # Initializers listed as inputs (IR version 3) stay inputs.
    replace_field(graph.input, [pixels, *(v for v in graph.input if v.name != internal_in)])
    front = pre.nodes(INPUT_NAME, internal_in, foreign.channels, foreign.elem_type)
    tail = []
    scores = internal_out
    if foreign.output_elem_type != TensorProto.FLOAT:
        tail.append(helper.make_node("Cast", [scores], ["edgecnn_scores_fp32"], to=TensorProto.FLOAT))
        scores = "edgecnn_scores_fp32"
    if append_softmax:
        tail.append(helper.make_node("Softmax", [scores], [OUTPUT_NAME], axis=-1))
    elif scores != OUTPUT_NAME:
        tail.append(helper.make_node("Identity", [scores], [OUTPUT_NAME]))
    replace_field(graph.node, [*front, *graph.node, *tail])
    replace_field(
        graph.output, [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])]
    )
    freed = 0
    if foreign.fixed_batch is not None:
        del graph.value_info[:]  # their shapes name the old fixed batch; ONNX Runtime infers them again
        freed = free_reshape_batch(graph, foreign.fixed_batch)
    _prune(graph)
    return freed


def free_reshape_batch(graph: Any, batch: int) -> int:
    """Let Reshapes that spell out the old fixed batch take any batch; returns how many were changed.

    torch's exporter writes ``Reshape(x, [1, 512])`` for a flatten when the batch was fixed at 1. Such a
    constant shape starting with the batch becomes ``[-1, 512]`` (or ``[0, -1]``, copying the input's batch,
    when a -1 is already there). Each changed Reshape gets its own copy of the constant, in case the original is
    shared; the adoption check then proves the graph runs on a batch.
    """
    from onnx import numpy_helper

    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    per_image = {INPUT_NAME}  # tensors computed from the images: only their Reshapes carry the batch
    for node in graph.node:
        if any(name in per_image for name in node.input):
            per_image.update(node.output)
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if node.input[0] not in per_image:  # a weight reshaped to [1, -1] broadcasts over any batch
            continue
        shape = numpy_helper.to_array(constants[node.input[1]])
        if shape.ndim != 1 or len(shape) < 2 or shape[0] != batch:
            continue
        freed = shape.copy()
        freed[0] = 0 if -1 in shape[1:] else -1
        if freed[0] == 0 and any(a.name == "allowzero" and a.i for a in node.attribute):
            continue  # 0 would mean an empty axis there, not "copy the input's"
        name = f"{node.input[1]}_edgecnn_any_batch_{changed}"
        graph.initializer.append(numpy_helper.from_array(freed, name))
        node.input[1] = name
        changed += 1
    return changed


def _dims(value: Any) -> list[Dim] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _layout(name: str, dims: list[Dim]) -> str:
    first, last = dims[1] in (1, 3), dims[3] in (1, 3)
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    raise ConfigError(
        f"cannot tell the layout of input {name!r} from its shape {dims}; pass --layout nchw or nhwc"
    )


def _output(graph: Any, what: str, output_name: str | None) -> Any:
    outputs = list(graph.output)
    names = ", ".join(repr(o.name) for o in outputs)
    if output_name is not None:
        for output in outputs:
            if output.name == output_name:
                return output
        raise ConfigError(f"--output-name {output_name!r} is not an output of {what}; it has {names}")
    if len(outputs) != 1:
        raise ConfigError(
            f"{what} has {len(outputs)} outputs ({names}); pass --output-name with the class scores"
        )
    return outputs[0]


def _produced_by_softmax(graph: Any, name: str) -> bool:
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(name)
    while node is not None and node.op_type in ("Identity", "Cast"):
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


def _subgraphs(node: Any) -> list[Any]:
    from onnx import AttributeProto

    found = []
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            found.append(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            found.extend(attr.graphs)
    return found


def _names(graph: Any) -> set[str]:
    names = {v.name for v in [*graph.input, *graph.output, *graph.initializer, *graph.value_info]}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in _subgraphs(node):
            names |= _names(sub)
    return names


def _fresh(base: str, used: set[str]) -> str:
    i = 0
    while f"{base}_{i}" in used:
        i += 1
    used.add(f"{base}_{i}")
    return f"{base}_{i}"


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new
        for sub in _subgraphs(node):
            _rename(sub, old, new)
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        if value.name == old:
            value.name = new


def _prune(graph: Any) -> None:
    """Drop the nodes and initializers that no remaining output needs (the outputs adoption left out)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output if out):
            kept.append(node)
            needed.update(node.input)
            for sub in _subgraphs(node):  # subgraphs may read the outer graph's tensors by name
                needed |= _names(sub)
    replace_field(graph.node, kept[::-1])
    initializers = [init for init in graph.initializer if init.name in needed]
    if len(initializers) != len(graph.initializer):
        replace_field(graph.initializer, initializers)
        # IR version 3 lists initializers as graph inputs too: a dropped one would become a required feed.
        replace_field(graph.input, [v for v in graph.input if v.name == INPUT_NAME or v.name in needed])


def replace_field(field: Any, items: list[Any]) -> None:
    """Set a repeated protobuf field to ``items`` (copied first: clearing the field may release them)."""
    copies = []
    for item in items:
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del field[:]
    field.extend(copies)
