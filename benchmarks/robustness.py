"""Accuracy on photos the model never saw in this form, and what test-time augmentation buys, in one run.

For a trained run (default: runs/cats_dogs-cnn), on the cats_dogs validation photos:
- the views: the originals; downscaled to 128 px and to 64 px on their long side (Pillow, antialiased, saved
  as PNG so that only the resolution changes); re-encoded as JPEG quality 40 at their own size. The target
  of the accuracy issue: each view within 3 percentage points of the originals.
- the models: fp32 and int8 without and with `--tta flip` (the graph averages each image and its mirror),
  all exported here from the same model.keras; accuracy of each on each view, and latency per batch (1 and
  8, median of --runs) of each against the plain fp32 file, measured in this run.

    python benchmarks/robustness.py [--run runs/cats_dogs-cnn] [--runs 30]

Writes benchmarks/results/robustness.json and robustness.md (included in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import REPO, RESULTS, dataset, write_result
from PIL import Image

VIEWS = ("original", "long side 128 px", "long side 64 px", "JPEG quality 40")


def write_views(val: Path, out: Path) -> dict[str, Path]:
    """The degraded copies of every validation photo, one folder of class folders per view."""
    folders = {"original": val}
    for view in VIEWS[1:]:
        folders[view] = out / view.replace(" ", "_")
    for path in sorted(val.glob("*/*")):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        for view, folder in list(folders.items())[1:]:
            target = folder / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if view.startswith("long side"):
                side = int(view.split()[2])
                small = rgb.copy()
                small.thumbnail((side, side), Image.Resampling.LANCZOS)
                small.save(target.with_suffix(".png"))
            else:
                rgb.save(target, quality=40)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "cats_dogs-cnn")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--name", default="robustness", help="the result files: results/NAME.json and NAME.md"
    )
    args = parser.parse_args()

    import numpy as np

    import edgecnn
    from edgecnn.conversion.quantize import measure_latency

    data = dataset("cats_dogs")
    work = Path(tempfile.mkdtemp(prefix="edgecnn-robustness-"))
    try:
        views = write_views(data / "val", work / "views")
        models = {}
        for tta in ("none", "flip"):
            fp32 = work / f"model.{tta}.onnx"
            result = edgecnn.export(
                args.run,
                int8=True,
                output=fp32,
                tta=tta,
                eval_dir=data / "val",
                calib_dir=data / "train",
                max_accuracy_drop=100,  # measured here, not gated
            )
            models[("fp32", tta)] = fp32
            models[("int8", tta)] = result.int8.output
        accuracy = {}
        for (precision, tta), path in models.items():
            for view, folder in views.items():
                accuracy[f"{precision}/{tta}/{view}"] = edgecnn.evaluate(path, folder).metrics.accuracy
        size = edgecnn.load(models[("fp32", "none")]).contract.input.height
        rng = np.random.default_rng(0)
        latency = {}
        for batch in (1, 8):
            sample = rng.integers(0, 256, (batch, size, size, 3)).astype(np.float32)
            for (precision, tta), path in models.items():
                latency[f"{precision}/{tta}/batch {batch}"] = measure_latency(path, sample, runs=args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    run_name = args.run.name if args.run.is_absolute() else args.run.as_posix()
    rows = []
    for precision in ("fp32", "int8"):
        for tta in ("none", "flip"):
            base = accuracy[f"{precision}/{tta}/original"]
            cells = [f"{accuracy[f'{precision}/{tta}/{v}'] * 100:.2f}%" for v in VIEWS]
            drops = [f"{(base - accuracy[f'{precision}/{tta}/{v}']) * 100:+.2f}" for v in VIEWS[1:]]
            rows.append(f"| {precision} | {tta} | " + " | ".join(cells) + " | " + " / ".join(drops) + " |")
    lat_rows = []
    for batch in (1, 8):
        base = latency[f"fp32/none/batch {batch}"]
        for precision in ("fp32", "int8"):
            for tta in ("none", "flip"):
                ms = latency[f"{precision}/{tta}/batch {batch}"]
                lat_rows.append(f"| {batch} | {precision} | {tta} | {ms:.2f} ms | {ms / base:.2f}x |")
    markdown = "\n".join(
        [
            "## Robustness and test-time augmentation\n",
            f"`python benchmarks/robustness.py --run {run_name}`: the run's model.keras exported four ways "
            "(fp32 and int8, without and with `--tta flip`) in one run, each evaluated on the cats_dogs validation "
            "photos as they are and degraded (downscaled with Pillow's Lanczos filter and saved as PNG; re-encoded as "
            "JPEG quality 40). Target: each degraded view within 3 pp of the originals.\n",
            "| precision | tta | " + " | ".join(VIEWS) + " | drop 128 / 64 / q40 (pp) |",
            "|---|---|" + "---|" * len(VIEWS) + "---|",
            *rows,
            "",
            "Latency per batch (ONNX Runtime, CPU, median of "
            f"{args.runs} runs), against plain fp32 at the same batch:\n",
            "| batch | precision | tta | latency | vs fp32 |",
            "|---|---|---|---|---|",
            *lat_rows,
        ]
    )
    write_result(
        args.name,
        {"run": run_name, "accuracy": accuracy, "latency_ms": latency},
    )
    (RESULTS / f"{args.name}.md").write_text(markdown + "\n", encoding="utf-8")
    print(markdown)


if __name__ == "__main__":
    main()
