"""`edgecnn benchmark` on the cats_dogs CNN (fp32, int8) and VGG16 at 224 px (fp32, int8), with the roofline.

    python benchmarks/benchmark_cli.py [--run runs/cats_dogs-cnn]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import REPO, dataset, write_result


def vgg16_models(tmp: Path, calib: Path) -> tuple[Path, Path]:
    from edgecnn.contract import InputSpec, ModelContract
    from edgecnn.export import export_all
    from edgecnn.models import build_vgg16

    spec = InputSpec.square(224)
    built = build_vgg16(spec, 2, weights="none")
    built.model.save(tmp / "model.keras")
    contract = ModelContract(labels=("cats", "dogs"), input=spec, arch="vgg16", normalization=built.normalization)
    (tmp / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    result = export_all(tmp, int8=True, calib_dir=calib, calib_size=64, force=True)
    return result.output, result.int8.output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "cats_dogs-cnn")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from edgecnn.bench import run_benchmark

    data = dataset("cats_dogs")
    with tempfile.TemporaryDirectory() as tmp:
        vgg_fp32, vgg_int8 = vgg16_models(Path(tmp), data / "train")
        cnn = run_benchmark([args.run.resolve() / "model.onnx", args.run.resolve() / "model.int8.onnx"], ["cpu", "cuda"], [1, 8, 32], runs=args.runs, warmup=3, data_dir=data / "val")
        vgg = run_benchmark([vgg_fp32, vgg_int8], ["cpu"], [8], runs=max(5, args.runs // 4), warmup=2)
    rows = cnn["rows"] + [dict(r, model="vgg16-224 " + r["model"]) for r in vgg["rows"]]
    report = dict(cnn, rows=rows, vgg16=vgg["models"], vgg16_peaks=vgg["peaks"])
    write_result("benchmark_cli", {"report": report})


if __name__ == "__main__":
    main()
