"""Accuracy and wall time of `edgecnn train DATA` with default settings (a fresh process, timed end to end).

python benchmarks/train_accuracy.py ../shared/datasets/cats_dogs [--out runs/cats_dogs-cnn] [-- extra train options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import train_fresh, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]  # extra `edgecnn train` options, after --
    name = args.data.resolve().name
    out = args.out or Path("runs") / f"{name}-{'-'.join(a.strip('-') for a in args.extra) or 'default'}"
    wall, report = train_fresh(args.data, out, args.extra)
    write_result(
        f"train_{name}" + ("" if not args.extra else "_" + "_".join(a.strip("-") for a in args.extra)),
        {
            "dataset": name,
            "train_command": "edgecnn train "
            + " ".join([f"../shared/datasets/{name}", "--out", str(out), "--quiet", *args.extra]),
            "wall_seconds": round(wall, 1),
            "val_accuracy": report["val_accuracy"],
            "val_images": report["data"]["val_images"],
            "train_images": report["data"]["train_images"],
            "epochs_run": report["epochs_run"],
            "best_epoch": report["best_epoch"],
            "train_images_per_second": report["train_images_per_second"],
            "per_class": report["per_class"],
            "arch": report["arch"],
            "img_size": report["img_size"],
            "skipped_files": len(report["skipped"]),
        },
    )


if __name__ == "__main__":
    main()
