"""The errors edgecnn raises for bad input, bad models and a bad environment.

The library raises these and never prints or exits; the CLI turns them into one line on stderr and an exit
code. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgecnnError(Exception):
    """Base class: a problem the user can fix, stated in one line."""

    exit_code = 2


class ConfigError(EdgecnnError):
    """An option or combination of options that cannot work."""


class WeightsFileError(ConfigError):
    """A pretrained weights file that is missing, truncated, tampered with, or of another network."""


class DatasetError(EdgecnnError):
    """A data folder that cannot be used (missing, empty class, too few images)."""


class ImageError(EdgecnnError):
    """One image file that cannot be turned into a model input; the reason is the message."""


class ModelFileError(EdgecnnError):
    """A model file that is missing, unreadable, not ONNX/Keras, or lacks the edgecnn contract."""


class ContractError(ModelFileError):
    """The edgecnn contract inside a model is missing, malformed or disagrees with the graph."""


class ProviderError(EdgecnnError):
    """An execution provider that was asked for and cannot run here."""


class SourceError(EdgecnnError):
    """A camera, video file or stream that cannot be opened or read."""


class DependencyError(EdgecnnError):
    """A missing or clashing Python package (for example the training extra, or two ONNX Runtimes)."""


class ExportError(EdgecnnError):
    """An export or quantisation that failed a gate; no output file was left behind."""


class OutputError(EdgecnnError):
    """An output file or folder that cannot be written, or would be overwritten."""
