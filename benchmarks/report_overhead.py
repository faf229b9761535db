"""What `classify --report` costs, and how fast its page opens, in one run.

- overhead: `classify_paths` over the cats_dogs val folder (results to a CSV file) with and without the report
  (thumbnails written as batches finish, the page rendered at the end), the same predictor, alternating,
  --repeat runs each: the ratio of the best runs (the least disturbed by other work on the machine), of the
  medians, and of the process CPU time; the same pair through the `edgecnn classify` command (fresh
  processes, wall clock, start-up included). Target: the report adds at most 10%.
- page load: a report of 20,000 images (the val folder's files 20 times over, through symbolic links in a
  scratch folder), opened from file:// in headless Chromium (Debian's `chromium`, driven by Playwright): the
  time from navigation start to the first eight thumbnails decoded on screen, measured in the browser with
  performance.now(). Target: under 2 s.
- --screenshots RUN DATA: the three reports of a run (train's report.html; evaluate of its int8 model on
  DATA/val against its fp32 model; classify of DATA/test) as PNG files in docs/images/.

The model is runs/cats_dogs-cnn/model.int8.onnx when that run exists (--run); otherwise the default CNN at
96 px, untrained (a report's cost does not depend on the weights), exported to int8 on cats_dogs images.

    python benchmarks/report_overhead.py [--run runs/cats_dogs-cnn] [--repeat 3] [--images 20000]
    python benchmarks/report_overhead.py --screenshots RUN_DIR DATA_DIR
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, dataset, write_result

FIRST_THUMBNAILS = """() => {
  const imgs = document.querySelectorAll(".card img");
  if (imgs.length < 8) return false;
  for (let i = 0; i < 8; i++) if (!imgs[i].complete || !imgs[i].naturalWidth) return false;
  return performance.now();
}"""


def cats_dogs_model(run: Path, folder: Path) -> tuple[Path, str]:
    """The int8 model of ``run``, or an untrained default CNN (96 px) exported to int8 into ``folder``."""
    if (run / "model.int8.onnx").exists():
        return run / "model.int8.onnx", f"{run.name}/model.int8.onnx (trained)"
    from edgecnn.conversion.convert import export_all
    from edgecnn.core.contract import InputSpec, ModelContract
    from edgecnn.training.models import build_cnn

    spec = InputSpec.square(96)
    built = build_cnn(spec, 2)
    built.model.save(folder / "model.keras")
    contract = ModelContract(
        labels=("cats", "dogs"), input=spec, arch="cnn", normalization=built.normalization
    )
    (folder / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    data = dataset("cats_dogs")
    result = export_all(
        folder,
        int8=True,
        calib_dir=data / "train",
        calib_size=64,
        eval_dir=data / "val",
        max_accuracy_drop=100,
    )
    return result.int8.output, "default CNN 96 px int8, untrained weights"


def classify_once(
    model_path: Path, data: Path, report: Path | None, scratch: Path
) -> tuple[float, float, int]:
    """Wall and CPU seconds (all threads of this process) of one in-process classify run over ``data``
    (with the report written when given), and the number of images classified."""
    from edgecnn.apps.classify import ClassifyConfig, classify_paths
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider="cpu")
    output = scratch / "results.csv"
    output.unlink(missing_ok=True)
    config = ClassifyConfig(paths=[data], recursive=True, output=output, force=True)
    if report is not None:
        shutil.rmtree(report.parent, ignore_errors=True)  # a first report, not one replacing another
    start, cpu = time.perf_counter(), time.process_time()
    if report is None:
        summary = classify_paths(config, predictor)
    else:
        from edgecnn.reports.classify import ClassifyReport

        spec = predictor.contract.input
        page = ClassifyReport(report, predictor.path.name, predictor.labels, (spec.height, spec.width))
        summary = classify_paths(config, page.tap(predictor), on_rows=page.add_rows)
        page.finish(summary, output)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    predictor.close()
    return seconds, cpu, summary.classified


def command_once(model_path: Path, data: Path, report: Path | None, scratch: Path) -> float:
    """Wall seconds of one `edgecnn classify` process (start-up included)."""
    edgecnn = str(Path(sys.executable).with_name("edgecnn"))
    cmd = [edgecnn, "classify", str(data), "-r", "--model", str(model_path), "-o", str(scratch / "cli.csv")]
    cmd += ["--force", "-q"] + (["--report", str(report)] if report is not None else [])
    if report is not None:
        shutil.rmtree(report.parent, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def overhead(model_path: Path, data: Path, repeat: int, scratch: Path) -> dict:
    report = scratch / "overhead" / "report.html"
    classify_once(model_path, data, None, scratch)  # warm the page cache and the session once
    plain, with_report, cli_plain, cli_report = [], [], [], []
    cpu_plain, cpu_report = [], []
    images = 0
    for _ in range(repeat):  # alternating, so that a slow spell of a shared machine hits both
        seconds, cpu, images = classify_once(model_path, data, None, scratch)
        plain.append(seconds)
        cpu_plain.append(cpu)
        seconds, cpu, _ = classify_once(model_path, data, report, scratch)
        with_report.append(seconds)
        cpu_report.append(cpu)
        cli_plain.append(command_once(model_path, data, None, scratch))
        cli_report.append(command_once(model_path, data, report, scratch))

    def ratio(pick, base: list[float], other: list[float]) -> float:
        return round(pick(other) / pick(base), 3)

    out = {
        "images": images,
        "repeat": repeat,
        "classify_seconds": [round(s, 3) for s in plain],
        "classify_with_report_seconds": [round(s, 3) for s in with_report],
        # The best of the runs is the least disturbed by other work on the machine (as classify_e2e.py).
        "ratio_best": ratio(min, plain, with_report),
        "ratio_median": ratio(statistics.median, plain, with_report),
        "cpu_seconds": [round(s, 3) for s in cpu_plain],
        "cpu_with_report_seconds": [round(s, 3) for s in cpu_report],
        "cpu_ratio_median": ratio(statistics.median, cpu_plain, cpu_report),
        "cli_seconds": [round(s, 3) for s in cli_plain],
        "cli_with_report_seconds": [round(s, 3) for s in cli_report],
        "cli_ratio_best": ratio(min, cli_plain, cli_report),
        "cli_ratio_median": ratio(statistics.median, cli_plain, cli_report),
        "atlases_bytes": sum(f.stat().st_size for f in (scratch / "overhead" / "report_files").glob("*.jpg")),
    }
    print(json.dumps(out))
    return out


def big_report(model_path: Path, data: Path, images: int, scratch: Path) -> tuple[Path, dict]:
    """A classify report of ``images`` files: the val photos linked into enough sub-folders."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    folder = scratch / "many"
    for i in range(images):
        sub = folder / f"copy{i // len(files):03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / files[i % len(files)].name).symlink_to(files[i % len(files)])
    report = scratch / "big" / "report.html"
    seconds, _, classified = classify_once(model_path, folder, report, scratch)
    atlases = list((scratch / "big" / "report_files").glob("*.jpg"))
    facts = {
        "images": classified,
        "classify_with_report_seconds": round(seconds, 2),
        "html_bytes": report.stat().st_size,
        "atlases": len(atlases),
        "atlases_bytes": sum(f.stat().st_size for f in atlases),
    }
    return report, facts


def launch_browser(playwright):
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])


def page_load(report: Path, loads: int) -> dict:
    from playwright.sync_api import sync_playwright

    first, dom, cards = [], [], []
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(report.resolve().as_uri(), wait_until="commit")
            first.append(page.wait_for_function(FIRST_THUMBNAILS, polling="raf", timeout=60_000).json_value())
            timing = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
            dom.append(timing["domContentLoadedEventEnd"])
            cards.append(page.evaluate("() => document.querySelectorAll('.card').length"))
            context.close()
        version = browser.version
        browser.close()
    out = {
        "browser": f"chromium {version} (headless)",
        "loads": loads,
        "first_thumbnails_ms": [round(v) for v in first],
        "first_thumbnails_ms_median": round(statistics.median(first)),
        "dom_content_loaded_ms": [round(v) for v in dom],
        "cards_in_dom_at_first_thumbnails": cards,
        "target_ms": 2000,
    }
    print(json.dumps(out))
    return out


def screenshots(run: Path, data: Path, scratch: Path) -> None:
    """docs/images/{classify,evaluate,train}-report.png from a run and its data (train/, val/, test/)."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    import edgecnn

    evaluate = scratch / "shots" / "evaluate.html"
    classify = scratch / "shots" / "classify.html"
    edgecnn.evaluate(run / "model.int8.onnx", data / "val", report=evaluate, compare=run / "model.onnx")
    edgecnn.classify(data / "test", model=run / "model.int8.onnx", recursive=True, top_k=2, report=classify)
    images = REPO / "docs" / "images"
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for name, page_path, click in (
            ("classify", classify, None),
            ("evaluate", evaluate, "#confusion .cell:not(.diagonal)"),
            ("train", run / "report.html", None),
        ):
            page = browser.new_page(viewport={"width": 1200, "height": 1500})
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("body[data-ready=true]")
            if click:
                cells = page.locator(click)
                counts = [int(cells.nth(i).inner_text()) for i in range(cells.count())]
                cells.nth(counts.index(max(counts))).click()  # the largest confusion
            page.wait_for_function(  # the thumbnails on screen (those below load lazily, when scrolled to)
                "() => [...document.images].every(i => i.complete || i.getBoundingClientRect().top > innerHeight)"
            )
            shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
            shot = shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            shot.save(images / f"{name}-report.png", optimize=True)  # 256 colours: a quarter of the bytes
            print(f"wrote docs/images/{name}-report.png")
            page.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cats_dogs-cnn"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--screenshots", nargs=2, type=Path, metavar=("RUN_DIR", "DATA_DIR"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.screenshots:
            screenshots(*args.screenshots, scratch)
            return
        data = args.data or dataset("cats_dogs") / "val"
        model_path, model_note = cats_dogs_model(args.run, scratch)
        out = {
            "dataset": f"{data.parent.name}/{data.name}",
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "model": model_note,
            "overhead": overhead(model_path, data, args.repeat, scratch),
        }
        report, facts = big_report(model_path, data, args.images, scratch)
        out["page"] = {**facts, **page_load(report, args.loads)}
    out["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]  # a shared machine shows here
    write_result("report_overhead", out)


if __name__ == "__main__":
    main()
