"""The offline demo and the shipped models: the whole product on generated data, end to end.

``make demo`` runs ``run_demo``: generate a dataset, train the default CNN, export fp32 and int8 through
their gates, evaluate both on a held-out split, classify the sample images, run the webcam loop headless on
the sample video, and say where everything is. ``make models`` runs ``build_models``, the same recipe with
the outputs written to ``models/`` (the shipped default model and its model card).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.atomic import write_atomic
from edgecnn.tools.model_cards import write_models_readme
from edgecnn.training.synthetic import DEFAULT_CLASSES, write_dataset, write_video

#: The recipe of the shipped model and of the demo (same data, same training).
RECIPE: dict[str, Any] = {
    "classes": list(DEFAULT_CLASSES),
    "split": {"train": 600, "val": 100, "test": 100},
    "image_size": 48,
    "data_seed": 2024,
    "arch": "cnn",
    "img_size": 48,
    "epochs": 30,
    "batch_size": 32,
    "base_filters": 16,
    "seed": 42,
    # The shipped model predates these defaults; pinned so that the demo still reproduces it.
    "label_smoothing": 0.0,
    "downscale": 0.0,
    "desaturate": 0.0,
    "zoom_out": 0.0,
    "precision": "fp32",
}
SAMPLE_IMAGES_PER_CLASS = 3


@dataclass
class DemoResult:
    """Where the demo put things and what it measured."""

    workdir: Path
    run_dir: Path
    fp32: Path
    int8: Path
    fp32_accuracy: float
    int8_accuracy: float
    test_images: int
    results: Path
    recording: Path
    seconds: float


def make_samples(folder: str | Path = "samples", seed: int = 7) -> list[Path]:
    """Write the sample images and the sample video shipped in ``samples/`` (generated, no downloaded media)."""
    folder = Path(folder)
    images = folder
    tmp = folder / ".tmp-images"
    shutil.rmtree(tmp, ignore_errors=True)
    write_dataset(tmp, classes=DEFAULT_CLASSES, per_class=SAMPLE_IMAGES_PER_CLASS, size=160, seed=seed)
    images.mkdir(parents=True, exist_ok=True)
    written = []
    for class_dir in sorted(tmp.iterdir()):
        for i, path in enumerate(sorted(class_dir.iterdir())):
            target = images / f"{class_dir.name}-{i + 1}.jpg"
            shutil.move(str(path), target)
            written.append(target)
    shutil.rmtree(tmp, ignore_errors=True)
    _write_awkward_samples(images, written)
    video = folder / "shapes.mp4"
    write_video(
        video, classes=DEFAULT_CLASSES, seconds_per_class=2.0, fps=15, width=640, height=480, seed=seed
    )
    written.append(video)
    return written


def _write_awkward_samples(images: Path, written: list[Path]) -> None:
    """A transparent PNG and a grey PNG: real files people have, handled the same way as in training."""
    import numpy as np
    from PIL import Image

    base = np.asarray(Image.open(images / "circle-1.jpg").convert("RGB"))
    alpha = np.full(base.shape[:2], 255, np.uint8)
    alpha[:, : base.shape[1] // 8] = 0  # a transparent strip: composited over white by edgecnn
    Image.fromarray(np.dstack([base, alpha]), mode="RGBA").save(images / "circle-transparent.png")
    Image.open(images / "square-1.jpg").convert("L").save(images / "square-grey.png")
    written.extend([images / "circle-transparent.png", images / "square-grey.png"])


def make_data(root: Path) -> Path:
    """The recipe's generated dataset (train/val/test of class folders)."""
    if not (root / "test").is_dir():
        write_dataset(
            root,
            classes=RECIPE["classes"],
            per_class=RECIPE["split"],
            size=RECIPE["image_size"],
            seed=RECIPE["data_seed"],
        )
    return root


def train_default(data: Path, run_dir: Path, verbose: int = 2) -> Any:
    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train

    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = TrainConfig(
        data_dir=data,
        out_dir=run_dir,
        arch=RECIPE["arch"],
        img_size=RECIPE["img_size"],
        epochs=RECIPE["epochs"],
        batch_size=RECIPE["batch_size"],
        base_filters=RECIPE["base_filters"],
        seed=RECIPE["seed"],
        label_smoothing=RECIPE["label_smoothing"],
        downscale=RECIPE["downscale"],
        desaturate=RECIPE["desaturate"],
        zoom_out=RECIPE["zoom_out"],
        precision=RECIPE["precision"],
        verbose=verbose,
    )
    return train(config)


def run_demo(
    workdir: str | Path = "demo",
    samples: str | Path = "samples",
    log: Callable[[str], None] = print,
    verbose: int = 2,
) -> DemoResult:
    """The whole product on generated data, step by step (see the module docstring)."""
    from edgecnn.apps.capture import open_source
    from edgecnn.apps.classify import ClassifyConfig, classify_paths
    from edgecnn.apps.evaluate import load_onnx_model as load_model
    from edgecnn.apps.evaluate import run_on_folder
    from edgecnn.apps.webcam import WebcamConfig, format_summary, run_webcam
    from edgecnn.conversion.convert import export_all
    from edgecnn.runtime.predictor import Predictor

    started = time.perf_counter()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    samples = Path(samples)
    step = _stepper(log)

    step("generating the synthetic dataset (coloured shapes on textured, noisy backgrounds)")
    data = make_data(work / "data")
    log(f"  {data}: {', '.join(RECIPE['classes'])}; per class {RECIPE['split']}")
    if not (samples / "shapes.mp4").is_file():
        step("writing the sample images and video")
        make_samples(samples)

    step(f"training the default CNN ({RECIPE['epochs']} epochs at {RECIPE['img_size']} px)")
    run_dir = work / "run"
    trained = train_default(data, run_dir, verbose=verbose)
    log(f"  validation accuracy {trained.metrics.accuracy * 100:.2f}%")

    step("exporting fp32 ONNX (parity gate) and int8 ONNX (accuracy gate, held-out test split)")
    exported = export_all(run_dir, int8=True, eval_dir=data / "test", force=True)
    assert exported.int8 is not None

    step("evaluating both models on the held-out test split")
    fp32_eval = run_on_folder(load_model(exported.output, provider="cpu"), data / "test")
    int8_eval = run_on_folder(load_model(exported.int8.output, provider="cpu"), data / "test")
    log(
        f"  fp32 {fp32_eval.metrics.accuracy * 100:.2f}%, int8 {int8_eval.metrics.accuracy * 100:.2f}% on {fp32_eval.metrics.count} images"
    )

    step(f"classifying the sample images in {samples} with the int8 model")
    predictor = Predictor(exported.int8.output, provider="auto")
    results = work / "results.csv"
    summary = classify_paths(ClassifyConfig(paths=[samples], output=results, force=True, top_k=3), predictor)
    (work / "results.jsonl").unlink(missing_ok=True)
    classify_paths(ClassifyConfig(paths=[samples], output=work / "results.jsonl", top_k=3), predictor)
    log(f"  {summary.classified} classified ({dict(summary.per_label)}), provider {summary.provider}")

    step(f"running the webcam loop headless on {samples / 'shapes.mp4'}")
    recording = work / "webcam.mp4"
    source = open_source(source=str(samples / "shapes.mp4"))
    cam = run_webcam(
        source,
        predictor,
        WebcamConfig(display=False, record=recording, jsonl=work / "webcam.jsonl", force=True),
    )
    for line in format_summary(cam).splitlines():
        log("  " + line)

    seconds = time.perf_counter() - started
    result = DemoResult(
        workdir=work,
        run_dir=run_dir,
        fp32=exported.output,
        int8=exported.int8.output,
        fp32_accuracy=fp32_eval.metrics.accuracy,
        int8_accuracy=int8_eval.metrics.accuracy,
        test_images=fp32_eval.metrics.count,
        results=results,
        recording=recording,
        seconds=seconds,
    )
    log("")
    log(f"done in {seconds:.0f} s. Where everything is:")
    log(f"  training curves      {run_dir / 'curves.png'}")
    log(f"  confusion matrix     {run_dir / 'confusion_matrix.png'}")
    log(f"  misclassified        {run_dir / 'misclassified.png'}")
    log(f"  training report      {run_dir / 'report.json'}")
    log(
        f"  models               {exported.output} ({exported.size_bytes / 1e6:.2f} MB), {exported.int8.output} ({exported.int8.int8_size / 1e6:.2f} MB)"
    )
    log(f"  classify results     {results} and {work / 'results.jsonl'}")
    log(f"  webcam recording     {recording} (and {work / 'webcam.jsonl'})")
    log(
        f"  accuracy (held-out test split, {result.test_images} images): fp32 {result.fp32_accuracy * 100:.2f}%, int8 {result.int8_accuracy * 100:.2f}%"
    )
    return result


def build_models(
    models_dir: str | Path = "models",
    workdir: str | Path = "build/models",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and export the shipped default model into ``models/`` and write its model card (``make models``)."""
    from edgecnn.apps.evaluate import load_onnx_model as load_model
    from edgecnn.apps.evaluate import run_on_folder
    from edgecnn.conversion.convert import export_all
    from edgecnn.core.shipped import SHAPES_MODEL_NAME

    work = Path(workdir)
    models = Path(models_dir)
    models.mkdir(parents=True, exist_ok=True)
    data = make_data(work / "data")
    run_dir = work / "run"
    log("training the default model...")
    trained = train_default(data, run_dir, verbose=0)
    fp32 = models / SHAPES_MODEL_NAME.replace(".int8.onnx", ".onnx")
    int8 = models / SHAPES_MODEL_NAME
    log("exporting...")
    exported = export_all(
        run_dir,
        output=fp32,
        int8=True,
        int8_output=int8,
        eval_dir=data / "test",
        force=True,
    )
    assert exported.int8 is not None
    fp32_eval = run_on_folder(load_model(fp32, provider="cpu"), data / "test")
    int8_eval = run_on_folder(load_model(int8, provider="cpu"), data / "test")
    card = {
        "classes": RECIPE["classes"],
        "recipe": RECIPE,
        "val_accuracy": trained.metrics.accuracy,
        "test_images": fp32_eval.metrics.count,
        "fp32_test_accuracy": fp32_eval.metrics.accuracy,
        "int8_test_accuracy": int8_eval.metrics.accuracy,
        "top1_agreement": float(
            (fp32_eval.probabilities.argmax(1) == int8_eval.probabilities.argmax(1)).mean()
        ),
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": int8.stat().st_size,
        "parity_max_abs_diff": exported.parity.max_abs_diff,
        "int8_speedup_batch8": exported.int8.speedup,
        "calibration": exported.int8.chosen.method,
    }
    write_atomic(models / "model-card.json", json.dumps(card, indent=2) + "\n")
    write_models_readme(models)
    log(f"wrote {fp32}, {int8}, {models / 'README.md'}")
    return card


def _stepper(log: Callable[[str], None]) -> Callable[[str], None]:
    count = {"n": 0}

    def step(text: str) -> None:
        count["n"] += 1
        log(f"[{count['n']}] {text}")

    return step
