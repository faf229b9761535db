"""``edgecnn.load``: an edgecnn ONNX model as a Python object that classifies paths, arrays and PIL images.

Every kind of input goes through the same preprocessing functions as ``classify`` and ``webcam``
(``imaging.load_image`` for files, ``image_to_input`` for RGB arrays, ``frame_to_input`` for OpenCV frames), so
an embedded model sees exactly what the command line feeds it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import ModelContract
from edgecnn.core.decode import decode_one
from edgecnn.core.errors import ImageError
from edgecnn.core.imaging import frame_to_input, image_to_input
from edgecnn.runtime.predictor import Predictor


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    Attributes:
        label: The most likely label.
        confidence: Its probability.
        probabilities: Every label's probability, in label order.
        top_k: The k most likely (label, probability) pairs, most likely first.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]

    def __str__(self) -> str:
        return f"{self.label} ({self.confidence:.3f})"


class Model:
    """An edgecnn ONNX model, ready to classify; a context manager that releases its session on exit.

    Create it with ``edgecnn.load``. ``predict`` accepts:

    - a file path (``str`` or ``os.PathLike``), or a list of them;
    - an (H, W, 3) RGB or (H, W) grey ``uint8`` array, or an (N, H, W, C) batch of them;
    - an OpenCV frame (BGR) with ``bgr=True``;
    - a PIL image.

    A single image gives one ``Prediction``; a list or a batch gives a list.
    """

    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor

    @property
    def contract(self) -> ModelContract:
        """The model's contract: labels, input size, preprocessing, training and quantisation facts."""
        return self._predictor.contract

    @property
    def labels(self) -> tuple[str, ...]:
        return self._predictor.labels

    @property
    def provider(self) -> str:
        """The execution provider that really runs the model (cpu, cuda or tensorrt), not the one asked for."""
        return self._predictor.provider

    @property
    def path(self) -> Path:
        return self._predictor.path

    @property
    def predictor(self) -> Predictor:
        """The underlying batch predictor (float32 NHWC batches in, probabilities out)."""
        return self._predictor

    def predict(self, x: Any, top_k: int = 1, bgr: bool = False) -> Prediction | list[Prediction]:
        """Classify one image or many.

        Args:
            x: A path, a list of paths, a uint8 image array, a batch array, or a PIL image.
            top_k: How many (label, probability) pairs each ``Prediction.top_k`` holds.
            bgr: ``x`` is an OpenCV frame (BGR or BGRA channel order), not RGB.

        Raises:
            ImageError: A file or array that cannot be made into a model input.
        """
        if top_k < 1:
            raise ImageError(f"top_k must be at least 1, got {top_k}")
        single, inputs = self._inputs(x, bgr)
        probs = self._predictor.predict(inputs)
        out = [self._prediction(row, top_k) for row in probs]
        return out[0] if single else out

    def _inputs(self, x: Any, bgr: bool) -> tuple[bool, list[np.ndarray]]:
        spec = self.contract.input
        if isinstance(x, (str, os.PathLike)):
            decoded = decode_one(x, spec)  # core.decode's one rule for a file that cannot be used
            if decoded.image is None:
                raise ImageError(f"{os.fspath(x)}: {decoded.error}")
            return True, [decoded.image]
        if isinstance(x, np.ndarray):
            if x.ndim == 4:
                return False, [self._array(image, bgr) for image in x]
            return True, [self._array(x, bgr)]
        if _is_pil(x):
            return True, [self._pil(x)]
        if isinstance(x, Sequence) and not isinstance(x, (bytes, bytearray)):
            inputs = []
            for item in x:
                single, one = self._inputs(item, bgr)
                if not single:
                    raise ImageError("a list passed to predict holds single images, not batches")
                inputs.extend(one)
            return False, inputs
        raise ImageError(
            f"cannot classify a {type(x).__name__}; give a path, a list of paths, a uint8 array or a PIL image"
        )

    def _array(self, image: np.ndarray, bgr: bool) -> np.ndarray:
        spec = self.contract.input
        if bgr:
            return frame_to_input(image, spec)
        if image.dtype != np.uint8:
            raise ImageError(f"expected a uint8 image array, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 4:
            raise ImageError("an RGBA array: drop or composite the alpha channel first (or pass a PIL image)")
        return image_to_input(image, spec)

    def _pil(self, image: Any) -> np.ndarray:
        from edgecnn.core.imaging import pil_to_array

        return image_to_input(pil_to_array(image), self.contract.input)

    def _prediction(self, row: np.ndarray, top_k: int) -> Prediction:
        labels = self.labels
        top = self._predictor.top_k(row[None, :], top_k)[0]
        return Prediction(
            label=top[0][0],
            confidence=top[0][1],
            probabilities={label: float(p) for label, p in zip(labels, row)},
            top_k=top,
        )

    def close(self) -> None:
        """Release the ONNX Runtime session."""
        self._predictor.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, labels={list(self.labels)!r}, provider={self.provider!r})"


def _is_pil(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("PIL.") and hasattr(x, "convert") and hasattr(x, "mode")


def load(
    path: str | os.PathLike[str] | None = None,
    provider: str = "auto",
    fallback: bool = False,
    threads: int | None = None,
) -> Model:
    """Open an edgecnn ONNX model.

    Args:
        path: An .onnx file written by ``edgecnn export`` (or adopted); None: the shipped default model, the
            1,000 ImageNet classes (``$EDGECNN_MODEL`` when set).
        provider: "auto" (CUDA when it really works here, else CPU), "cpu", "cuda" or "tensorrt".
        fallback: When the provider asked for cannot run, use the CPU instead of raising.
        threads: ONNX Runtime intra-op threads (default: one per physical core).

    Raises:
        ModelFileError: The file is missing or not a model.
        ContractError: The file has no edgecnn contract, or it disagrees with the graph.
        ProviderError: The provider asked for cannot run and ``fallback`` is off.
    """
    if path is None:
        from edgecnn.core.errors import ModelFileError
        from edgecnn.core.shipped import default_model_path

        path = default_model_path()
        if path is None:
            raise ModelFileError(
                "no model given and no shipped default model found; pass the path of a model"
            )
    return Model(Predictor(path, provider=provider, threads=threads, fallback=fallback))
