"""`make bench`: the CPU benchmark suite, then docs/BENCHMARKS.md rewritten from the results.

Runs, in order: training throughput (pipeline against the seeds' way), int8 export figures, classify end to end,
webcam stage costs, and `edgecnn benchmark` rows, all against the CNN's cats_dogs run in runs/cats_dogs-cnn
(trained by `python benchmarks/train_accuracy.py ../shared/datasets/cats_dogs --out runs/cats_dogs-cnn -- --arch
cnn` if missing, which takes about 28 minutes and is not part of the 20-minute suite); then the shipped ImageNet
model on the cats_dogs photos, and `edgecnn serve` under load (about 4 minutes). Pass --with-training to include
the default training runs (EfficientNet-Lite0 on cats_dogs and horse_or_human) and the CNN's.

    python benchmarks/run_all.py [--with-training] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SHARED

PY = sys.executable
STEPS = {
    "train_throughput": [PY, "benchmarks/train_throughput.py", "--epochs", "2"],
    "export_int8": [PY, "benchmarks/export_int8.py", "--run", "runs/cats_dogs-cnn"],
    "classify_e2e": [PY, "benchmarks/classify_e2e.py", "--run", "runs/cats_dogs-cnn"],
    "webcam_stages": [PY, "benchmarks/webcam_stages.py", "--model", "runs/cats_dogs-cnn/model.int8.onnx"],
    "benchmark_cli": [PY, "benchmarks/benchmark_cli.py"],
    "imagenet_default": [PY, "benchmarks/imagenet_default.py"],
    "int8_cpu": [PY, "benchmarks/int8_cpu.py"],
    "serve_load": [PY, "benchmarks/serve_load.py"],
    "resize_area": [PY, "benchmarks/resize_area.py"],
}
TRAINING = {
    "train_cats_dogs": [
        PY,
        "benchmarks/train_accuracy.py",
        "../shared/datasets/cats_dogs",
        "--out",
        "runs/cats_dogs-lite0",
    ],
    "train_horse_or_human": [
        PY,
        "benchmarks/train_accuracy.py",
        "../shared/datasets/horse_or_human",
        "--out",
        "runs/horse_or_human-lite0",
    ],
}
#: The CNN from scratch on cats_dogs: the model the export, classify and webcam benchmarks measure.
CNN_RUN = {
    "train_cats_dogs_arch_cnn": [
        PY,
        "benchmarks/train_accuracy.py",
        "../shared/datasets/cats_dogs",
        "--out",
        "runs/cats_dogs-cnn",
        "--",
        "--arch",
        "cnn",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-training", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit("the real-photo datasets are not at ../shared/datasets: see benchmarks/README.md")
    steps = dict(TRAINING) if args.with_training else {}
    if args.with_training or not (REPO / "runs" / "cats_dogs-cnn" / "model.keras").exists():
        steps.update(CNN_RUN)
    steps.update(STEPS)
    if args.only:
        steps = {k: v for k, v in steps.items() if k in args.only}
    for name, cmd in steps.items():
        print(f"== {name}: {' '.join(Path(c).name if c == PY else c for c in cmd)}", flush=True)
        t = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        print(f"== {name} done in {time.perf_counter() - t:.0f} s", flush=True)
    subprocess.run([PY, "benchmarks/report.py"], cwd=REPO, check=True)


if __name__ == "__main__":
    main()
