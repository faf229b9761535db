"""Writing a report page: Jinja2 templates (autoescape on), the data as a JSON blob, thumbnails beside it.

The page is one HTML file. Its data (file names, labels, confidences) travels as JSON inside a
``<script type="application/json">`` element, escaped so that no file name can close the element, and is
read by the page's own script, which builds every name with ``textContent``. Thumbnails stay in
``<stem>_files/`` beside the page (packed into atlases, ``thumbs``), or are embedded as ``data:`` URIs for small
runs (and the folder removed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edgecnn.core.atomic import check_writable, write_atomic
from edgecnn.core.errors import ConfigError
from edgecnn.core.version import __version__
from edgecnn.reports.thumbs import ATLAS_PIXELS, Thumbnailer, clear_thumbnails

#: Up to this many thumbnails, a report embeds them and needs no folder beside it.
EMBED_LIMIT = 200
SUFFIXES = (".html", ".htm")
#: Characters that must not appear raw inside a <script> element (U+2028/9 break older JS parsers).
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def check_report_path(path: str | Path) -> Path:
    """The report path, checked before any work: an .html file whose folder can be written.

    Raises:
        ConfigError: Not an .html file name. OutputError: it cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--report must name an .html file, got {str(path)!r}")
    check_writable(path)
    return path


def files_dir(report: Path) -> Path:
    """The folder beside ``report.html`` that holds its thumbnails: ``report_files/``."""
    return report.with_name(report.stem + "_files")


def files_url(report: Path) -> str:
    """The thumbnails folder as a URL relative to the page (the stem is the user's: percent-encode it)."""
    return quote(files_dir(report).name) + "/"


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>``, no HTML comment, no entity can appear."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        "".join(_SCRIPT_ESCAPES.get(ch, ch) for ch in text)
        if any(c in text for c in "<>&\u2028\u2029")
        else text
    )


def clean_number(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe rounded float (NaN and infinities become None)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edgecnn.reports", "templates"),
        autoescape=True,  # every value from data (file names, labels, reasons) is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v, d=1: "n/a" if v is None else f"{v * 100:.{d}f}%"
    env.filters["num"] = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"
    return env


@lru_cache(maxsize=4)
def _asset(name: str) -> str:
    """A stylesheet or script of the package, as written (not a template: its braces stay braces)."""
    source: str = _environment().loader.get_source(_environment(), name)[0]
    return source


def thumbnail_refs(
    report: Path, thumbs: Thumbnailer, paths: Iterable[str], embed: bool
) -> tuple[list[str], dict[str, list[int]]]:
    """The page's atlas URLs, and for each path its thumbnail as
    [atlas, x, y, width, height, shown width, shown height].

    Args:
        paths: The paths the page shows (the thumbnails' keys).
        embed: Put the atlases in the page as data: URIs and remove the folder beside it; else keep them
            there, with the index a later ``--resume`` reads.
    """
    placed = {path: thumbs.placed[path] for path in paths if path in thumbs.placed}
    used = sorted({p[0] for p in placed.values()})
    number = {name: i for i, name in enumerate(used)}
    refs = {path: [number[p[0]], *p[1:]] for path, p in placed.items()}
    folder = files_dir(report)
    if not embed:
        thumbs.save_index(set(placed))
        return [files_url(report) + quote(name) for name in used], refs
    urls = []
    for name in used:
        try:
            urls.append(
                "data:image/jpeg;base64," + base64.b64encode((folder / name).read_bytes()).decode("ascii")
            )
        except OSError:
            urls.append("")
    clear_thumbnails(folder)
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (someone else's files) or already gone
    return urls, refs


def write_page(path: Path, template: str, title: str, data: dict[str, Any], **context: Any) -> Path:
    """Render ``template`` with ``context`` and the page data, and write it atomically to ``path``.

    Raises:
        OutputError: The page cannot be written.
    """
    from markupsafe import Markup

    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    data.setdefault("atlas_size", ATLAS_PIXELS)
    page = (
        _environment()
        .get_template(template)
        .render(
            title=title,
            data_json=Markup(script_json(data)),
            css=Markup(_asset("report.css")),
            script=Markup(script),
            script_hash=f"sha256-{digest}",  # the page runs its own script and nothing else
            version=__version__,
            created=datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M"),
            **context,
        )
    )
    write_atomic(path, page, errors="backslashreplace")
    return path
