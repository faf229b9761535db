"""The web bundle in Debian's Chromium (Playwright): served from 127.0.0.1 by the bundle's serve.py, the fake
camera playing frames of samples/shapes.mp4, and samples/ through the page against ``edgecnn.load().predict``.

Marked ``deploy``: the bundle needs the onnxruntime-web npm tarball (downloaded once into ~/.cache/edgecnn,
or named by EDGECNN_ORT_WEB). ``make deploy-check-web`` runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from webpage import chromium_path, launch, open_page, serve_bundle, wait_until, write_y4m

import edgecnn
from edgecnn.tools.deploy.web import build_web_bundle

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".jpg", ".png"))
SCREENSHOT = REPO / "docs" / "images" / "deploy-web.png"


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    if chromium_path() is None:
        pytest.skip("no chromium browser (apt-get install chromium)")
    with sync_api.sync_playwright() as manager:
        yield manager


def page_probabilities(playwright, bundle: Path, files: list[Path], query: str = "") -> tuple[list, str]:
    errors: list[str] = []
    browser = launch(playwright)
    try:
        with serve_bundle(bundle) as url:
            page = open_page(browser, url + query, errors)
            assert page.get_attribute("body", "data-ready") == "true", page.inner_text("#status")
            page.set_input_files("#files", [str(f) for f in files])
            assert wait_until(page, f"window.edgecnnResults.length >= {len(files)}", timeout=120)
            results = page.evaluate("window.edgecnnResults")
            backend = page.inner_text("#backend")
    finally:
        browser.close()
    assert not errors, errors
    assert [r["name"] for r in results] == [f.name for f in files]
    return [r["probabilities"] for r in results], backend


@pytest.mark.parametrize("name", ["shapes-cnn.onnx", "shapes-cnn.int8.onnx"])
def test_samples_agree_with_the_python_predictor(playwright, tmp_path, name):
    bundle = build_web_bundle(REPO / "models" / name, tmp_path / "site").path
    page, backend = page_probabilities(playwright, bundle, SAMPLES, "?backend=wasm")
    assert backend.startswith("WebAssembly, SIMD")
    model = edgecnn.load(REPO / "models" / name)
    python = np.array([list(model.predict(str(f)).probabilities.values()) for f in SAMPLES])
    page_array = np.array(page)
    assert (page_array.argmax(1) == python.argmax(1)).all()  # 100% top-1 on samples/
    diff = np.abs(page_array - python).max(axis=1)
    png = np.array([f.suffix == ".png" for f in SAMPLES])
    print(
        f"page vs Python, {name}: {len(SAMPLES)}/{len(SAMPLES)} top-1, largest difference {diff.max():.2e} (PNGs {diff[png].max():.2e})"
    )
    # Python decodes these 160 px JPEGs at half scale (Pillow's DCT draft mode); the browser decodes them
    # whole. Measured: 0.019 (fp32) at most, on circle-2.jpg. The PNGs reach the model as the same bytes.
    assert diff.max() < 0.05
    assert diff[png].max() < 1e-5


def test_imagenet_int8_runs_in_the_page(playwright, tmp_path):
    """The ImageNet default (QDQ int8, crop + cubic): ORT Web runs its ops, and the top-1 agrees."""
    bundle = build_web_bundle(REPO / "models" / "imagenet-lite0.int8.onnx", tmp_path / "site").path
    page, _ = page_probabilities(playwright, bundle, SAMPLES[:3], "?backend=wasm")
    model = edgecnn.load(REPO / "models" / "imagenet-lite0.int8.onnx")
    python = np.array([list(model.predict(str(f)).probabilities.values()) for f in SAMPLES[:3]])
    assert (np.array(page).argmax(1) == python.argmax(1)).all()
    assert np.abs(np.array(page) - python).max() < 0.1


def test_fake_camera_shows_predictions_and_fps(playwright, tmp_path):
    bundle = build_web_bundle(REPO / "models" / "shapes-cnn.onnx", tmp_path / "site").path
    y4m = write_y4m(REPO / "samples" / "shapes.mp4", tmp_path / "camera.y4m")
    errors: list[str] = []
    browser = launch(playwright, y4m)
    try:
        with serve_bundle(bundle) as url:
            page = open_page(browser, url, errors)
            assert page.evaluate("self.crossOriginIsolated")  # serve.py's headers: WebAssembly threads
            page.click("#start-camera")
            assert wait_until(page, "Number(document.body.dataset.frames || 0) >= 30", timeout=120)
            top = page.locator("#top li").all_text_contents()
            assert len(top) == 3 and top[0].split()[0] in {"circle", "square", "triangle"}
            assert float(page.inner_text("#fps")) > 1
            assert page.inner_text("#source") == "camera"
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
    finally:
        browser.close()
    assert not errors, errors


def test_page_runs_without_isolation_headers(playwright, tmp_path):
    """Any static server: without COOP/COEP the page still runs, on one WebAssembly thread."""
    bundle = build_web_bundle(REPO / "models" / "shapes-cnn.onnx", tmp_path / "site").path
    errors: list[str] = []
    browser = launch(playwright)
    try:
        with serve_bundle(bundle, isolated=False) as url:
            page = open_page(browser, url + "?backend=wasm", errors)
            assert page.inner_text("#backend") == "WebAssembly, SIMD, 1 thread (not cross-origin isolated)"
    finally:
        browser.close()
    assert not errors, errors
