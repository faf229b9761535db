"""The shipped ImageNet model on real photos: how often its top-1 (and top-5) falls in the right ImageNet classes
(cats: 281-285, dogs: 151-268) on the cats_dogs validation photos, and `edgecnn classify` on those photos in a
fresh process against the shapes model, the model it replaced as the default.

    python benchmarks/imagenet_default.py [--data ../shared/datasets/cats_dogs/val] [--fp32 build/imagenet/imagenet-lite0.onnx]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, SHARED, write_result

from edgecnn.core.shipped import SHAPES_MODEL_NAME, default_model_path
from edgecnn.tools.imagenet import labelled_photos, score_superclasses


def classify_fresh(model: Path, data: Path, out: Path) -> dict:
    """`edgecnn classify DATA --model MODEL` in a fresh process: wall time and its own images/s."""
    cmd = [sys.executable, "-m", "edgecnn", "classify", str(data), "--recursive", "--model", str(model)]
    cmd += ["--provider", "cpu", "--json", "-o", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    summary = json.loads(done.stdout)
    return {
        "wall_seconds": round(wall, 2),
        "classified": summary["classified"],
        "images_per_second_wall": round(summary["classified"] / wall, 1),
        "images_per_second": summary.get("images_per_second"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cats_dogs" / "val")
    parser.add_argument("--fp32", type=Path, default=None, help="the fp32 build of the same model, if kept")
    args = parser.parse_args()
    model = default_model_path()
    assert model is not None and "imagenet" in model.name, model
    photos = labelled_photos(args.data)
    scores = {"shipped": score_superclasses(model, photos)}
    if args.fp32 is not None:
        scores["fp32"] = score_superclasses(args.fp32, photos)
    shapes = REPO / "models" / SHAPES_MODEL_NAME
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "imagenet": classify_fresh(model, args.data, Path(tmp) / "imagenet.csv"),
            "shapes": classify_fresh(shapes, args.data, Path(tmp) / "shapes.csv"),
        }
    result = {
        "model": model.name,
        "data": str(args.data),
        "images": len(photos),
        "superclasses": {
            name: {
                "top1": round(s.top1, 4),
                "top5": round(s.top5, 4),
                "per_folder": s.per_folder,
                "model_alone_images_per_second": round(s.images_per_second, 1),
            }
            for name, s in scores.items()
        },
        "classify": runs,
        "classify_ratio_imagenet_to_shapes": round(
            runs["imagenet"]["images_per_second_wall"] / runs["shapes"]["images_per_second_wall"], 3
        ),
    }
    if "fp32" in scores:
        agree = (scores["fp32"].predictions == scores["shipped"].predictions).mean()
        result["top1_agreement_with_fp32"] = round(float(agree), 4)
    write_result("imagenet_default", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
