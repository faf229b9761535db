"""The ONNX Runtime predictor: reads the model's contract, picks an execution provider honestly, runs batches.

ONNX Runtime lists CUDA and TensorRT as available wherever the GPU package is installed, then falls back to
the CPU when a session cannot start them, logging the reason to the process's stderr. The predictor checks
``session.get_providers()`` to learn what really runs, captures that log to give a one-line reason, and fails
when a provider asked for by name cannot run (unless fallback was allowed).

On a GPU the session gets deliberate provider options (``runtime.cuda.CudaOptions``; TensorRT's engine cache
and precision flags from ``runtime.tensorrt``), runs through IO binding by default, and says what an int8 QDQ
model costs on the CUDA provider instead of silently running a slow path.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract, contract_from_metadata
from edgecnn.core.errors import ConfigError, ContractError, ModelFileError, ProviderError
from edgecnn.core.nativeio import capture_native_output
from edgecnn.runtime.cuda import BoundRunner, CudaOptions, padded_chunks, pinned_memory_info
from edgecnn.runtime.precision import int8_on_cpu_advice, int8_on_cuda_advice, saturating_int8
from edgecnn.runtime.providers import (
    PROVIDER_CHOICES,
    PROVIDERS,
    explain_provider_failure,
    failure_hint,
    has_nvidia_device,
    import_onnxruntime,
    preload_cuda_libraries,
)
from edgecnn.runtime.tensorrt import TensorrtOptions, discard_unused_cache
from edgecnn.runtime.tensorrt import session_options as tensorrt_session_options

logger = logging.getLogger(__name__)


@dataclass
class SessionInfo:
    """What a session really is: which providers run it and with which options."""

    provider: str  # short name of the provider running the model: cpu, cuda, tensorrt
    providers: list[str]  # ONNX Runtime's list, in priority order
    requested: str
    note: str | None = None  # why the requested provider is not the one running
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    advice: str | None = None  # what this model costs on this provider, when another file would do better

    def describe(self) -> str:
        text = f"provider {self.provider}"
        if self.note:
            text += f" ({self.note})"
        threads = self.threads if self.threads else "runtime default (one per physical core)"
        spin = "on" if self.options.get("spinning") else "off"
        optimisation = self.options.get("graph_optimization", "all")
        text = f"{text}; threads {threads}; graph optimisation {optimisation}; thread spinning {spin}"
        binding = self.options.get("io_binding")
        return f"{text}; {binding}" if binding and binding != "off" else text


class Predictor:
    """Runs an edgecnn ONNX model on batches of images.

    Args:
        model_path: An .onnx file written by ``edgecnn export``.
        provider: "auto" (CUDA when it really works here, else CPU), "cpu", "cuda" or "tensorrt".
        threads: Intra-op threads for the CPU provider (default: ONNX Runtime's, one per physical core).
        fallback: When an explicitly requested provider cannot run, use the CPU instead of failing.
        spin: Let idle intra-op threads spin-wait for work. Off by default: spinning threads take the CPU
            time that decoding threads need in a pipeline; turn it on for back-to-back single-model runs.
        cuda: CUDA provider options (default ``CudaOptions()``: ONNX Runtime's documented defaults).
        tensorrt: TensorRT options (default: ``TensorrtOptions.for_precision`` of the model, cache on).
        io_binding: Run through IO binding with buffers kept between calls (default: on for CUDA and
            TensorRT, off on the CPU, where it saves nothing).
        pad_batch: Pad every batch to this many images (chunks of it): one fixed input shape, which CUDA
            graphs (``CudaOptions(enable_cuda_graph=True)``) need.

    Raises:
        ModelFileError: The file is missing, not ONNX, or unreadable.
        ContractError: The contract is missing, malformed, or disagrees with the graph.
        ProviderError: The requested provider cannot run and ``fallback`` is off.
        ConfigError: Inconsistent options (CUDA graphs without ``pad_batch`` or IO binding).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        provider: str = "auto",
        threads: int | None = None,
        fallback: bool = False,
        spin: bool = False,
        *,
        cuda: CudaOptions | None = None,
        tensorrt: TensorrtOptions | None = None,
        io_binding: bool | None = None,
        pad_batch: int | None = None,
    ) -> None:
        self.path = Path(model_path)
        self.spin = spin
        self.runner: BoundRunner | None = None
        if provider not in PROVIDER_CHOICES:
            raise ProviderError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDER_CHOICES)}")
        if threads is not None and threads < 1:
            raise ProviderError(f"--threads must be at least 1, got {threads}")
        if pad_batch is not None and pad_batch < 1:
            raise ConfigError(f"pad_batch must be at least 1, got {pad_batch}")
        self.cuda_options = cuda or CudaOptions()
        if self.cuda_options.enable_cuda_graph and (pad_batch is None or io_binding is False):
            raise ConfigError(
                "CUDA graphs replay one captured input shape through fixed buffers: pass pad_batch=N "
                "(every batch is padded to N images) and leave io_binding on"
            )
        self.tensorrt_options = tensorrt
        check_model_file(self.path)
        self.ort = import_onnxruntime()
        started = time.perf_counter()
        self.session, self.info = self._open(provider, threads, fallback)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract: ModelContract = contract_from_metadata(meta, what=str(self.path))
        check_contract_against_session(self.contract, self.session)
        inputs = self.session.get_inputs()
        self.input_name = self.contract.input.name
        self.output_name = self.contract.output_name
        batch_dim = inputs[0].shape[0] if inputs[0].shape else None
        graph_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        if graph_batch and pad_batch and graph_batch != pad_batch:
            raise ConfigError(
                f"{self.path} only takes batches of {graph_batch}; pad_batch={pad_batch} cannot apply"
            )
        self.fixed_batch = graph_batch or pad_batch
        on_gpu = self.info.provider in ("cuda", "tensorrt")
        if on_gpu if io_binding is None else io_binding:
            self.runner = self._bound_runner(on_gpu)
        self.info.options["io_binding"] = self.runner.describe() if self.runner else "off"
        self._advise()
        if self.info.provider == "tensorrt":
            self._first_run(started)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    @property
    def provider(self) -> str:
        return self.info.provider

    def _session_options(self, threads: int | None) -> Any:
        opts = self.ort.SessionOptions()
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        return opts

    def _gpu_providers(self, short: str) -> tuple[list[Any], dict[str, Any]]:
        """The providers list (with their options) of a CUDA or TensorRT session, and what it states."""
        cuda = ("CUDAExecutionProvider", self.cuda_options.provider_options())
        stated: dict[str, Any] = {"cuda": self.cuda_options.to_dict()}
        if short == "cuda":
            return [cuda, "CPUExecutionProvider"], stated
        trt, stated["tensorrt"] = tensorrt_session_options(
            self.path, self.ort, self.tensorrt_options, self.cuda_options.device_id
        )
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"], stated

    def _open(self, provider: str, threads: int | None, fallback: bool) -> tuple[Any, SessionInfo]:
        available = self.ort.get_available_providers()
        options: dict[str, Any] = {
            "graph_optimization": "all",
            "execution_mode": "sequential",
            "spinning": self.spin,
        }
        if provider == "cpu":
            session = self._create(["CPUExecutionProvider"], threads)
            return session, SessionInfo("cpu", session.get_providers(), provider, None, threads, options)
        wanted = ["cuda"] if provider == "auto" else [provider]
        if provider == "auto" and ("CUDAExecutionProvider" not in available or not has_nvidia_device()):
            session = self._create(["CPUExecutionProvider"], threads)
            note = (
                "CUDA is listed by ONNX Runtime but no NVIDIA GPU is visible"
                if "CUDAExecutionProvider" in available
                else None
            )
            return session, SessionInfo("cpu", session.get_providers(), provider, note, threads, options)
        name = PROVIDERS[wanted[0]]
        if name not in available:
            reason = f"{wanted[0]} is not in this ONNX Runtime build (available: {', '.join(available)})"
        else:
            preload_cuda_libraries(self.ort, tensorrt=wanted[0] == "tensorrt")
            providers, stated = self._gpu_providers(wanted[0])
            with capture_native_output() as log:  # the default logger's warnings say why the provider failed
                session = self._create(providers, threads)
            actual = session.get_providers()
            if actual and actual[0] == name:
                return session, SessionInfo(wanted[0], actual, provider, None, threads, {**options, **stated})
            discard_unused_cache((stated.get("tensorrt") or {}).get("cache"))
            reason = explain_provider_failure(wanted[0], log, failure_hint(self.ort, wanted[0]))
        if provider != "auto" and not fallback:
            raise ProviderError(f"{reason} (add --fallback to run on the CPU instead)")
        session = self._create(["CPUExecutionProvider"], threads)
        return session, SessionInfo(
            "cpu", session.get_providers(), provider, f"fell back from {reason}", threads, options
        )

    def _create(self, providers: list[Any], threads: int | None) -> Any:
        try:
            return self.ort.InferenceSession(
                str(self.path), sess_options=self._session_options(threads), providers=providers
            )
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidProtobuf/... types
            raise ModelFileError(describe_load_error(self.path, exc)) from None

    def _bound_runner(self, on_gpu: bool) -> BoundRunner:
        pinned = pinned_memory_info(self.ort) if on_gpu else None
        new = self.ort.OrtValue.ortvalue_from_shape_and_type

        def pinned_buffer(shape: tuple[int, ...]) -> Any:
            return new(list(shape), np.float32, memory_info=pinned)

        return BoundRunner(
            self.ort,
            self.session,
            self.input_name,
            self.output_name,
            self.contract.num_classes,
            device="cuda" if on_gpu else "cpu",
            device_id=self.cuda_options.device_id,
            staging=pinned_buffer if pinned is not None else None,
            staging_name="pinned host buffer"
            if pinned is not None
            else "pageable (no pinned allocator exposed)",
        )

    def _advise(self) -> None:
        """Say what this model costs on this provider when another file or provider would do better."""
        if self.info.provider == "cuda" and self.contract.numeric_precision == "int8":
            self.info.advice = int8_on_cuda_advice(self.path)
            logger.warning(self.info.advice)
        elif self.info.provider == "cpu" and saturating_int8(self.contract):
            self.info.advice = int8_on_cpu_advice(self.path)
            logger.warning(self.info.advice)

    def _first_run(self, started: float) -> None:
        """Build (or load) the TensorRT engine now, at the profile's batch, and say how long it took."""
        stated = self.info.options.get("tensorrt") or {}
        batch = self.fixed_batch or int(stated.get("opt_batch", 1))
        self.predict_batch(np.zeros((batch, *self.contract.input.shape), np.float32))
        seconds = time.perf_counter() - started
        stated["first_run_s"] = round(seconds, 3)
        where = stated.get("cache")
        how = "loaded from its cache" if stated.get("cache_hit") else "built"
        logger.info(
            f"TensorRT engine for {self.path.name} {how} in {seconds:.1f} s (session start and first run)"
            + (f"; cache {where}" if where else "; engine cache off")
        )

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 NHWC batch of raw pixel values; shape (N, number of labels)."""
        if self.fixed_batch and batch.shape[0] != self.fixed_batch:
            # A fixed batch size (the graph's, or pad_batch): run full chunks, padding the last with zeros.
            parts = [self._run(chunk)[:real] for chunk, real in padded_chunks(batch, self.fixed_batch)]
            return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), np.float32)
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise ModelFileError(f"the predictor for {self.path} is closed")
        if self.runner is not None and len(batch):
            return self.runner.run(batch)
        result = self.session.run(
            [self.output_name], {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return np.asarray(result[0])

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities for uint8 model inputs as made by ``imaging.load_image``/``frame_to_input``."""
        if not images:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.predict_batch(np.stack(images).astype(np.float32))

    def top_k(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k most likely (label, probability) pairs of each row."""
        k = max(1, min(k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]

    def close(self) -> None:
        """Release the ONNX Runtime session (and the memory it holds); the predictor cannot run after this."""
        self.session = None
        self.runner = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self, runs: int = 1, batch: int = 1) -> float:
        """Run a zero batch (first runs allocate and tune); returns the seconds the last run took."""
        x = np.zeros((batch, *self.contract.input.shape), np.float32)
        elapsed = 0.0
        for _ in range(runs):
            t = time.perf_counter()
            self.predict_batch(x)
            elapsed = time.perf_counter() - t
        return elapsed


def check_model_file(path: Path) -> None:
    """Fail early, with a clear message, for a path that cannot be a model file."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; give the .onnx file (e.g. {path / 'model.onnx'})")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes)")
    if path.suffix.lower() == ".keras" or head.startswith(b"PK\x03\x04"):
        raise ModelFileError(f"{path} is a Keras model; convert it first: edgecnn export {path}")


def describe_load_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text:
        return f"{path} is not an ONNX model, or it is truncated (cannot parse it)"
    m = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if m:
        return f"{path} uses ONNX IR version {m.group(1)}; this ONNX Runtime reads up to {m.group(2)}: upgrade onnxruntime"
    m = re.search(r"(Opset \d+ .*?supported[^.]*)", text)
    if m:
        return f"{path}: {m.group(1)}; upgrade onnxruntime or re-export with a lower --opset"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"ONNX Runtime cannot load {path}: {first[:240]}"


def check_contract_against_session(contract: ModelContract, session: Any) -> None:
    """Refuse a model whose contract disagrees with its graph (names, input size, number of labels).

    Raises:
        ContractError: The first disagreement found.
    """
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    spec = contract.input
    if spec.name not in inputs:
        raise ContractError(f"the contract names input {spec.name!r}, the graph has {', '.join(inputs)}")
    if contract.output_name not in outputs:
        raise ContractError(
            f"the contract names output {contract.output_name!r}, the graph has {', '.join(outputs)}"
        )
    node = inputs[spec.name]
    if node.type != "tensor(float)":
        raise ContractError(f"input {spec.name!r} is {node.type}; edgecnn models take tensor(float)")
    shape = list(node.shape)
    if len(shape) != 4:
        raise ContractError(f"input {spec.name!r} has rank {len(shape)}; edgecnn models take NHWC (rank 4)")
    for axis, expected, what in (
        (1, spec.height, "height"),
        (2, spec.width, "width"),
        (3, spec.channels, "channels"),
    ):
        actual = shape[axis]
        if isinstance(actual, int) and actual > 0 and actual != expected:
            raise ContractError(f"the contract says input {what} {expected}, the graph takes {actual}")
    out_shape = list(outputs[contract.output_name].shape)
    if (
        out_shape
        and isinstance(out_shape[-1], int)
        and out_shape[-1] > 0
        and out_shape[-1] != contract.num_classes
    ):
        raise ContractError(
            f"the contract lists {contract.num_classes} labels, the graph outputs {out_shape[-1]} classes"
        )
