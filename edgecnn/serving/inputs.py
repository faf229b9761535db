"""From a request's bytes to a model batch (run on the decoding pool), and a model's answer back to output
tensors: what the infer and classify routes do off the event loop."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from edgecnn.core.contract import InputSpec
from edgecnn.core.decode import decode_one
from edgecnn.runtime.model import Model
from edgecnn.serving.errors import RequestError
from edgecnn.serving.tensors import InferRequest, OutputTensor, model_input, parse_infer_request

#: The model's outputs, by name: the probabilities of every label and the top-k labels.
PROBABILITIES = "probabilities"
LABELS = "labels"
OUTPUTS = (PROBABILITIES, LABELS)


@dataclass(frozen=True)
class Prepared:
    """An infer request made ready for the model: its float32 NHWC batch and the top-k asked for."""

    request: InferRequest
    images: np.ndarray
    top_k: int

    def outputs(self, model: Model, probs: np.ndarray) -> list[OutputTensor]:
        """The output tensors asked for (all when none were named), each as JSON or binary as asked."""
        wanted = self.request.outputs
        names = list(wanted) if wanted is not None else list(OUTPUTS)
        result = []
        for name in names:
            binary = wanted[name] if wanted is not None else self.request.binary_output
            if name == PROBABILITIES:
                result.append(OutputTensor(name, "FP32", np.asarray(probs, np.float32), binary))
            else:
                tops = model.predictor.top_k(np.asarray(probs), self.top_k)
                labels = np.array([[label for label, _ in row] for row in tops], dtype=object)
                result.append(OutputTensor(name, "BYTES", labels, binary))
        return result


def prepare_infer(body: bytes, header_length: str | None, model: Model, max_batch: int) -> Prepared:
    """Parse an infer request and make its one input a model batch (encoded images decoded here).

    Raises:
        RequestError: Anything in the request that does not fit the protocol or this model.
    """
    request = parse_infer_request(body, header_length)
    spec = model.contract.input
    if len(request.inputs) != 1:
        names = ", ".join(repr(t.name) for t in request.inputs)
        raise RequestError(f"this model takes one input ({spec.name!r}); the request has {names}")
    if request.outputs is not None:
        unknown = sorted(set(request.outputs) - set(OUTPUTS))
        if unknown:
            raise RequestError(f"no output {unknown[0]!r}; this model's outputs are {', '.join(OUTPUTS)}")
    top_k = request.parameters.get("top_k", 1)
    if type(top_k) is not int or top_k < 1:
        raise RequestError(f"parameters.top_k must be a whole number of at least 1, got {top_k!r}")
    data = model_input(request.inputs[0], spec, max_batch)
    images = decode_images(data, spec) if isinstance(data, list) else data
    return Prepared(request, images, min(top_k, len(model.labels)))


def decode_images(blobs: list[bytes], spec: InputSpec) -> np.ndarray:
    """Encoded images to a float32 NHWC batch, with ``classify``'s decoder and limits (pixel count, formats).

    Raises:
        RequestError: An element that is not a usable image, named by its index and the decoder's reason.
    """
    images = []
    for i, blob in enumerate(blobs):
        decoded = decode_one(blob, spec)  # core.decode's one rule for an image that cannot be used
        if decoded.image is None:
            where = f"image {i}" if len(blobs) > 1 else "image"
            raise RequestError(f"{where}: {decoded.error}")
        images.append(decoded.image)
    return np.stack(images).astype(np.float32)


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser with every part kept in memory: the body is already bounded, and no
    route writes a file (the default spools parts over 1 MB to a temporary file)."""

    spool_max_size = 1 << 40


async def read_upload(headers: Headers, body: bytes, limit: int) -> tuple[bytes, str]:
    """The image a classify request sends: the raw body, or the one file of a multipart form, and its name."""
    if not headers.get("content-type", "").startswith("multipart/form-data"):
        return body, ""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = _InMemoryParser(headers, stream(), max_files=1, max_fields=16, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(f"bad multipart form: {exc.message}") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    try:
        if not files:
            raise RequestError("the multipart form holds no file; send the image as a file field")
        upload = files[0]
        return await upload.read(), upload.filename or ""
    finally:
        await form.close()


def model_metadata(name: str, model: Model) -> dict[str, Any]:
    """The protocol's model metadata, with the facts of the model's contract a client needs."""
    contract = model.contract
    spec = contract.input
    return {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": spec.name, "datatype": "FP32", "shape": [-1, *spec.shape]}],
        "outputs": [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(contract.labels)]},
            {"name": LABELS, "datatype": "BYTES", "shape": [-1, -1]},
        ],
        "parameters": {
            "labels": list(contract.labels),
            "input": spec.to_dict(),
            "accepts": "FP32 or UINT8 [N,H,W,C] raw pixels 0-255, or BYTES [N] encoded images",
            "arch": contract.arch,
            "normalization": contract.normalization,
            "output_activation": contract.output_activation,
            "precision": contract.numeric_precision,
            "provider": model.provider,
        },
    }
