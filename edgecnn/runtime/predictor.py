"""The ONNX Runtime predictor: reads the model's contract, picks an execution provider honestly, runs batches.

ONNX Runtime lists CUDA and TensorRT as available wherever the GPU package is installed, then falls back to
the CPU when a session cannot start them, logging the reason to the process's stderr. The predictor checks
``session.get_providers()`` to learn what really runs, captures that log to give a one-line reason, and fails
when a provider asked for by name cannot run (unless fallback was allowed).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract, contract_from_metadata
from edgecnn.core.errors import ContractError, ModelFileError, ProviderError
from edgecnn.core.nativeio import capture_native_output
from edgecnn.runtime.providers import (
    PROVIDER_CHOICES,
    PROVIDERS,
    explain_provider_failure,
    has_nvidia_device,
    import_onnxruntime,
    preload_cuda_libraries,
)


@dataclass
class SessionInfo:
    """What a session really is: which providers run it and with which options."""

    provider: str  # short name of the provider running the model: cpu, cuda, tensorrt
    providers: list[str]  # ONNX Runtime's list, in priority order
    requested: str
    note: str | None = None  # why the requested provider is not the one running
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        text = f"provider {self.provider}"
        if self.note:
            text += f" ({self.note})"
        threads = self.threads if self.threads else "runtime default (one per physical core)"
        spin = "on" if self.options.get("spinning") else "off"
        optimisation = self.options.get("graph_optimization", "all")
        return f"{text}; threads {threads}; graph optimisation {optimisation}; thread spinning {spin}"


class Predictor:
    """Runs an edgecnn ONNX model on batches of images.

    Args:
        model_path: An .onnx file written by ``edgecnn export``.
        provider: "auto" (CUDA when it really works here, else CPU), "cpu", "cuda" or "tensorrt".
        threads: Intra-op threads for the CPU provider (default: ONNX Runtime's, one per physical core).
        fallback: When an explicitly requested provider cannot run, use the CPU instead of failing.
        spin: Let idle intra-op threads spin-wait for work. Off by default: spinning threads take the CPU
            time that decoding threads need in a pipeline; turn it on for back-to-back single-model runs.

    Raises:
        ModelFileError: The file is missing, not ONNX, or unreadable.
        ContractError: The contract is missing, malformed, or disagrees with the graph.
        ProviderError: The requested provider cannot run and ``fallback`` is off.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        provider: str = "auto",
        threads: int | None = None,
        fallback: bool = False,
        spin: bool = False,
    ) -> None:
        self.path = Path(model_path)
        self.spin = spin
        if provider not in PROVIDER_CHOICES:
            raise ProviderError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDER_CHOICES)}")
        if threads is not None and threads < 1:
            raise ProviderError(f"--threads must be at least 1, got {threads}")
        check_model_file(self.path)
        self.ort = import_onnxruntime()
        self.session, self.info = self._open(provider, threads, fallback)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract: ModelContract = contract_from_metadata(meta, what=str(self.path))
        check_contract_against_session(self.contract, self.session)
        inputs = self.session.get_inputs()
        self.input_name = self.contract.input.name
        self.output_name = self.contract.output_name
        batch_dim = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None

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

    def _open(self, provider: str, threads: int | None, fallback: bool) -> tuple[Any, SessionInfo]:
        available = self.ort.get_available_providers()
        options = {"graph_optimization": "all", "execution_mode": "sequential", "spinning": self.spin}
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
            preload_cuda_libraries(self.ort)
            with capture_native_output() as log:  # the default logger's warnings say why the provider failed
                session = self._create([name, "CPUExecutionProvider"], threads)
            actual = session.get_providers()
            if actual and actual[0] == name:
                return session, SessionInfo(wanted[0], actual, provider, None, threads, options)
            reason = explain_provider_failure(wanted[0], log)
        if provider != "auto" and not fallback:
            raise ProviderError(f"{reason} (add --fallback to run on the CPU instead)")
        session = self._create(["CPUExecutionProvider"], threads)
        return session, SessionInfo(
            "cpu", session.get_providers(), provider, f"fell back from {reason}", threads, options
        )

    def _create(self, providers: list[str], threads: int | None) -> Any:
        try:
            return self.ort.InferenceSession(
                str(self.path), sess_options=self._session_options(threads), providers=providers
            )
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidProtobuf/... types
            raise ModelFileError(describe_load_error(self.path, exc)) from None

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 NHWC batch of raw pixel values; shape (N, number of labels)."""
        if self.fixed_batch and batch.shape[0] != self.fixed_batch:
            # A graph with a fixed batch size: run full chunks, padding the last one with zeros.
            size = self.fixed_batch
            parts = []
            for start in range(0, batch.shape[0], size):
                chunk = batch[start : start + size]
                real = chunk.shape[0]
                if real < size:
                    pad = np.zeros((size - real, *chunk.shape[1:]), chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                parts.append(self._run(chunk)[:real])
            return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), np.float32)
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise ModelFileError(f"the predictor for {self.path} is closed")
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
