"""Option types shared by several commands: one declaration each, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.app import say


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    tensorrt = "tensorrt"


ModelOption = Annotated[
    Path | None, typer.Option(help="An edgecnn .onnx model [default: the shipped default model].")
]
ProviderOption = Annotated[
    Provider,
    typer.Option(help="Execution provider: auto (CUDA when it really works, else CPU), cpu, cuda, tensorrt."),
]
FallbackOption = Annotated[
    bool,
    typer.Option("--fallback", help="If the requested provider cannot run, use the CPU instead of failing."),
]
ThreadsOption = Annotated[
    int | None, typer.Option(help="ONNX Runtime intra-op threads [default: one per physical core].")
]
WorkersOption = Annotated[int | None, typer.Option(help="Decoding threads [default: CPU count].")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def config_from(cls: Any, options: dict[str, Any], **overrides: Any) -> Any:
    """A library config dataclass from a command's options: fields named like an option take its value
    (choices as their plain value), ``overrides`` set the rest (options whose meaning is inverted or renamed)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: (v.value if isinstance(v, Enum) else v) for k, v in options.items() if k in names}
    return cls(**{**values, **overrides})


def resolve_model(model: Path | None) -> Path:
    """The --model given, or the shipped default model (announced on stderr)."""
    from edgecnn.core.errors import ModelFileError
    from edgecnn.core.shipped import default_model_path

    if model is not None:
        return model
    path = default_model_path()
    if path is None:
        raise ModelFileError("no --model given and no shipped default model found; pass --model MODEL.onnx")
    say(f"using the shipped default model {path} (pass --model to use your own)")
    return path


def open_predictor(model: Path | None, provider: Provider, fallback: bool, threads: int | None) -> Any:
    """The predictor for an inference command, announced on stderr with the provider that really runs."""
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(resolve_model(model), provider=provider.value, threads=threads, fallback=fallback)
    spec = predictor.contract.input
    say(
        f"model: {predictor.path.name} ({len(predictor.labels)} classes, {spec.height}x{spec.width}); {predictor.info.describe()}"
    )
    return predictor
