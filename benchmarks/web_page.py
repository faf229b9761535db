"""Images per second of the web bundle's page (ONNX Runtime Web, WebAssembly backend, in headless Chromium)
against the Python CPU predictor, on the same machine, in one run.

Both sides start from decoded pixels of samples/ and do the model's resize and the inference, one image at a
time (the page: preprocess.mjs and session.run; Python: ``edgecnn.load(...).predict`` on the array). The page
runs cross-origin isolated (the bundle's serve.py), so WebAssembly uses up to 4 threads; Python's predictor
uses ONNX Runtime's default threads.

    python benchmarks/web_page.py [--model models/shapes-cnn.onnx] [--seconds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write_result

sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "shapes-cnn.onnx")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    model_path = args.model.resolve()

    from playwright.sync_api import sync_playwright
    from webpage import launch, open_page, serve_bundle, wait_until

    import edgecnn
    from edgecnn.core.imaging import decode_image
    from edgecnn.tools.deploy.web import ORT_WEB_VERSION, build_web_bundle

    samples = sorted(p for p in (REPO / "samples").iterdir() if p.suffix in (".jpg", ".png"))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_web_bundle(model_path, Path(tmp) / "site").path
        errors: list[str] = []
        with sync_playwright() as playwright, serve_bundle(bundle) as url:
            browser = launch(playwright)
            page = open_page(browser, url + "?backend=wasm", errors)
            page.set_input_files("#files", [str(f) for f in samples])
            wait_until(page, f"window.edgecnnResults.length >= {len(samples)}", timeout=120)
            backend = page.inner_text("#backend")
            web = page.evaluate(f"window.edgecnnPage.benchmark({args.seconds})")
            browser.close()
        if errors:
            raise SystemExit(f"page errors: {errors}")

    model = edgecnn.load(model_path, provider="cpu")
    arrays = [decode_image(f) for f in samples]
    model.predict(arrays[0])
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        model.predict(arrays[count % len(arrays)])
        count += 1
    elapsed = time.perf_counter() - start
    python_rate = count / elapsed
    result = {
        "model": model_path.name,
        "images": len(samples),
        "onnxruntime_web": ORT_WEB_VERSION,
        "browser_backend": backend,
        "page_images_per_s": round(web["imagesPerSecond"], 1),
        "python_cpu_images_per_s": round(python_rate, 1),
        "page_over_python": round(web["imagesPerSecond"] / python_rate, 3),
        "seconds_each": args.seconds,
    }
    print(result)
    write_result("web_page", result)


if __name__ == "__main__":
    main()
