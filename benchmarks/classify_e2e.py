"""classify end to end against its baselines, on the same photos and the same trained model, in one run.

For each model (the default CNN int8 and fp32 from a cats_dogs run; VGG16 int8 at 224 px, weights none):
- model alone: ONNX Runtime on already-decoded, already-resized batches (the ceiling for a model-bound run);
- decode ceiling: decoding and resizing only, with the same number of workers (the ceiling for a
  decode-bound run);
- edgecnn: `classify_paths` end to end, results written to a CSV file;
- Keras user: `image_dataset_from_directory` + `model.predict` with the .keras model.
Also the start-up time of `edgecnn classify one.jpg` (a fresh process, wall clock) against `python -c pass`.

    python benchmarks/classify_e2e.py --run runs/cats_dogs-cnn [--data ../shared/datasets/cats_dogs/val]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, dataset, vgg16_run, write_result


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(
    model_path: Path,
    keras_path: Path | None,
    files: list[Path],
    data: Path,
    workers: int,
    batch: int,
    repeat: int,
) -> dict:
    from edgecnn.apps.classify import ClassifyConfig, classify_paths
    from edgecnn.core.decode import decode_parallel
    from edgecnn.core.imaging import load_image
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider="cpu")
    spec = predictor.contract.input
    n = len(files)
    decoded = np.stack([load_image(f, spec) for f in files]).astype(np.float32)
    batches = [decoded[i : i + batch] for i in range(0, n, batch)]
    predictor.predict_batch(batches[0])

    def model_alone():
        for b in batches:
            predictor.predict_batch(b)

    def decode_only():
        for _ in decode_parallel(files, spec, workers=workers):
            pass

    def end_to_end():
        with tempfile.TemporaryDirectory() as tmp:
            summary = classify_paths(
                ClassifyConfig(
                    paths=[data],
                    recursive=True,
                    output=Path(tmp) / "r.csv",
                    batch_size=batch,
                    workers=workers,
                ),
                predictor,
            )
            assert summary.classified == n, summary.to_dict()

    out = {
        "model": model_path.name,
        "images": n,
        "model_alone_ips": n / best_of(model_alone, repeat),
        "decode_ceiling_ips": n / best_of(decode_only, repeat),
        "edgecnn_ips": n / best_of(end_to_end, repeat),
    }
    if keras_path is not None:
        from edgecnn.training.models import import_keras

        keras, _ = import_keras()
        model = keras.saving.load_model(str(keras_path), compile=False, safe_mode=True)

        def keras_user():
            ds = keras.utils.image_dataset_from_directory(
                str(data),
                image_size=(spec.height, spec.width),
                batch_size=batch,
                shuffle=False,
                label_mode=None,
                verbose=False,
            )
            model.predict(ds, verbose=0)

        keras_user()  # trace once
        out["keras_user_ips"] = n / best_of(keras_user, repeat)
        out["vs_keras_user"] = out["edgecnn_ips"] / out["keras_user_ips"]
    # Decoding and the model share the same CPU cores: run one after the other, they would reach this.
    out["serial_bound_ips"] = 1.0 / (1.0 / out["model_alone_ips"] + 1.0 / out["decode_ceiling_ips"])
    out["vs_serial_bound"] = out["edgecnn_ips"] / out["serial_bound_ips"]
    out["vs_model_alone"] = out["edgecnn_ips"] / out["model_alone_ips"]
    out["vs_decode_ceiling"] = out["edgecnn_ips"] / out["decode_ceiling_ips"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def startup(model: Path, image: Path, repeat: int = 5) -> dict:
    def wall(cmd):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    edgecnn = [
        str(Path(sys.executable).with_name("edgecnn")),
        "classify",
        str(image),
        "--model",
        str(model),
        "-q",
    ]
    python = [sys.executable, "-c", "pass"]
    e, p = wall(edgecnn), wall(python)
    return {"edgecnn_classify_one_image_s": round(e, 3), "python_noop_s": round(p, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/cats_dogs-cnn"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-vgg16", action="store_true")
    args = parser.parse_args()
    args = argparse.Namespace(**{k: v.resolve() if isinstance(v, Path) else v for k, v in vars(args).items()})
    from edgecnn.core.decode import default_workers

    data = args.data or dataset("cats_dogs") / "val"
    workers = args.workers or default_workers()
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = {"dataset": str(data.name), "workers": workers, "batch_size": args.batch_size, "models": {}}
    for name in ("model.int8.onnx", "model.onnx"):
        path = args.run / name
        if path.exists():
            out["models"][f"cnn-{name}"] = measure(
                path, args.run / "model.keras", files, data, workers, args.batch_size, args.repeat
            )
    if not args.skip_vgg16:
        with tempfile.TemporaryDirectory() as tmp:
            exported = vgg16_run(Path(tmp), data.parent / "train")
            int8, keras_path = exported.int8.output, Path(tmp) / "model.keras"
            out["models"]["vgg16-224-int8"] = measure(
                int8, keras_path, files, data, workers, args.batch_size, 1
            )
    model = args.run / "model.int8.onnx"
    out["startup"] = startup(model, files[0])
    write_result("classify_e2e", out)


if __name__ == "__main__":
    main()
