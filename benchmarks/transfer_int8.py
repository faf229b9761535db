"""int8 of a transfer-learning run: accuracy, agreement, size and CPU latency of fp32 against int8, in one run.

Exactly what `edgecnn export RUN --int8 --eval DATA/val` does (calibrated on 300 of the run's training images,
the accuracy gate on the validation images), for the default EfficientNet-Lite0 runs of
`train_accuracy.py`; latency with ONNX Runtime on the CPU at batch 8, fp32 and int8 in the same process.

    python benchmarks/transfer_int8.py --run runs/cats_dogs-lite0 --data ../shared/datasets/cats_dogs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_result
from export_int8 import cnn_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--calib-size", type=int, default=300)
    args = parser.parse_args()
    arch = json.loads((args.run / "report.json").read_text())["arch"]
    figures = cnn_figures(args.run, args.data, args.calib_size)
    dataset = args.data.resolve().name
    write_result(f"transfer_int8_{dataset}_{arch}", {"dataset": dataset, "arch": arch, **figures})


if __name__ == "__main__":
    main()
