"""int8 of EfficientNet-Lite0 on the CPU: which activation type is fast, and what 8-bit weights cost on a CPU
without VNNI.

From the fp32 ImageNet model that `make imagenet-model` leaves in build/imagenet, four int8 files are made with
edgecnn's own quantisation step (static QDQ, minmax, per-channel, the same calibration photos): activations
uint8 (edgecnn's choice) or int8, weights in 8 or 7 bits (`--reduce-range`). Then, in one run:

1. speed: fp32 and each int8 file, batch 1 and 8, ONNX Runtime CPU provider, interleaved rounds (median);
2. answers: on N cats_dogs validation photos, how often each file's top-1 ImageNet class is fp32's, and how
   often it falls in the right classes (cats 281-285, dogs 151-268): natively, and where Debian's qemu-user is
   installed, under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU without VNNI; slow, hence few photos).

    python benchmarks/int8_cpu.py [--photos 80] [--emulated-photos 80] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, SHARED, write_result

BUILD = REPO / "build" / "imagenet"
VARIANTS = {  # name: (activations, reduce_range)
    "u8 act, 8-bit w": ("uint8", False),
    "u8 act, 7-bit w": ("uint8", True),
    "s8 act, 8-bit w": ("int8", False),
    "s8 act, 7-bit w": ("int8", True),
}
RUNNER = r"""
import json, sys
import numpy as np
import onnxruntime as ort
data = np.load(sys.argv[1])
out = {}
for path in sys.argv[3:]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = data["x"]
    probs = np.concatenate([session.run(None, {"image": x[i : i + 4]})[0] for i in range(0, len(x), 4)])
    out[path] = probs.argmax(1).tolist()
json.dump(out, open(sys.argv[2], "w"))
"""


def quantise(fp32: Path, out: Path, calib: list[np.ndarray], activations: str, reduce_range: bool) -> None:
    """edgecnn's own quantisation step (minmax, per-channel) with the activation type and weight bits given."""
    from edgecnn.conversion.qdq import preprocess_for_quantization, quantize_once

    pre = out.with_suffix(".pre.onnx")
    preprocess_for_quantization(fp32, pre)
    quantize_once(
        pre, out, calib, "image", "minmax", True, reduce_range=reduce_range, activations=activations
    )
    pre.unlink()


def latency(paths: dict[str, Path], images: np.ndarray, rounds: int) -> dict[str, dict[str, float]]:
    from edgecnn.runtime.predictor import Predictor

    predictors = {name: Predictor(path, provider="cpu") for name, path in paths.items()}
    out: dict[str, dict[str, float]] = {name: {} for name in paths}
    for batch in (1, 8):
        x = images[:batch]
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, predictor in predictors.items():
                predictor.predict_batch(x)
                t = time.perf_counter()
                for _ in range(5):
                    predictor.predict_batch(x)
                times[name].append((time.perf_counter() - t) / 5 / batch * 1000)
        for name in paths:
            out[name][f"b{batch}_ms_per_image"] = round(statistics.median(times[name]), 3)
    return out


def answers(prefix: list[str], npz: Path, paths: list[Path], work: Path) -> dict[str, list[int]]:
    out = work / f"answers-{len(prefix)}.json"
    script = work / "runner.py"
    script.write_text(RUNNER)
    cmd = [*prefix, sys.executable, str(script), str(npz), str(out), *map(str, paths)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--emulated-photos", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from edgecnn.core.cpuinfo import cpu_flags, int8_saturates
    from edgecnn.core.files import iter_image_files
    from edgecnn.core.imaging import load_image
    from edgecnn.core.onnxfile import load_onnx, read_contract
    from edgecnn.tools.imagenet import FP32_NAME, SUPERCLASSES, labelled_photos

    fp32 = BUILD / FP32_NAME
    if not fp32.is_file():
        sys.exit(f"{fp32} is missing: run `make imagenet-model` first")
    spec = read_contract(load_onnx(fp32)).input
    calib_files = sorted(iter_image_files([BUILD / "calib"]))
    calib_all = np.stack([load_image(p, spec) for p in calib_files]).astype(np.float32)
    calib = [calib_all[i : i + 8] for i in range(0, len(calib_all) - 7, 8)]
    photos = labelled_photos(SHARED / "cats_dogs" / "val", limit=args.photos, seed=11)
    x = np.stack([load_image(p, spec) for p, _ in photos]).astype(np.float32)
    names = [n for _, n in photos]
    result: dict = {
        "photos": len(photos),
        "calibration_images": len(calib_all),
        "vnni_saturates_here": int8_saturates(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = {"fp32": fp32}
        for name, (activations, reduce_range) in VARIANTS.items():
            paths[name] = work / f"{activations}-{int(reduce_range)}.onnx"
            quantise(fp32, paths[name], calib, activations, reduce_range)
        result["latency"] = latency(paths, x, args.rounds)
        fp32_ms = result["latency"]["fp32"]
        result["speedup_vs_fp32"] = {
            name: {b: round(fp32_ms[b] / ms[b], 3) for b in ms} for name, ms in result["latency"].items()
        }

        def score(top1: list[int], reference: list[int], labels: list[str]) -> dict:
            right = np.mean([t in SUPERCLASSES[n] for t, n in zip(top1, labels)])
            agree = np.mean([a == b for a, b in zip(top1, reference)])
            return {
                "superclass_top1": round(float(right), 4),
                "top1_agreement_with_fp32": round(float(agree), 4),
            }

        npz = work / "photos.npz"
        np.savez(npz, x=x)
        native = answers([], npz, list(paths.values()), work)
        reference = native[str(fp32)]
        result["native"] = {name: score(native[str(p)], reference, names) for name, p in paths.items()}
        qemu = shutil.which("qemu-x86_64")
        if qemu and args.emulated_photos:
            k = min(args.emulated_photos, len(photos))
            pick = np.linspace(0, len(photos) - 1, k).astype(int)
            small = work / "small.npz"
            np.savez(small, x=x[pick])
            int8_paths = [p for name, p in paths.items() if name.startswith("u8")]
            emulated = answers([qemu, "-cpu", "Haswell"], small, int8_paths, work)
            sub_names = [names[i] for i in pick]
            sub_ref = [reference[i] for i in pick]
            result["emulated_haswell"] = {
                "photos": k,
                **{
                    name: score(emulated[str(p)], sub_ref, sub_names)
                    for name, p in paths.items()
                    if p in int8_paths
                },
                "native_same_photos": {
                    name: score([native[str(p)][i] for i in pick], sub_ref, sub_names)
                    for name, p in paths.items()
                    if p in int8_paths
                },
            }
    result["cpu_flags"] = sorted(
        f for f in cpu_flags() if "vnni" in f or f.startswith(("avx2", "avx512", "amx"))
    )
    write_result("int8_cpu", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
