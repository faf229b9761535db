"""`edgecnn benchmark` on the cats_dogs CNN (fp32, int8) and VGG16 at 224 px (fp32, int8), with the roofline.

python benchmarks/benchmark_cli.py [--run runs/cats_dogs-cnn]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import REPO, dataset, vgg16_run, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "cats_dogs-cnn")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from edgecnn.tools.bench import run_benchmark

    data = dataset("cats_dogs")
    with tempfile.TemporaryDirectory() as tmp:
        exported = vgg16_run(Path(tmp), data / "train")
        vgg_fp32, vgg_int8 = exported.output, exported.int8.output
        cnn = run_benchmark(
            [args.run.resolve() / "model.onnx", args.run.resolve() / "model.int8.onnx"],
            ["cpu", "cuda"],
            [1, 8, 32],
            runs=args.runs,
            warmup=3,
            data_dir=data / "val",
        )
        vgg = run_benchmark([vgg_fp32, vgg_int8], ["cpu"], [8], runs=max(5, args.runs // 4), warmup=2)
    rows = cnn["rows"] + [dict(r, model="vgg16-224/" + Path(r["model"]).name) for r in vgg["rows"]]
    report = dict(cnn, rows=rows, vgg16=vgg["models"], vgg16_peaks=vgg["peaks"])
    write_result("benchmark_cli", {"report": report})


if __name__ == "__main__":
    main()
