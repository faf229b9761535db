"""int8 export figures: accuracy, agreement, size and CPU speed of fp32 against int8, in one run.

1. The default CNN trained on cats_dogs (a run folder from `edgecnn train`): export fp32 and int8 with
   calibration on its training images and evaluation on its validation images (exactly what
   `edgecnn export RUN --int8 --eval DATA/val` does), then time both with ONNX Runtime on the CPU at batch 8.
2. VGG16 at 224x224 (weights none: the speed does not depend on the weights): Keras, ONNX Runtime fp32 and
   int8 at batch 8 on the same images.

    python benchmarks/export_int8.py --run runs/cats_dogs-cnn [--data ../shared/datasets/cats_dogs] [--skip-vgg16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import dataset, vgg16_run, write_result


def latency(fn, batch, runs=15):
    fn(batch)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cnn_figures(run: Path, data: Path, calib_size: int) -> dict:
    from edgecnn.conversion.convert import export_all

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cnn.onnx"
        result = export_all(
            run, output=out, int8=True, eval_dir=data / "val", calib_size=calib_size, force=True
        )
        q = result.int8
        return {
            "run": str(run),
            "parity_max_abs_diff": result.parity.max_abs_diff,
            "parity_images": result.parity.images,
            **q.to_dict(),
        }


def vgg16_figures(data: Path, batch_size: int, calib_size: int) -> dict:
    from edgecnn.core.dataset import list_class_folder
    from edgecnn.core.decode import iter_batches
    from edgecnn.runtime.predictor import Predictor

    samples = list_class_folder(data / "val").samples
    with tempfile.TemporaryDirectory() as tmp:
        result = vgg16_run(Path(tmp), data / "train", calib_size)
        contract = result.contract
        from edgecnn.training.keras_io import load_keras_model

        keras_model = load_keras_model(Path(tmp) / "model.keras")
        batch = next(b for b, _, _, _ in iter_batches(samples[:batch_size], contract, batch_size, None))
        fp32 = Predictor(result.output, provider="cpu")
        int8 = Predictor(result.int8.output, provider="cpu")
        keras_s = latency(lambda x: keras_model.predict_on_batch(x), batch, runs=5)
        fp32_s = latency(fp32.predict_batch, batch, runs=8)
        int8_s = latency(int8.predict_batch, batch, runs=8)
        agree = float((fp32.predict_batch(batch).argmax(1) == int8.predict_batch(batch).argmax(1)).mean())
        return {
            "batch_size": batch_size,
            "keras_seconds": round(keras_s, 4),
            "onnx_fp32_seconds": round(fp32_s, 4),
            "onnx_int8_seconds": round(int8_s, 4),
            "int8_speedup_vs_fp32": round(fp32_s / int8_s, 3),
            "fp32_speedup_vs_keras": round(keras_s / fp32_s, 3),
            "fp32_bytes": result.size_bytes,
            "int8_bytes": result.int8.int8_size,
            "size_ratio": round(result.int8.size_ratio, 4),
            "calib_images": result.int8.calib_images,
            "top1_agreement_on_batch": agree,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cats_dogs-cnn"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--skip-vgg16", action="store_true")
    args = parser.parse_args()
    args = argparse.Namespace(**{k: v.resolve() if isinstance(v, Path) else v for k, v in vars(args).items()})
    data = args.data or dataset("cats_dogs")
    out = {"dataset": "cats_dogs", "cnn": cnn_figures(args.run, data, args.calib_size)}
    if not args.skip_vgg16:
        out["vgg16_224"] = vgg16_figures(data, 8, 64)
    write_result("export_int8", out)


if __name__ == "__main__":
    main()
