"""The shipped ImageNet model: EfficientNet-Lite0 with its 1,000 ImageNet classes, built from the installed
weights (``make imagenet-model``), and how well it knows real photos.

The model is built once by this module and shipped in ``models/`` (and so in the wheel), rather than built
on first use: building needs TensorFlow, tf2onnx and calibration photos, which an edge device running
``edgecnn classify`` does not have, and a model built on each machine would differ with each machine's
calibration images. The build is reproducible: the same weights package, calibration photos and edgecnn
version give the same fp32 graph, and the contract records the weights' SHA-256 and the calibration source.

int8 ships where it holds accuracy (``MAX_INT8_DROP``), measured on labelled photos whose folders map to
ImageNet classes (``SUPERCLASSES``), else fp32; in two files, 8-bit weights for CPUs with VNNI (and Arm) and
7-bit weights for x86 CPUs without VNNI, whose int8 kernels saturate with 8 bits. ``core.shipped`` picks the
file for the CPU it runs on.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.atomic import atomic_output, write_atomic
from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.errors import ConfigError, DatasetError
from edgecnn.core.files import iter_image_files
from edgecnn.tools.model_cards import IMAGENET_CARD, write_models_readme

logger = logging.getLogger("edgecnn")

ARCH = "efficientnet-lite0"
FP32_NAME, INT8_NAME = "imagenet-lite0.onnx", "imagenet-lite0.int8.onnx"
#: The same int8 model with 7-bit weights, for x86 CPUs without VNNI (``core.cpuinfo.int8_saturates``).
INT8_7BIT_NAME = "imagenet-lite0-7bit.int8.onnx"
#: TensorFlow's EfficientNet evaluation: the centre 224/(224+32) of the shorter side, bicubic resize.
CROP_FRACTION = 0.875
RESIZE = "cubic"
CALIB_IMAGES = 300
#: The most the int8 model may lose against fp32 on the superclass check, in accuracy (0.005: 0.5 pp).
MAX_INT8_DROP = 0.005
#: Folder names of labelled photo sets -> the ImageNet-1k classes that count as right for them.
SUPERCLASSES: dict[str, range] = {
    "cats": range(281, 286),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "dogs": range(151, 269),  # the 118 dog breeds, Chihuahua to Mexican hairless
}


def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in output order (as torchvision names them)."""
    path = Path(__file__).resolve().parent.parent / "training" / "imagenet_classes.txt"
    labels = tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    assert len(labels) == 1000 and len(set(labels)) == 1000
    return labels


def imagenet_spec(size: int) -> InputSpec:
    """The input rule of the ImageNet model: TensorFlow's centre crop and bicubic resize."""
    return InputSpec(size, size, resize=RESIZE, fit="crop", crop_fraction=CROP_FRACTION)


@dataclass
class SuperclassScore:
    """How often a model's top-1 (and top-5) falls in the ImageNet classes of each photo's folder."""

    images: int
    top1: float
    top5: float
    per_folder: dict[str, float]
    predictions: np.ndarray  # top-1 ImageNet index per image, for agreement between two models
    images_per_second: float


def labelled_photos(folder: str | Path, limit: int | None = None, seed: int = 0) -> list[tuple[Path, str]]:
    """(path, folder name) of the photos under ``folder``'s class folders that ``SUPERCLASSES`` knows.

    Args:
        limit: At most this many, spread evenly over the folders (chosen with ``seed``).

    Raises:
        DatasetError: No class folder of ``folder`` is in ``SUPERCLASSES``.
    """
    root = Path(folder)
    found = (
        sorted(p for p in root.iterdir() if p.is_dir() and p.name in SUPERCLASSES) if root.is_dir() else []
    )
    if not found:
        raise DatasetError(
            f"{root} has no class folder named {' or '.join(SUPERCLASSES)}, the photo sets whose ImageNet "
            "classes are known"
        )
    per_folder = None if limit is None else max(1, limit // len(found))
    photos: list[tuple[Path, str]] = []
    for sub in found:
        files = list(iter_image_files([sub]))
        if per_folder is not None and len(files) > per_folder:
            files = sorted(random.Random(seed).sample(files, per_folder))
        photos += [(p, sub.name) for p in files]
    return photos


def score_superclasses(
    model_path: str | Path, photos: Sequence[tuple[Path, str]], batch: int = 32
) -> SuperclassScore:
    """Run an ImageNet model over labelled photos; count top-1 and top-5 in each folder's ImageNet classes.

    Photos are decoded as ``classify`` decodes them (worker threads, the contract's input rule); one that
    cannot be read is left out of every count.
    """
    from edgecnn.core.decode import iter_batches
    from edgecnn.runtime.predictor import Predictor

    predictor = Predictor(model_path, provider="cpu")
    samples = [(path, i) for i, (path, _) in enumerate(photos)]  # the label is the photo's place in the list
    probs: list[np.ndarray] = []
    places: list[int] = []
    seconds = 0.0
    for images, index, _, _ in iter_batches(samples, predictor.contract, batch, None):
        t0 = time.perf_counter()
        probs.append(predictor.predict_batch(images))
        seconds += time.perf_counter() - t0
        places.extend(int(i) for i in index)
    top5 = np.argsort(-np.concatenate(probs), axis=1)[:, :5]
    names = [photos[i][1] for i in places]
    hit1 = np.array([top5[k, 0] in SUPERCLASSES[name] for k, name in enumerate(names)])
    hit5 = np.array([any(c in SUPERCLASSES[name] for c in top5[k]) for k, name in enumerate(names)])
    per_folder = {n: float(hit1[[x == n for x in names]].mean()) for n in sorted(set(names))}
    return SuperclassScore(
        images=len(names),
        top1=float(hit1.mean()),
        top5=float(hit5.mean()),
        per_folder=per_folder,
        predictions=top5[:, 0],
        images_per_second=len(names) / seconds if seconds else 0.0,
    )


def build_imagenet_model(
    calib_dirs: Iterable[str | Path],
    eval_dir: str | Path,
    models_dir: str | Path = "models",
    workdir: str | Path = "build/imagenet",
    calib_size: int = CALIB_IMAGES,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the ImageNet default model into ``models_dir`` with its model card (``make imagenet-model``).

    Args:
        calib_dirs: Folders of real photos to calibrate int8 on (walked recursively).
        eval_dir: A folder of class folders named in ``SUPERCLASSES`` (cats, dogs) to measure fp32 and int8.
        models_dir: Where the shipped model and ``imagenet-model-card.json`` go.
        workdir: Scratch folder (the Keras model, both ONNX files, the calibration links).
        calib_size: Calibration photos, spread over ``calib_dirs``.

    Returns:
        The model card written beside the model.

    Raises:
        DependencyError: The weights package or the training extra is missing.
        DatasetError: A calibration or evaluation folder without usable photos.
    """
    from edgecnn.conversion.convert import export_all
    from edgecnn.training import efficientnet_lite as lite
    from edgecnn.training.runfiles import write_model

    # Every input is checked before anything is written.
    state = lite.imagenet_weights(ARCH)
    calib_files = sorted({p.resolve() for d in calib_dirs for p in iter_image_files([d], recursive=True)})
    if len(calib_files) < calib_size:
        raise DatasetError(f"{len(calib_files)} calibration photos found; {calib_size} are needed")
    photos = labelled_photos(eval_dir)
    if calib_size < 1:
        raise ConfigError(f"calib_size must be at least 1, got {calib_size}")

    work, models = Path(workdir), Path(models_dir)
    if work.exists():
        shutil.rmtree(work)
    (work / "run").mkdir(parents=True)
    calib = work / "calib"
    calib.mkdir()
    for i, path in enumerate(sorted(random.Random(1).sample(calib_files, calib_size))):
        (calib / f"{i:04d}{path.suffix.lower()}").symlink_to(path)

    variant = lite.VARIANTS[ARCH]
    size = variant.resolution
    log(f"building {ARCH} with its ImageNet classifier from {state.path.name} ({state.sha256[:12]}...)")
    keras_model = lite.build_base(ARCH, (size, size, 3), include_top=True)
    lite.set_weights(keras_model, ARCH, state, include_top=True)
    contract = ModelContract(
        labels=imagenet_labels(),
        input=imagenet_spec(size),
        arch=ARCH,
        normalization=lite.PREPROCESSING,
        training={
            "dataset": "ImageNet-1k (ILSVRC 2012)",
            "pretrained": {
                "weights": "imagenet",
                "package": variant.package,
                "sha256": state.sha256,
                "licence": lite.WEIGHTS_LICENCE,
            },
        },
    )
    write_model(keras_model, work / "run" / "model.keras")
    write_atomic(work / "run" / "report.json", json.dumps({"arch": ARCH, "contract": contract.to_dict()}))
    fp32, int8, int8_7bit = work / FP32_NAME, work / INT8_NAME, work / INT8_7BIT_NAME
    log(f"exporting to ONNX, then int8 (8-bit and 7-bit weights) calibrated on {calib_size} photos...")

    def export(source: Path, out: Path, reduce_range: str, output: Path | None = None) -> Any:
        return export_all(
            source,
            output=output,
            int8=True,
            int8_output=out,
            calib_dir=calib,
            calib_size=calib_size,
            accuracy_gate=False,
            force=True,
            reduce_range=reduce_range,
        )

    exported = export(work / "run", int8, "off", output=fp32)
    export(fp32, int8_7bit, "on")
    log(f"measuring the three on {len(photos)} photos of {eval_dir}...")
    scores = {
        name: score_superclasses(path, photos)
        for name, path in (("fp32", fp32), ("int8", int8), ("int8_7bit", int8_7bit))
    }
    holds = {name: scores[name].top1 >= scores["fp32"].top1 - MAX_INT8_DROP for name in ("int8", "int8_7bit")}
    # Both int8 files or neither: the 7-bit one serves the CPUs whose kernels saturate with the 8-bit one.
    shipped = [int8, int8_7bit] if all(holds.values()) else [fp32]
    models.mkdir(parents=True, exist_ok=True)
    for path in shipped:  # each file whole (atomically), before the one it replaces is gone
        with atomic_output(models / path.name, force=True) as tmp:
            shutil.copyfile(path, tmp)
    for stale in {FP32_NAME, INT8_NAME, INT8_7BIT_NAME} - {path.name for path in shipped}:
        (models / stale).unlink(missing_ok=True)
    card = {
        "model": shipped[0].name,
        "models": [path.name for path in shipped],
        "arch": ARCH,
        "classes": 1000,
        "weights": {
            "package": variant.package,
            "file": variant.filename,
            "sha256": state.sha256,
            "licence": lite.WEIGHTS_LICENCE,
            "origin": lite.WEIGHTS_ORIGIN,
        },
        "input": contract.input.to_dict(),
        "calibration": {"images": calib_size, "source": [str(d) for d in calib_dirs]},
        "eval": {"folder": str(eval_dir), "images": len(photos), "superclasses": list(SUPERCLASSES)},
        **{
            name: _card_score(score, work / path.name)
            for (name, score), path in zip(scores.items(), (fp32, int8, int8_7bit))
        },
        "top1_agreement": float((scores["fp32"].predictions == scores["int8"].predictions).mean()),
        "top1_agreement_7bit": float((scores["fp32"].predictions == scores["int8_7bit"].predictions).mean()),
        "int8_holds": all(holds.values()),
        "max_int8_drop": MAX_INT8_DROP,
        "parity_max_abs_diff": exported.parity.max_abs_diff,
    }
    write_atomic(models / IMAGENET_CARD, json.dumps(card, indent=2) + "\n")
    write_models_readme(models)
    log(f"wrote {', '.join(str(models / p.name) for p in shipped)}")
    return card


def _card_score(score: SuperclassScore, path: Path) -> dict[str, Any]:
    return {
        "top1": round(score.top1, 4),
        "top5": round(score.top5, 4),
        "per_folder": {k: round(v, 4) for k, v in score.per_folder.items()},
        "bytes": path.stat().st_size,
    }
