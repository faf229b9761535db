"""GPU figures in one run: model-alone images/s of fp32, fp16 and int8 files on CPU, CUDA and TensorRT at batch
1, 8, 32, 128 and 256; the CUDA provider's options measured against each other; IO binding and CUDA graphs
against a plain run; TensorRT's engine build time cold and from its cache; parity of every GPU row with the
CPU; and `webcam` per-frame latency on CUDA against the CPU on a generated 640x480 video.

    python benchmarks/gpu.py                       # the CNN at its training default size (random weights:
                                                   # speed does not depend on them), as fp32, fp16 and int8
    python benchmarks/gpu.py --run runs/cats_dogs-cnn --vgg16   # a trained run, and VGG16 at 224 (weights none)

It runs on a machine without a GPU too: the CUDA and TensorRT rows then say "unavailable" with the reason, which
is how the script itself is checked (`--quick --out /tmp/gpu-check.json` keeps it short and out of results/).
Writes benchmarks/results/gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, write_result

PROVIDERS = ("cpu", "cuda", "tensorrt")
LABELS = ("circle", "square")


def export_models(folder: Path, arch: str, run: Path | None, images: Path) -> dict[str, Path]:
    """fp32, fp16 and int8 files of one model: a trained run when given, else a freshly built one."""
    from edgecnn.conversion.convert import export_all
    from edgecnn.core.contract import InputSpec, ModelContract

    calib = None  # a trained run calibrates on its own training images
    if run is None:
        from edgecnn.training.backbones import defaults
        from edgecnn.training.models import build_cnn, build_vgg16

        calib = images
        spec = InputSpec.square(defaults(arch)[0])  # the size `edgecnn train --arch ARCH` uses
        built = build_vgg16(spec, 2, weights="none") if arch == "vgg16" else build_cnn(spec, 2)
        run = folder / arch
        run.mkdir()
        built.model.save(run / "model.keras")
        contract = ModelContract(labels=LABELS, input=spec, arch=arch, normalization=built.normalization)
        (run / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    out = folder / f"{arch}.onnx"
    result = export_all(
        run, output=out, int8=True, fp16=True, calib_dir=calib, calib_size=64, accuracy_gate=False, force=True
    )
    return {"fp32": result.output, "fp16": result.fp16.output, "int8": result.int8.output}


def throughput(models: list[Path], providers: list[str], batches: list[int], runs: int) -> dict[str, Any]:
    from edgecnn.tools.bench import run_benchmark

    report = run_benchmark(models, providers, batches, runs=runs, warmup=max(2, runs // 5), peak_seconds=0)
    keep = ("model", "precision", "provider", "batch_size", "status", "reason", "median_ms", "p95_ms")
    rows = [{k: r[k] for k in (*keep, "images_per_second", "session")} for r in report["rows"]]
    return {"gpu": report["machine"].get("gpu"), "rows": rows}


def images_per_second(predictor: Any, batch: Any, runs: int) -> float:
    for _ in range(3):
        predictor.predict_batch(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict_batch(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def cuda_options(files: dict[str, Path], batch_size: int, runs: int) -> list[dict[str, Any]]:
    """The CUDA provider's options against its defaults, IO binding and CUDA graphs, per float precision."""
    import numpy as np

    from edgecnn.core.errors import EdgecnnError
    from edgecnn.runtime.cuda import CudaOptions
    from edgecnn.runtime.predictor import Predictor

    configs: list[tuple[str, dict[str, Any]]] = [
        ("defaults (IO binding on)", {}),
        ("plain run (IO binding off)", {"io_binding": False}),
        ("prefer_nhwc", {"cuda": CudaOptions(prefer_nhwc=True)}),
        ("cudnn_conv_algo_search HEURISTIC", {"cuda": CudaOptions(cudnn_conv_algo_search="HEURISTIC")}),
        ("cudnn_conv_use_max_workspace off", {"cuda": CudaOptions(cudnn_conv_use_max_workspace=False)}),
        ("use_tf32 off", {"cuda": CudaOptions(use_tf32=False)}),
        (
            "CUDA graph (pad to the batch)",
            {"cuda": CudaOptions(enable_cuda_graph=True), "pad_batch": batch_size},
        ),
    ]
    rows = []
    for precision in ("fp32", "fp16"):
        for name, options in configs:
            row: dict[str, Any] = {"precision": precision, "config": name, "batch_size": batch_size}
            try:
                with Predictor(files[precision], provider="cuda", **options) as p:
                    x = np.random.default_rng(0).integers(0, 256, (batch_size, *p.contract.input.shape))
                    row["images_per_second"] = round(images_per_second(p, x.astype(np.float32), runs), 1)
            except EdgecnnError as exc:
                row.update(status="unavailable", reason=str(exc))
                rows.append(row)
                return rows  # the same reason for every other configuration
            except Exception as exc:  # an option this build or GPU refuses: the row says so
                row.update(status="error", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            rows.append(row)
    return rows


def tensorrt_builds(files: dict[str, Path], folder: Path) -> list[dict[str, Any]]:
    """Seconds from session start to the first result: an empty engine cache, then the filled one."""
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.runtime.predictor import Predictor

    rows = []
    for precision, path in files.items():
        copy = Path(shutil.copy(path, folder / f"trt-{path.name}"))
        row: dict[str, Any] = {"precision": precision}
        try:
            for when in ("cold", "cached"):
                with Predictor(copy, provider="tensorrt") as p:
                    stated = p.info.options["tensorrt"]
                    row[f"{when}_s"] = stated["first_run_s"]
                    row[f"{when}_cache_hit"] = stated["cache_hit"]
        except EdgecnnError as exc:
            row.update(status="unavailable", reason=str(exc))
        rows.append(row)
    return rows


def parity(files: dict[str, Path], images: Path, providers: list[str]) -> list[dict[str, Any]]:
    """Each file on each GPU provider against the same file, and against fp32, on the CPU."""
    import numpy as np

    from edgecnn.conversion.convert import judge_parity
    from edgecnn.core.decode import iter_batches
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.runtime.predictor import Predictor

    with Predictor(files["fp32"], provider="cpu") as ref:
        samples = [(p, -1) for p in sorted(images.rglob("*.jpg"))]
        batches = [b for b, _, _, _ in iter_batches(samples, ref.contract, 32, workers=None) if len(b)]
        x = np.concatenate(batches)
        fp32_cpu = ref.predict_batch(x)
    rows = []
    for provider in (p for p in providers if p != "cpu"):
        for precision, path in files.items():
            row: dict[str, Any] = {"provider": provider, "precision": precision, "images": len(x)}
            try:
                with Predictor(path, provider=provider) as gpu, Predictor(path, provider="cpu") as cpu:
                    on_gpu = gpu.predict_batch(x)
                    same = judge_parity(cpu.predict_batch(x), on_gpu, "same file on the cpu")
                full = judge_parity(fp32_cpu, on_gpu, "fp32 on the cpu")
                row.update(
                    vs_same_file_cpu={
                        "max_abs_diff": same.max_abs_diff,
                        "top1_agreement": same.top1_agreement,
                    },
                    vs_fp32_cpu={"max_abs_diff": full.max_abs_diff, "top1_agreement": full.top1_agreement},
                )
            except EdgecnnError as exc:
                row.update(status="unavailable", reason=str(exc))
            rows.append(row)
    return rows


def webcam(files: dict[str, Path], video: Path, providers: list[str]) -> list[dict[str, Any]]:
    """Per-frame latency of the headless webcam loop: each provider with the file it should run."""
    from edgecnn.apps.capture import open_source
    from edgecnn.apps.webcam import WebcamConfig, run_webcam
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.runtime.predictor import Predictor

    choice = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16"), "tensorrt": ("fp16", "int8")}
    rows = []
    for provider in providers:
        for precision in choice[provider]:
            row: dict[str, Any] = {"provider": provider, "precision": precision, "video": "640x480 generated"}
            try:
                with (
                    Predictor(files[precision], provider=provider) as p,
                    tempfile.TemporaryDirectory() as tmp,
                ):
                    config = WebcamConfig(display=False, jsonl=Path(tmp) / "w.jsonl")
                    summary = run_webcam(open_source(source=str(video)), p, config).to_dict()
                stages = summary["stages_ms"]
                row.update(
                    frames=summary["frames_shown"],
                    fps=summary["fps"],
                    inference_ms=stages["inference"],
                    frame_ms={k: v for k, v in stages.items() if k != "inference"},
                )
            except EdgecnnError as exc:
                row.update(status="unavailable", reason=str(exc))
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="A trained CNN run folder [default: a freshly built CNN].")
    parser.add_argument("--vgg16", action="store_true", help="Also VGG16 at 224 px (weights none).")
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="Comma-separated providers.")
    parser.add_argument("--batch-sizes", default="1,8,32,128,256")
    parser.add_argument("--runs", type=int, default=50, help="Timed runs per row.")
    parser.add_argument("--quick", action="store_true", help="Batches 1,8, 5 runs, a short video: a check.")
    parser.add_argument("--out", type=Path, help="Write here instead of benchmarks/results/gpu.json.")
    args = parser.parse_args()
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    batches = [1, 8] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    runs = 5 if args.quick else args.runs

    from edgecnn.training.synthetic import write_dataset, write_video

    with tempfile.TemporaryDirectory(prefix="edgecnn-gpu-bench-") as scratch:
        folder = Path(scratch)
        images = folder / "images"
        write_dataset(images, classes=LABELS, per_class=32, size=128, seed=3)
        video = folder / "video.mp4"
        write_video(video, classes=LABELS, seconds_per_class=1.0 if args.quick else 10.0, fps=30)
        archs = {"cnn": export_models(folder, "cnn", args.run.resolve() if args.run else None, images)}
        if args.vgg16:
            archs["vgg16"] = export_models(folder, "vgg16", None, images)
        result: dict[str, Any] = {"providers": providers, "batch_sizes": batches, "runs": runs}
        for arch, files in archs.items():
            print(f"{arch}: throughput")
            part = {"throughput": throughput(list(files.values()), providers, batches, runs)}
            if "cuda" in providers:
                print(f"{arch}: CUDA options")
                part["cuda_options"] = cuda_options(files, 32 if not args.quick else 8, runs)
            if "tensorrt" in providers:
                print(f"{arch}: TensorRT engine builds")
                part["tensorrt_builds"] = tensorrt_builds(files, folder)
            print(f"{arch}: parity with the CPU")
            part["parity"] = parity(files, images, providers)
            if arch == "cnn":
                print(f"{arch}: webcam per-frame latency")
                part["webcam"] = webcam(files, video, providers)
            result[arch] = part
    if args.out is None:
        write_result("gpu", result)
        return
    payload = {"benchmark": "gpu", "machine": machine(), **result}
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
