"""Edge backbones side by side: ONNX file size and CPU latency per image, fp32 and int8, batch 1 and 8.

Every ``--arch`` is built at its default input size with weights none (size and speed do not depend on the
weights; ImageNet weights cannot be downloaded here): the CNN from scratch (112 px, 32 base filters), MobileNetV3
Small and Large, EfficientNet-B0 and VGG16 (224 px). Each is saved as a run folder and exported the way
`edgecnn export RUN --int8 --no-accuracy-gate --calib DATA/train --calib-size N` does (fp32 through the parity
gate, int8 QDQ calibrated on N cats_dogs training photos; read in place, never copied). Latency is measured
with edgecnn's Predictor (ONNX Runtime, CPU provider, its default threads) on real cats_dogs validation photos:
each (model, precision, batch) in several interleaved rounds, each round the median of several runs after a
warm-up, the figure the median of the rounds. Ratios compare with VGG16 and with the CNN from scratch measured in
the same run, at the same precision and batch.

    python benchmarks/backbones.py [--data ../shared/datasets/cats_dogs] [--calib-size 16] [--rounds 5]
    python benchmarks/backbones.py --render     # rewrite results/backbones.md from results/backbones.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, SHARED, dataset, write_result

ARCHS = (
    "cnn",
    "mobilenetv3small",
    "mobilenetv3large",
    "efficientnetb0",
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "vgg16",
)
PRECISIONS = ("fp32", "int8")
BATCHES = (1, 8)
MIN_ROUND_SECONDS = 1.0  # runs per round: enough to fill this, between 3 and 25


def build_and_export(arch: str, folder: Path, data: Path, calib_size: int) -> dict[str, Any]:
    """Build ``arch`` (weights none) at its default size, save it as a run folder, export fp32 and int8."""
    import keras

    from edgecnn.conversion.convert import export_all
    from edgecnn.core.contract import InputSpec, ModelContract
    from edgecnn.training.backbones import build_backbone, defaults
    from edgecnn.training.models import build_cnn

    size, _ = defaults(arch)
    spec = InputSpec.square(size)
    built = build_cnn(spec, 2) if arch == "cnn" else build_backbone(arch, spec, 2, weights="none")
    folder.mkdir(parents=True)
    built.model.save(folder / "model.keras")
    contract = ModelContract(
        labels=("cats", "dogs"), input=spec, arch=arch, normalization=built.normalization
    )
    (folder / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    parameters = int(built.model.count_params())
    del built
    keras.backend.clear_session()
    t = time.perf_counter()
    result = export_all(
        folder, int8=True, calib_dir=data / "train", calib_size=calib_size, force=True, accuracy_gate=False
    )
    q = result.int8
    return {
        "arch": arch,
        "input": f"{size}x{size}x3",
        "parameters": parameters,
        "fp32_path": str(result.output),
        "int8_path": str(q.output),
        "fp32_bytes": result.size_bytes,
        "int8_bytes": q.int8_size,
        "parity_max_abs_diff": result.parity.max_abs_diff,
        "parity_images": result.parity.images,
        "calib_images": q.calib_images,
        "int8_fallback": q.to_dict().get("fallback"),
        "export_seconds": round(time.perf_counter() - t, 1),
    }


def time_batch(predictor: Any, batch: np.ndarray) -> float:
    """Median seconds of ``predictor.predict_batch(batch)`` over enough runs to fill a round."""
    predictor.predict_batch(batch)  # warm-up
    t = time.perf_counter()
    predictor.predict_batch(batch)
    first = time.perf_counter() - t
    times = [first]
    for _ in range(min(24, max(2, int(MIN_ROUND_SECONDS / max(first, 1e-6))))):
        t = time.perf_counter()
        predictor.predict_batch(batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(models: dict[str, dict[str, Any]], data: Path, rounds: int) -> dict[str, Any]:
    """Per-image latency (ms) of every model, precision and batch: the median of ``rounds`` interleaved rounds."""
    from edgecnn.core.dataset import list_class_folder
    from edgecnn.core.decode import iter_batches
    from edgecnn.core.onnxfile import load_onnx, read_contract
    from edgecnn.runtime.predictor import Predictor

    samples = list_class_folder(data / "val").samples
    samples = samples[:4] + samples[-4:]  # four cats, four dogs
    predictors, inputs = {}, {}
    for arch, m in models.items():
        contract = read_contract(load_onnx(Path(m["fp32_path"])))
        inputs[arch] = next(b for b, _, _, _ in iter_batches(samples, contract, max(BATCHES), None))
        for precision in PRECISIONS:
            predictors[arch, precision] = Predictor(Path(m[f"{precision}_path"]), provider="cpu")
    session = predictors[next(iter(predictors))].info.describe()
    seen: dict[tuple[str, str, int], list[float]] = {}
    load_before = os.getloadavg()[0]
    for r in range(rounds):
        for arch in models:
            for precision in PRECISIONS:
                for batch in BATCHES:
                    seconds = time_batch(predictors[arch, precision], inputs[arch][:batch])
                    seen.setdefault((arch, precision, batch), []).append(seconds * 1000 / batch)
        print(f"round {r + 1}/{rounds} done")
    for (arch, precision, batch), values in seen.items():
        models[arch][f"{precision}_b{batch}_ms"] = round(statistics.median(values), 3)
        models[arch][f"{precision}_b{batch}_rounds_ms"] = [round(v, 3) for v in values]
    for m in models.values():
        for precision in PRECISIONS:
            for batch in BATCHES:
                key = f"{precision}_b{batch}_ms"
                for ref in ("vgg16", "cnn"):
                    if ref in models:
                        m[f"{precision}_b{batch}_vs_{ref}"] = round(m[key] / models[ref][key], 3)
        for batch in BATCHES:
            m[f"int8_speedup_b{batch}"] = round(m[f"fp32_b{batch}_ms"] / m[f"int8_b{batch}_ms"], 2)
    return {
        "session": session,
        "latency_images": [str(p) for p, _ in samples],
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before and after timing
    }


def render() -> str:
    """The markdown section from results/backbones.json, written to results/backbones.md."""
    data = json.loads((RESULTS / "backbones.json").read_text())
    rows, machine = data["models"], data["machine"]
    names = {
        "cnn": "CNN from scratch",
        "mobilenetv3small": "MobileNetV3-Small",
        "mobilenetv3large": "MobileNetV3-Large",
        "efficientnetb0": "EfficientNet-B0",
        "efficientnet-lite0": "EfficientNet-Lite0",
        "efficientnet-lite1": "EfficientNet-Lite1",
        "efficientnet-lite2": "EfficientNet-Lite2",
        "vgg16": "VGG16",
    }
    cores, versions = machine["usable_cores"], machine["versions"]
    lines = [
        "## Edge backbones: size and CPU latency (`benchmarks/backbones.py`)",
        "",
        f"Each `--arch` at its default input size, weights none (size and speed do not depend on the weights), "
        f"exported by `edgecnn export --int8` (int8 QDQ, per-channel, minmax, calibrated on "
        f"{rows[0]['calib_images']} cats_dogs training photos). Latency per image = batch time / batch size, "
        f"ONNX Runtime CPU provider through edgecnn's Predictor ({data['session']}), {data['rounds']} interleaved "
        f"rounds, each the median of several runs after a warm-up; the figure is the median of the rounds. "
        f"The machine: {machine['cpu']}, {cores} cores, shared with other work (1-minute load average "
        f"{data['load_average_1min'][0]} before the timing and {data['load_average_1min'][1]} after: expect "
        "noise), "
        f"int8 instructions {', '.join(machine['int8_instructions']) or 'none'}, ONNX Runtime "
        f"{versions.get('onnxruntime') or versions.get('onnxruntime-gpu')}, TensorFlow {versions.get('tensorflow')}, "
        f"Keras {versions.get('keras')}, tf2onnx {versions.get('tf2onnx')}.",
        "",
        "| arch | input | parameters | fp32 MB | int8 MB | fp32 b1 ms/img | fp32 b8 ms/img | int8 b1 ms/img "
        "| int8 b8 ms/img | int8 speed-up b1 / b8 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        lines.append(
            f"| {names.get(m['arch'], m['arch'])} | {m['input']} | {m['parameters'] / 1e6:.2f} M "
            f"| {m['fp32_bytes'] / 1e6:.1f} | {m['int8_bytes'] / 1e6:.1f} | {m['fp32_b1_ms']:.2f} "
            f"| {m['fp32_b8_ms']:.2f} | {m['int8_b1_ms']:.2f} | {m['int8_b8_ms']:.2f} "
            f"| {m['int8_speedup_b1']:.2f}x / {m['int8_speedup_b8']:.2f}x |"
        )
    lines += [
        "",
        "Latency as a multiple of VGG16's and of the CNN from scratch's, same precision and batch (below 1: faster):",
        "",
        "| arch | "
        + " | ".join(f"{p} b{b} ÷ {ref}" for ref in ("VGG16", "CNN") for p in PRECISIONS for b in BATCHES)
        + " |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        cells = [
            f"{m.get(f'{p}_b{b}_vs_{ref}', float('nan')):.3f}"
            for ref in ("vgg16", "cnn")
            for p in PRECISIONS
            for b in BATCHES
        ]
        lines.append(f"| {names.get(m['arch'], m['arch'])} | {' | '.join(cells)} |")
    lines += [
        "",
        "Per-round figures, export times and each fp32 file's parity check are in "
        "`benchmarks/results/backbones.json` (with weights none the probabilities are close to uniform, so "
        "that parity figure is only a smoke check; tests/test_backbones.py checks parity on sharp outputs).",
        "",
        f"Command: `{data['command']}` (measured {data['measured']}).",
        "",
    ]
    text = "\n".join(lines)
    notes = RESULTS / "backbones_notes.md"  # measurements of trained models, written by hand
    if notes.is_file():
        text += "\n" + notes.read_text(encoding="utf-8")
    (RESULTS / "backbones.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="[default: ../shared/datasets/cats_dogs]")
    parser.add_argument("--calib-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--render", action="store_true", help="only rewrite results/backbones.md")
    args = parser.parse_args()
    if args.render:
        print(render())
        return
    data = args.data or dataset("cats_dogs")
    if not (data / "train").is_dir() or not (data / "val").is_dir():
        raise SystemExit(f"{data} needs train/ and val/ class folders (see {SHARED / 'README.md'})")
    # tf2onnx's transpose optimiser trips over the scalar Add in MobileNetV3's hard-swish and logs a traceback
    # (the export still passes its parity gate); keep the benchmark's output readable.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    models: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.only:
            print(f"building and exporting {arch}...")
            models[arch] = build_and_export(arch, Path(tmp) / arch, data, args.calib_size)
        extra = measure(models, data, args.rounds)
    for m in models.values():
        m.pop("fp32_path"), m.pop("int8_path")  # temporary files, gone now
    write_result(
        "backbones",
        {"models": list(models.values()), "rounds": args.rounds, "calib_dir": str(data / "train"), **extra},
    )
    print(render())


if __name__ == "__main__":
    main()
