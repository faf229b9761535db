"""The Typer application, its error handling and its two consoles (results to stdout, messages to stderr).

This is the only place that knows exit codes: 0 success, 1 some inputs failed (files skipped), 2 usage,
model or environment errors, 130 interrupted. Heavy imports (TensorFlow, ONNX Runtime, OpenCV) happen inside
the command bodies so that ``edgecnn --help`` and the inference commands start fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.version import __version__

app = typer.Typer(
    name="edgecnn",
    help="From a folder of labelled photos to a small, fast ONNX image classifier at the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn library errors into one line on stderr and their exit code; Ctrl-C into exit code 130."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgecnnError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """From a folder of labelled photos to a small, fast ONNX image classifier at the edge."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:  # file names that are not valid UTF-8 must print, not crash
                stream.reconfigure(errors="surrogateescape")
            except (ValueError, OSError):
                pass
    _graceful_sigterm()
    _log_to_stderr()
    _quiet_decoder_warnings()


def _quiet_decoder_warnings() -> None:
    """The command line owns its process: Pillow's warnings about a file (corrupt EXIF, a large header) are
    noise there, since such a file is decoded or skipped with its reason anyway. The library leaves the
    process's warning filters alone."""
    import warnings

    warnings.filterwarnings(
        "ignore", message=r"(Possibly )?[Cc]orrupt EXIF", category=UserWarning, module=r"PIL\."
    )
    warnings.filterwarnings(
        "ignore", message=r"Image size \(\d+ pixels\) exceeds limit", category=RuntimeWarning, module=r"PIL\."
    )


class _SayHandler(logging.Handler):
    """Library progress (the ``edgecnn`` logger) printed on stderr as plain lines."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


def _log_to_stderr() -> None:
    logger = logging.getLogger("edgecnn")
    if not any(isinstance(h, _SayHandler) for h in logger.handlers):
        logger.addHandler(_SayHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _graceful_sigterm() -> None:
    """SIGTERM (kill, docker stop) stops like Ctrl-C: results so far are kept and the exit code is 130."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        try:
            signal.signal(signal.SIGTERM, interrupt)
        except (ValueError, OSError):
            pass


def say(message: str) -> None:
    err.print(message, markup=False)
