"""The documentation site builds offline and renders in a browser with its navigation.

The site is built with ``mkdocs build --strict`` into a temporary folder, served from 127.0.0.1 by Python's
http.server in a thread, and opened in headless Chromium (Debian's ``chromium``, driven by Playwright, as the
report tests do). A request that leaves the machine (a web font, a CDN script) fails the test: CI has no
internet. Without Playwright or a browser that starts, the browser tests skip; the build itself always runs.
"""

from __future__ import annotations

import functools
import inspect
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import edgecnn

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")
#: The public API the reference page documents (the brief of docs/reference.md).
PUBLIC = (
    "load",
    "Model",
    "Prediction",
    "classify",
    "evaluate",
    "webcam",
    "train",
    "export",
    "adopt",
    "serve",
)
NAV = ("Getting started", "Your own photos", "Export, int8 and fp16", "CLI reference", "Python API reference")


def build(site: Path) -> subprocess.CompletedProcess:
    command = [str(MKDOCS) if MKDOCS.exists() else "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", **_env()},
    )


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = build(site)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return site


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join(10)


@pytest.fixture()
def open_page(browser, server):
    """Open a page of the site; any script error or request beyond 127.0.0.1 is recorded in ``page.errors``."""
    contexts = []

    def open_path(path: str):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on(
            "request",
            lambda r: r.url.startswith(server) or r.url.startswith("data:") or page.errors.append(r.url),
        )
        response = page.goto(f"{server}/{path}", wait_until="load")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        return page

    yield open_path
    for context in contexts:
        context.close()


def main_heading(page) -> str:
    """The page's h1, without its permalink mark."""
    return page.locator("article h1").first.inner_text().replace("\u00b6", "").strip()


def check_navigation(page) -> None:
    """The primary navigation is shown with the site's main entries."""
    sidebar = page.locator(".md-sidebar--primary")
    assert sidebar.is_visible()
    for entry in NAV:
        link = sidebar.locator(".md-nav__link", has_text=re.compile(f"^\\s*{re.escape(entry)}\\s*$"))
        assert link.count() >= 1, f"navigation entry {entry!r} missing"


def test_the_build_is_strict_and_offline(site):
    assert (site / "index.html").is_file() and (site / "cli" / "index.html").is_file()
    assert (site / "reference" / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", html), page


def test_a_broken_link_fails_the_build(tmp_path):
    """The strict build is a real gate: a page linking to a missing page stops it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[missing](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\ntheme:\n  name: material\n  font: false\n"
    )
    command = [str(MKDOCS) if MKDOCS.exists() else "mkdocs", "build", "--strict"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "nowhere.md" in result.stdout + result.stderr


def test_every_public_function_has_a_docstring_and_a_place_in_the_reference():
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: edgecnn\.(\w+)$", reference, re.MULTILINE))
    assert set(PUBLIC) <= documented, f"missing from docs/reference.md: {set(PUBLIC) - documented}"
    for name in documented:
        assert name in edgecnn.__all__, f"docs/reference.md documents edgecnn.{name}, which is not public"
        assert inspect.getdoc(getattr(edgecnn, name)), f"edgecnn.{name} has no docstring"


def test_home_page_renders_with_its_navigation(open_page):
    page = open_page("")
    assert main_heading(page) == "edgecnn"
    check_navigation(page)
    assert page.get_by_role("link", name="Getting started").first.is_visible()
    assert page.errors == []


def test_cli_reference_renders_every_command(open_page):
    page = open_page("cli/")
    assert main_heading(page) == "CLI reference"
    check_navigation(page)
    commands = page.locator("article h2").all_inner_texts()
    assert any(text.strip().startswith("edgecnn classify") for text in commands), commands
    assert page.locator("article table").filter(has_text="--sort-into").count() == 1
    # The page's table of contents lists the commands.
    assert page.locator(".md-sidebar--secondary .md-nav__link", has_text="edgecnn train").count() >= 1
    assert page.errors == []


def test_api_reference_renders_the_public_functions(open_page):
    page = open_page("reference/")
    assert main_heading(page) == "Python API reference"
    check_navigation(page)
    for name in ("load", "classify", "Model"):
        heading = page.locator(f"article [id='edgecnn.{name}']")
        assert heading.count() == 1 and name in heading.inner_text(), name
    # A docstring is shown, not only the signature.
    assert page.locator("article").get_by_text("An edgecnn .onnx", exact=False).count() >= 1
    assert page.errors == []


def test_search_works_offline(open_page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = open_page("")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    # The index builds in a worker (slow on a busy machine), and a query typed before it is ready can go
    # unanswered: the query is typed again until results show, for up to a minute.
    results = page.locator(".md-search-result__item")
    for _ in range(12):
        page.locator(".md-search__input").fill("")
        page.locator(".md-search__input").type("letterbox")
        try:
            results.first.wait_for(timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    assert results.count() >= 1
    assert page.errors == []
