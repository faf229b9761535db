"""The CUDA execution provider done deliberately: its session options, IO binding, and the GPU's identity.

``CudaOptions`` are the provider options the predictor passes when it opens a CUDA (or TensorRT, for the nodes
TensorRT leaves to CUDA) session. The defaults are ONNX Runtime's documented ones, chosen on purpose rather
than left implicit, and none of them has been measured against the others on a GPU by this project yet:
``benchmarks/gpu.py`` sweeps ``prefer_nhwc``, ``cudnn_conv_algo_search`` and CUDA graphs where a GPU is present.

``BoundRunner`` runs a session through IO binding: the input and output live in OrtValues kept between calls
(on the GPU for CUDA), so a batch is copied to the device once and the output back once, and with a fixed
batch size their addresses never change, which is what CUDA graphs need. With device ``"cpu"`` the same code
path runs on the CPU provider, which is how it is tested on machines without a GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import ConfigError

#: cuDNN convolution algorithm search: EXHAUSTIVE benchmarks every algorithm once per input shape (the
#: result is kept for the session), HEURISTIC asks cuDNN's heuristics, DEFAULT takes the first algorithm.
ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
#: Batch sizes whose device buffers a runner keeps at once (each holds one input and one output tensor).
KEPT_SHAPES = 4


@dataclass(frozen=True)
class CudaOptions:
    """Options of ONNX Runtime's CUDA execution provider, as edgecnn sets them.

    Args:
        device_id: The GPU to run on.
        cudnn_conv_algo_search: EXHAUSTIVE (ONNX Runtime's default: the fastest algorithm, found once per
            input shape at the first run of that shape), HEURISTIC or DEFAULT.
        cudnn_conv_use_max_workspace: Let cuDNN use as much workspace as its fastest algorithms want (ONNX
            Runtime's default since 1.14).
        prefer_nhwc: Use NHWC convolution kernels where the build has them; edgecnn models take NHWC input,
            so this can drop the layout transposes. Off by default (ONNX Runtime's default) until measured.
        enable_cuda_graph: Capture the whole graph once and replay it; needs a fixed input shape (the
            predictor's ``pad_batch``) and every node on the CUDA provider. Off by default.
        use_tf32: Let fp32 convolutions and matrix products use TF32 tensor cores on Ampere and newer GPUs
            (ONNX Runtime's default: on). TF32 keeps 10 mantissa bits, so fp32 models then differ from the
            CPU by about as much as an fp16 model does.
    """

    device_id: int = 0
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    cudnn_conv_use_max_workspace: bool = True
    prefer_nhwc: bool = False
    enable_cuda_graph: bool = False
    use_tf32: bool = True

    def __post_init__(self) -> None:
        if self.cudnn_conv_algo_search not in ALGO_SEARCH:
            raise ConfigError(
                f"unknown cudnn_conv_algo_search {self.cudnn_conv_algo_search!r}; choose from {', '.join(ALGO_SEARCH)}"
            )
        if not isinstance(self.device_id, int) or isinstance(self.device_id, bool) or self.device_id < 0:
            raise ConfigError(f"the CUDA device_id must be an integer of 0 or more, got {self.device_id!r}")

    def provider_options(self) -> dict[str, str]:
        """The option strings ONNX Runtime's CUDAExecutionProvider takes."""
        return {
            "device_id": str(self.device_id),
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "cudnn_conv_use_max_workspace": _flag(self.cudnn_conv_use_max_workspace),
            "prefer_nhwc": _flag(self.prefer_nhwc),
            "enable_cuda_graph": _flag(self.enable_cuda_graph),
            "use_tf32": _flag(self.use_tf32),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def pinned_memory_info(ort: Any) -> Any | None:
    """The CUDA provider's host-accessible (pinned) memory, when this ONNX Runtime exposes it, else None.

    ONNX Runtime lists it through ``get_ep_devices()`` once the CUDA provider is registered as a device
    provider; older builds and machines without a GPU have none, and a runner then copies from ordinary
    (pageable) host memory, which the driver stages through its own pinned buffer.
    """
    get_devices = getattr(ort, "get_ep_devices", None)
    memory_type = getattr(ort, "OrtDeviceMemoryType", None)
    if get_devices is None or memory_type is None:
        return None
    try:
        for device in get_devices():
            if device.ep_name == "CUDAExecutionProvider":
                info = device.memory_info(memory_type.HOST_ACCESSIBLE)
                if info is not None:
                    return info
    except Exception:  # an introspection API that differs between releases: fall back to pageable memory
        return None
    return None


class BoundRunner:
    """Runs one session through IO binding with input and output buffers kept between calls.

    Args:
        ort: The imported onnxruntime module.
        session: An InferenceSession.
        input_name: The graph's input.
        output_name: The probabilities output.
        num_classes: Width of the output.
        device: "cuda" (buffers on the GPU) or "cpu" (the same path on the CPU provider).
        device_id: The GPU's index.
        staging: Allocates a host buffer of a shape that a batch is copied into before it goes to the device
            (pinned memory makes that one DMA transfer); None copies straight from the NumPy array.
        staging_name: What the staging buffer is, for ``describe``.
    """

    def __init__(
        self,
        ort: Any,
        session: Any,
        input_name: str,
        output_name: str,
        num_classes: int,
        device: str = "cpu",
        device_id: int = 0,
        staging: Callable[[tuple[int, ...]], Any] | None = None,
        staging_name: str = "none",
    ) -> None:
        self.ort = ort
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.num_classes = num_classes
        self.device = device
        self.device_id = device_id
        self.staging = staging
        self.staging_name = staging_name
        self._buffers: OrderedDict[tuple[int, ...], tuple[Any, Any, Any, Any]] = OrderedDict()
        self._lock = threading.Lock()  # the buffers are shared: one run at a time

    def describe(self) -> str:
        host = f", host staging {self.staging_name}" if self.device != "cpu" else ""
        return f"IO binding on {self.device}{host}"

    def _bound(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any, Any]:
        entry = self._buffers.get(shape)
        if entry is not None:
            self._buffers.move_to_end(shape)
            return entry
        new = self.ort.OrtValue.ortvalue_from_shape_and_type
        x = new(list(shape), np.float32, self.device, self.device_id)
        y = new([shape[0], self.num_classes], np.float32, self.device, self.device_id)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, x)
        binding.bind_ortvalue_output(self.output_name, y)
        host = self.staging(shape) if self.staging is not None else None
        self._buffers[shape] = entry = (binding, x, y, host)
        while len(self._buffers) > KEPT_SHAPES:
            self._buffers.popitem(last=False)
        return entry

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of one float32 batch, through the bound buffers."""
        data = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            binding, x, y, host = self._bound(tuple(data.shape))
            if host is not None:
                host.update_inplace(data)  # into pinned host memory
                x.update_inplace(host)  # one host-to-device transfer
            else:
                x.update_inplace(data)
            self.session.run_with_iobinding(binding)
            # On the CPU the output OrtValue's array is a view of the bound buffer, which the next run
            # overwrites; from a GPU buffer this is the one device-to-host copy.
            return np.array(y.numpy(), copy=True)


def padded_chunks(batch: np.ndarray, size: int) -> list[tuple[np.ndarray, int]]:
    """Split a batch into chunks of exactly ``size`` images, zero-padding the last; (chunk, real count)."""
    parts = []
    for start in range(0, batch.shape[0], size):
        chunk = batch[start : start + size]
        real = chunk.shape[0]
        if real < size:
            pad = np.zeros((size - real, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        parts.append((chunk, real))
    return parts


# ---------------------------------------------------------------------------------------------------------
# The GPU's identity: for benchmark reports and the TensorRT engine cache key

_SMI_FIELDS = "name,driver_version,compute_cap,memory.total"


def gpu_facts(device_id: int = 0, proc_root: Path = Path("/proc/driver/nvidia")) -> dict[str, Any]:
    """Name, driver version and compute capability of one NVIDIA GPU; ``{"name": "no-gpu"}`` without one.

    ``nvidia-smi`` is asked first; without it, the kernel driver's ``/proc/driver/nvidia`` files.
    """
    smi = _run_nvidia_smi(device_id)
    if smi:
        facts = parse_nvidia_smi(smi)
        if facts:
            return {**facts, "source": "nvidia-smi"}
    return read_proc_driver(proc_root, device_id)


def _run_nvidia_smi(device_id: int) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = [exe, f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader,nounits", "-i", str(device_id)]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_nvidia_smi(text: str) -> dict[str, Any] | None:
    """The first line of ``nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total`` output."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 2 or not parts[0]:
        return None
    memory = parts[3] if len(parts) > 3 and parts[3].isdigit() else None
    return {
        "name": parts[0],
        "driver": parts[1] or None,
        "compute_capability": parts[2] if len(parts) > 2 and parts[2] not in ("", "[N/A]") else None,
        "memory_mib": int(memory) if memory else None,
    }


def read_proc_driver(root: Path, device_id: int = 0) -> dict[str, Any]:
    """GPU model and driver version from the NVIDIA kernel driver's files; ``{"name": "no-gpu"}`` without."""
    if not root.is_dir():
        return {
            "name": "no-gpu",
            "driver": None,
            "compute_capability": None,
            "memory_mib": None,
            "source": None,
        }
    version = _read(root / "version") or ""
    driver = re.search(r"Kernel Module(?: for [\w.]+)?\s+([\d.]+)", version)
    infos = sorted(root.glob("gpus/*/information"))
    name = "unknown NVIDIA GPU"
    if device_id < len(infos):
        model = re.search(r"^Model:\s*(.+)$", _read(infos[device_id]) or "", flags=re.MULTILINE)
        name = model.group(1).strip() if model else name
    return {
        "name": name,
        "driver": driver.group(1) if driver else None,
        "compute_capability": None,
        "memory_mib": None,
        "source": str(root),
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None
