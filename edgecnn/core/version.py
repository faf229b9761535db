"""The package version (one place; pyproject.toml reads it from here), and the ONNX Runtime version that
files record as their tool."""

__version__ = "0.1.0"


def onnxruntime_version() -> str:
    """The installed ONNX Runtime's version (either wheel: onnxruntime or onnxruntime-gpu), or "unknown"."""
    try:
        import onnxruntime
    except ImportError:
        return "unknown"
    return str(onnxruntime.__version__)
