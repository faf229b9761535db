"""``edgecnn info``: what a model file is, what it expects, where it can run on this machine, and which file of
its export (fp32, fp16, int8) to run on each provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.core.contract import METADATA_KEY
from edgecnn.core.errors import ContractError, ModelFileError
from edgecnn.core.onnxfile import is_quantized, load_onnx, op_counts, opset_of, parameter_count, read_contract
from edgecnn.runtime.precision import recommend_files

PRECISION_WORDS = {
    "int8": "int8 (quantised)",
    "fp16": "fp16 (half precision; float32 input and output)",
    "fp32": "float32",
}


def _shape(value: Any) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def describe_model(path: str | Path, probe: bool = True) -> dict[str, Any]:
    """Facts about an ONNX file: contract, graph, size, quantisation, and providers that really start here.

    A model without the edgecnn contract is still described, with ``contract`` None and a note; a model whose
    contract is malformed is refused, since every runtime would refuse it too.

    Raises:
        ModelFileError: Not a readable ONNX file.
        ContractError: The model carries an edgecnn contract that does not match the schema.
    """
    path = Path(path)
    if path.suffix.lower() == ".keras":
        raise ModelFileError(f"{path} is a Keras model; `edgecnn info` reads .onnx files (export it first)")
    model = load_onnx(path)
    info: dict[str, Any] = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "opset": opset_of(model),
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "parameters": parameter_count(model),
        "quantized": is_quantized(model),
        "nodes": len(model.graph.node),
        "op_counts": dict(sorted(op_counts(model).items())),
        "inputs": [{"name": v.name, "shape": _shape(v)} for v in model.graph.input],
        "outputs": [{"name": v.name, "shape": _shape(v)} for v in model.graph.output],
        "contract": None,
        "note": None,
    }
    precision = "int8" if info["quantized"] else "fp32"
    try:
        contract = read_contract(model, what=str(path))
        info["contract"] = contract.to_dict()
        precision = "int8" if info["quantized"] else contract.numeric_precision
    except ContractError as exc:
        if any(p.key == METADATA_KEY for p in model.metadata_props):
            raise
        info["note"] = str(exc)
    info["precision"] = precision
    info["fp32_nodes"] = _fp32_nodes(model, info["contract"])
    info["recommended"] = recommend_files(path, precision)
    if probe:
        from edgecnn.runtime.providers import probe_providers

        info["providers"] = [s.to_dict() for s in probe_providers()]
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for ``edgecnn info``."""
    lines = [
        f"model      {info['path']}  ({info['size_bytes'] / 1e6:.2f} MB, opset {info['opset']}, IR {info['ir_version']})"
    ]
    precision = info.get("precision") or ("int8" if info["quantized"] else "fp32")
    lines.append(
        f"graph      {info['nodes']} nodes, {info['parameters']:,} parameters, {PRECISION_WORDS.get(precision, precision)}"
    )
    for v in info["inputs"]:
        lines.append(f"input      {v['name']} {v['shape']}")
    for v in info["outputs"]:
        lines.append(f"output     {v['name']} {v['shape']}")
    contract = info.get("contract")
    if contract:
        spec = contract["input"]
        labels = contract["labels"]
        shown = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
        lines.append(f"labels     {shown}")
        lines.append(
            f"input      {spec['height']}x{spec['width']}x{spec['channels']} {spec['color_order']}, raw pixels "
            f"{spec['value_range'][0]:g}-{spec['value_range'][1]:g}, resize {spec['resize']} ({_fit(spec)}), "
            f"alpha over {spec['alpha']}, EXIF orientation honoured, preprocessing v{spec['preprocess_version']}"
        )
        lines.append(f"normalise  {contract['normalization']}")
        if contract.get("tta"):
            lines.append(f"tta        {contract['tta']}: the graph averages each image and its mirror")
        lines.append(f"arch       {contract['arch']}; edgecnn {contract['edgecnn_version']}")
        training = contract.get("training") or {}
        if training.get("val_accuracy") is not None:
            lines.append(
                f"training   validation accuracy {training['val_accuracy'] * 100:.2f}% on {training.get('val_images', '?')} images"
            )
        pretrained = training.get("pretrained") or {}
        if pretrained:
            origin = pretrained.get("package") or pretrained.get("weights")
            digest = f", sha256 {pretrained['sha256'][:12]}..." if pretrained.get("sha256") else ""
            licence = f", licence {pretrained['licence']}" if pretrained.get("licence") else ""
            lines.append(f"pretrained {origin}{digest}{licence}")
        q = contract.get("quantization")
        if q and precision == "fp16":
            lines.append(_fp16_line(q))
        elif q:
            acc = ""
            if q.get("int8_accuracy") is not None and q.get("fp32_accuracy") is not None:
                acc = (
                    f"; accuracy fp32 {q['fp32_accuracy'] * 100:.2f}% -> int8 {q['int8_accuracy'] * 100:.2f}%"
                )
            lines.append(
                f"int8       {q.get('format')} {q.get('calibration_method')}, per-channel {q.get('per_channel')}, "
                f"{'7-bit' if q.get('reduce_range') else '8-bit'} weights, {q.get('activations', 'int8')} "
                f"activations, {q.get('calibration_images')} calibration images{acc}"
            )
            lines.extend(_fp32_lines(info.get("fp32_nodes") or [], q))
        source = contract.get("source") or {}
        if source:
            lines.append(
                f"source     {source.get('model_file')} sha256 {str(source.get('model_sha256'))[:12]}..., created {source.get('created')}"
            )
    else:
        lines.append(f"contract   none: {info.get('note')}")
    for p in info.get("providers", []):
        state = "works" if p["works"] else ("listed, cannot start" if p["listed"] else "not available")
        reason = f" ({p['reason']})" if p["reason"] and not p["works"] else ""
        lines.append(f"provider   {p['provider']}: {state}{reason}")
    for i, r in enumerate(info.get("recommended", [])):
        what = "this file" if r["this_file"] else (r["file"] or f"a {r['precision']} file")
        lines.append(f"{'run on' if i == 0 else '':<11}{r['provider']}: {what} ({r['why']})")
    return "\n".join(lines)


def _fp32_nodes(model: Any, contract: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The nodes an int8 model keeps in fp32 (its contract says which), with their op types from the graph."""
    names = ((contract or {}).get("quantization") or {}).get("fp32_nodes") or []
    ops = {node.name: node.op_type for node in model.graph.node}
    return [{"node": name, "op_type": ops.get(name)} for name in names if isinstance(name, str)]


def _fp32_lines(nodes: list[dict[str, Any]], q: dict[str, Any], shown: int = 10) -> list[str]:
    if not nodes:
        return []
    plain = q.get("plain_int8_accuracy")
    why = f"all-int8 accuracy was {plain * 100:.2f}%; " if isinstance(plain, (int, float)) else ""
    lines = [
        f"fp32       {len(nodes)} layer(s) kept in fp32 ({why}chosen by {q.get('fallback') or 'unknown'}):"
    ]
    for n in nodes[:shown]:
        lines.append(f"             {n['node']} ({n['op_type'] or 'not in the graph'})")
    if len(nodes) > shown:
        lines.append(f"             ... and {len(nodes) - shown} more (--json lists them all)")
    return lines


def _fp16_line(q: dict[str, Any]) -> str:
    text = f"fp16       {q.get('conversion', 'float16')} by {q.get('tool')}"
    if q.get("max_abs_diff") is not None:
        text += (
            f"; max |p_fp32 - p_fp16| {q['max_abs_diff']:.1e} (limit {q.get('max_abs_diff_limit')}) on "
            f"{q.get('parity_images')} images ({q.get('gate_provider')})"
        )
    if q.get("fp16_accuracy") is not None and q.get("fp32_accuracy") is not None:
        text += f"; accuracy fp32 {q['fp32_accuracy'] * 100:.2f}% -> fp16 {q['fp16_accuracy'] * 100:.2f}%"
    return text


def _fit(spec: dict[str, Any]) -> str:
    """stretch; crop 0.875 (the share of the scaled side kept); letterbox on 114."""
    if spec["fit"] == "crop":
        return f"crop {spec.get('crop_fraction', 0.875):g}"
    if spec["fit"] == "letterbox":
        return f"letterbox on {spec.get('pad_value', 0)}"
    return str(spec["fit"])
