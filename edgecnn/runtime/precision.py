"""Which model file suits which execution provider: fp32, fp16 and int8 files of one export, side by side.

``edgecnn export`` writes ``X.onnx`` (fp32), ``X.fp16.onnx`` and ``X.int8.onnx`` (static QDQ). Each runs on
every provider, but not equally well, for reasons that are properties of ONNX Runtime's providers:

- CPU: int8 QDQ runs on integer kernels (VNNI and the like); fp16 nodes mostly run in float32 with casts
  around them, so an fp16 file is no faster than the fp32 one there.
- CUDA: fp32 and fp16 run on cuDNN and cuBLAS (fp16 on tensor cores); most Q/DQ pairs of an int8 file have no
  int8 kernel, so they dequantise and run in float: extra work, usually slower than fp32 or fp16.
- TensorRT: builds fp16 layers from an fp16 file (or from an fp32 file with its fp16 flag), and int8 layers
  only from signed Q/DQ nodes with zero point 0, which edgecnn's CPU-calibrated int8 files (uint8, asymmetric
  activations) are not: the fp16 file is the one for TensorRT.

Those are the reasons the advice states; which is fastest on a given GPU is measured by
``edgecnn benchmark --provider cpu,cuda,tensorrt`` (and ``benchmarks/gpu.py``), not assumed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.core.contract import ModelContract

#: The provider each precision should preferably run on, best first, with the reason.
PREFERRED: dict[str, dict[str, tuple[str, str]]] = {
    "cpu": {
        "int8": (
            "int8",
            "integer kernels: faster than fp32 where the CPU has VNNI or dot-product instructions",
        ),
        "fp32": ("fp32", "float kernels"),
        "fp16": ("fp32", "the CPU provider runs most fp16 nodes in float32 through casts: use the fp32 file"),
    },
    "cuda": {
        "fp16": ("fp16", "tensor-core kernels at half the memory traffic"),
        "fp32": ("fp32", "cuDNN float kernels (TF32 on Ampere and newer)"),
        "int8": (
            "fp16",
            "most Q/DQ nodes have no int8 kernel on CUDA and run dequantised: use the fp16 or fp32 file",
        ),
    },
    "tensorrt": {
        "int8": (
            "fp16",
            "TensorRT builds int8 layers only from signed Q/DQ with zero point 0; edgecnn's int8 files are "
            "calibrated for the CPU (uint8, asymmetric): use the fp16 file",
        ),
        "fp16": ("fp16", "TensorRT builds fp16 layers"),
        "fp32": ("fp32", "an fp32 engine (the fp16 file, or TensorrtOptions(fp16=True), gives fp16 layers)"),
    },
}


def precision_siblings(path: Path) -> dict[str, Path]:
    """The files beside ``path`` named as export writes them (X.onnx, X.fp16.onnx, X.int8.onnx) that exist."""
    name = path.name
    for suffix in (".int8.onnx", ".fp16.onnx", ".onnx"):
        if name.lower().endswith(suffix):
            base = name[: -len(suffix)]
            break
    else:
        return {}
    candidates = {"fp32": f"{base}.onnx", "fp16": f"{base}.fp16.onnx", "int8": f"{base}.int8.onnx"}
    return {p: path.with_name(n) for p, n in candidates.items() if path.with_name(n).is_file()}


def recommend_files(path: Path, precision: str) -> list[dict[str, Any]]:
    """Per provider, the file to run: this one or a sibling (existing, or to export), and why.

    Returns:
        One dict per provider (cpu, cuda, tensorrt): ``provider``, ``file`` (a path, or None when the better
        precision has not been exported), ``precision``, ``this_file`` (bool) and ``why``.
    """
    siblings = {**precision_siblings(path), precision: path}
    rows = []
    for provider, table in PREFERRED.items():
        wanted, why = table.get(precision, (precision, ""))
        choice = wanted if wanted in siblings else None
        if choice is None and provider == "cuda" and "fp32" in siblings and wanted == "fp16":
            choice = "fp32"  # no fp16 file yet: the fp32 one still beats int8 QDQ on CUDA
        file = siblings.get(choice) if choice else None
        if file is None:
            how = "edgecnn export RUN --fp16" if wanted == "fp16" else "edgecnn export RUN"
            why = f"{why} (no {wanted} file beside this one: {how})"
        rows.append(
            {
                "provider": provider,
                "file": str(file) if file else None,
                "precision": choice or wanted,
                "this_file": file == path,
                "why": why,
            }
        )
    return rows


def int8_on_cuda_advice(path: Path) -> str:
    """What running an int8 QDQ file on the CUDA provider costs, and which file or provider to use instead."""
    siblings = precision_siblings(path)
    better = " or ".join(str(siblings[p]) for p in ("fp16", "fp32") if p in siblings)
    return (
        f"{path.name} is an int8 QDQ model on the CUDA provider, which has int8 kernels for few of its nodes "
        "and runs the rest dequantised in float: usually slower there than the fp32 or fp16 model (not measured "
        "on this machine; `edgecnn benchmark --provider cuda,tensorrt` measures it). For int8 on the GPU use "
        f"--provider tensorrt; on CUDA use {better or 'the fp32 or fp16 file (edgecnn export RUN --fp16)'}"
    )


def saturating_int8(contract: ModelContract) -> bool:
    """An int8 model with 8-bit weights on a CPU whose int8 kernels saturate with them (``int8_saturates``)."""
    from edgecnn.core.cpuinfo import int8_saturates

    quantization = contract.quantization or {}
    eight_bits = contract.numeric_precision == "int8" and not quantization.get("reduce_range", False)
    return eight_bits and int8_saturates()


def int8_on_cpu_advice(path: Path) -> str:
    """What to do about an int8 model with 8-bit weights on a CPU without VNNI (``saturating_int8``)."""
    return (
        f"{path.name} has 8-bit int8 weights and this CPU has no VNNI: ONNX Runtime's int8 kernels here "
        "can saturate and lose accuracy; export it again with --reduce-range on (or run the fp32 file)"
    )
