"""``edgecnn train``: fit a CNN or a pretrained backbone (transfer learning) on a folder of labelled photos.

A run directory gets ``model.keras`` (best weights by validation loss), ``report.json`` (metrics, data,
settings and the model contract), ``history.json``, ``curves.png``, ``confusion_matrix.png``,
``misclassified.png`` and ``report.html`` (all of it on one page, for a browser). Ctrl-C keeps the best model
so far and still writes the reports.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.dataset import DataSplits, Skipped, discover
from edgecnn.core.errors import DatasetError, EdgecnnError, OutputError
from edgecnn.core.metrics import Metrics, compute_metrics
from edgecnn.core.version import __version__
from edgecnn.training.backbones import build_model, check_weights, unfreeze_top
from edgecnn.training.config import TrainConfig
from edgecnn.training.devices import select_devices
from edgecnn.training.models import BuiltModel, import_keras
from edgecnn.training.pipeline import CACHE_PREFIX, cache_key, clear_decode_cache, make_dataset
from edgecnn.training.precision import as_float32, dtype_policy
from edgecnn.training.precision import resolve as resolve_precision
from edgecnn.training.runfiles import write_html_report, write_json, write_model
from edgecnn.training.schedule import (
    BudgetCosine,
    EpochTimer,
    early_stopping,
    make_optimizer,
    schedule,
)

#: Above this many bytes of decoded images, the tf.data cache goes to a file in the run directory.
MEMORY_CACHE_LIMIT = 4 * 2**30

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    report: dict[str, Any]
    metrics: Metrics
    interrupted: bool
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def train(config: TrainConfig) -> TrainResult:
    """Train a model and write its run directory.

    Args:
        config: The run's settings.

    Raises:
        DatasetError: The data folder cannot be used.
        ConfigError: Options that cannot work together.
        DependencyError: TensorFlow is missing, or ImageNet weights cannot be fetched.
    """
    say = logger.info
    arch = config.arch
    assert arch is not None  # set by __post_init__
    splits = discover(config.data_dir, config.val_dir, config.val_split, seed=config.seed)
    for warning in splits.warnings:
        say(f"warning: {warning}")
    check_weights(arch, config.weights)  # before anything is written
    run_dir = Path(config.out_dir) if config.out_dir else default_run_dir()
    if run_dir.exists() and (run_dir / "model.keras").exists():
        raise OutputError(f"{run_dir} already holds a trained model; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None

    keras, tf = import_keras()
    keras.utils.set_random_seed(config.seed)
    devices = select_devices(tf, config.devices)
    global_batch = config.batch_size * devices.replicas
    lr_scale = devices.replicas  # linear scaling: the global batch grows with the replicas
    if devices.replicas > 1:
        say(
            f"training on {devices.describe()}: global batch {global_batch} "
            f"({config.batch_size} per device), learning rate x{lr_scale}"
        )
    # set by __post_init__:
    assert config.img_size is not None and config.learning_rate is not None and config.epochs is not None
    spec = InputSpec.square(config.img_size, channels=1 if config.grayscale else 3)

    say(
        f"data: {len(splits.classes)} classes ({', '.join(splits.classes[:8])}{'...' if len(splits.classes) > 8 else ''}), "
        f"{len(splits.train)} training and {len(splits.val)} validation images ({splits.layout})"
    )
    # An interrupted run into the same folder leaves its decode cache (and tf.data's lock file) and its
    # checkpoint: neither belongs to this run, so both go before anything is decoded or trained.
    cache_dir = run_dir / "cache"
    clear_decode_cache(cache_dir)
    best_path = run_dir / "best.weights.h5"
    best_path.unlink(missing_ok=True)
    cache_bytes = (len(splits.train) + len(splits.val)) * config.img_size**2 * spec.channels
    train_cache = val_cache = None
    if cache_bytes > MEMORY_CACHE_LIMIT:
        cache_dir.mkdir(exist_ok=True)
        train_cache = str(cache_dir / f"{CACHE_PREFIX}-{cache_key(splits.train, spec)}-train")
        val_cache = str(cache_dir / f"{CACHE_PREFIX}-{cache_key(splits.val, spec)}-val")
        say(f"decoded images need {cache_bytes / 2**30:.1f} GiB: caching them on disk in {cache_dir}")
    if config.augment:
        from edgecnn.training.augment import build_augmenter

        augment = build_augmenter(keras, config.seed, config.downscale, config.desaturate, config.zoom_out)
    else:
        augment = None
    t0 = time.perf_counter()
    say(
        f"decoding images at {config.img_size}x{config.img_size} ({'grey' if config.grayscale else 'RGB'})..."
    )
    train_ds, train_bad, n_train = make_dataset(
        splits.train,
        spec,
        global_batch,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        cache_file=train_cache,
        num_classes=len(splits.classes),
        mixup=config.mixup,
    )
    val_ds, val_bad, n_val = make_dataset(
        splits.val,
        spec,
        global_batch,
        shuffle=False,
        seed=config.seed,
        cache_file=val_cache,
        num_classes=len(splits.classes),
    )
    decode_seconds = time.perf_counter() - t0
    skipped = sorted(splits.skipped + train_bad + val_bad)
    if skipped:
        say(f"skipped {len(skipped)} file(s) that are not usable images, e.g.:")
        for path, reason in skipped[:5]:
            say(f"  {path}: {reason}")
    _check_after_decode(splits, train_bad, val_bad)
    say(f"decoded {n_train + n_val} images in {decode_seconds:.1f} s")

    policy = resolve_precision(config.precision, arch, devices.on_gpu)
    if policy != "float32":
        say(f"training in {policy} (--precision {config.precision}); the saved model is float32")

    def build(dtype: str) -> BuiltModel:
        with devices.scope(), dtype_policy(keras, dtype):
            return build_model(
                arch,
                spec,
                len(splits.classes),
                seed=config.seed,
                weights=config.weights,
                base_filters=config.base_filters,
                bn_momentum=config.bn_momentum,
                depth=config.depth,
            )

    built = build(policy)
    model = built.model
    steps = max(1, math.ceil(n_train / global_batch))
    history: dict[str, list[float]] = {}
    phase_starts: list[int] = []
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(best_path), monitor="val_loss", save_best_only=True, save_weights_only=True, verbose=0
    )
    timer = EpochTimer(keras, config.max_minutes)
    interrupted = False
    t_train = time.perf_counter()
    phases = [("train", config.epochs, config.learning_rate * lr_scale, True)]
    if config.fine_tune_epochs:
        phases.append(("fine-tune", config.fine_tune_epochs, config.learning_rate * lr_scale / 10, False))
    planned_epochs = sum(epochs for _, epochs, _, _ in phases)
    for name, epochs, lr, warmup in phases:
        # With --ema the average replaces the weights for validation and at every epoch's end, so the
        # checkpoint, early stopping and the saved model all see it; callbacks after this one get it.
        callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema else []
        callbacks += [checkpoint, timer]
        learning_rate: Any = schedule(keras, lr, epochs * steps, steps if warmup else 0)
        left = timer.remaining()
        if left is not None:  # the cosine spans this phase's share of the time left, not its epochs
            share = left * epochs / planned_epochs
            planned_epochs -= epochs
            budget = BudgetCosine(lr, epochs * steps, steps if warmup else 0, share)
            learning_rate = lr
            callbacks.append(budget.callback(keras))
        if name == "fine-tune":
            unfreeze_top(built)
            what = f"{config.arch} from {built.fine_tune_from} on, BatchNormalization frozen,"
            if built.fine_tune_from is None:  # --weights none: nothing was frozen
                what = f"all of {config.arch} (trained from scratch)"
            say(f"fine-tuning {what} for {epochs} epoch(s) at learning rate {lr:g}")
        with devices.scope():
            model.compile(
                optimizer=make_optimizer(keras, learning_rate, config.weight_decay, config.ema),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
        start = len(history.get("loss", []))
        phase_starts.append(start)
        early = early_stopping(keras, start, epochs, config.patience)
        try:
            fit = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=start + epochs,
                initial_epoch=start,
                callbacks=[*callbacks, early],
                verbose=config.verbose,
            )
            for key, values in fit.history.items():
                history.setdefault(key, []).extend(float(v) for v in values)
        except KeyboardInterrupt:
            interrupted = True
            for key, values in (model.history.history if model.history else {}).items():
                history.setdefault(key, []).extend(float(v) for v in values)
            say("interrupted: keeping the best model so far")
            break
        if timer.out_of_time:
            say(f"stopped at the --max-minutes budget ({config.max_minutes:g} min)")
            break
    train_seconds = time.perf_counter() - t_train
    if not best_path.exists():
        raise EdgecnnError("training stopped before the first epoch ended: no model to save")
    import warnings

    with warnings.catch_warnings():  # the checkpoint's optimizer state may come from the other phase
        warnings.simplefilter("ignore")
        model.load_weights(str(best_path))
    if policy != "float32":
        built = as_float32(model, build)
        model = built.model

    say("evaluating the best model on the validation images...")
    y_true, probs, images = _predict(model, val_ds)
    y_pred = probs.argmax(axis=1)
    metrics = compute_metrics(y_true, y_pred, splits.classes)
    epochs_run = len(history.get("loss", []))
    val_loss = history.get("val_loss", [])
    best_epoch = int(np.argmin(val_loss)) + 1 if val_loss else None

    training_summary = {
        "val_accuracy": metrics.accuracy,
        "val_images": metrics.count,
        "dataset": str(config.data_dir),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
    }
    if built.weights is not None:  # which pretrained weights, by hash; the local path stays in the report
        training_summary["pretrained"] = {k: v for k, v in built.weights.items() if k != "file"}
    contract = ModelContract(
        labels=tuple(splits.classes),
        input=spec,
        arch=arch,
        normalization=built.normalization,
        training=training_summary,
    )
    report: dict[str, Any] = {
        "edgecnn_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arch": config.arch,
        "img_size": config.img_size,
        "channels": spec.channels,
        "classes": splits.classes,
        "val_accuracy": metrics.accuracy,
        "val_loss": float(min(val_loss)) if val_loss else None,
        "per_class": metrics.per_class,
        "confusion_matrix": metrics.confusion.tolist(),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "interrupted": interrupted,
        "stopped_by_time_budget": timer.out_of_time,
        "train_seconds": round(train_seconds, 2),
        "decode_seconds": round(decode_seconds, 2),
        "train_images_per_second": round(timer.images_per_second(n_train), 1),
        "devices": {"names": devices.names, "replicas": devices.replicas, "global_batch": global_batch},
        "precision": policy,
        "parameters": int(model.count_params()),
        "pretrained": built.weights,
        "data": {**splits.describe(), "seed": config.seed, "train_images": n_train, "val_images": n_val},
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
        "config": _config_dict(config),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "contract": contract.to_dict(),
    }
    write_model(model, run_dir / "model.keras")
    write_json(run_dir / "history.json", history)
    write_json(run_dir / "report.json", report)
    from edgecnn.training.plots import write_plots

    write_plots(run_dir, history, phase_starts, metrics, splits.classes, images, y_true, probs)
    write_html_report(run_dir, report, history, images, y_true, probs, splits, val_bad, phase_starts[1:])
    best_path.unlink(missing_ok=True)
    clear_decode_cache(cache_dir)
    return TrainResult(
        run_dir=run_dir,
        report=report,
        metrics=metrics,
        interrupted=interrupted,
        skipped=skipped,
        warnings=splits.warnings,
    )


def _predict(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, probs, images = [], [], []
    for x, y in dataset:
        probs.append(np.asarray(model(x, training=False)))
        y = np.asarray(y)
        labels.append(y.argmax(axis=1) if y.ndim == 2 else y)  # one-hot labels
        images.append(np.asarray(x).astype(np.uint8))
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(images)


def _check_after_decode(splits: DataSplits, train_bad: list[Skipped], val_bad: list[Skipped]) -> None:
    bad = {str(p) for p, _ in train_bad + val_bad}
    for name, samples in (("training", splits.train), ("validation", splits.val)):
        for label, cls in enumerate(splits.classes):
            good = [p for p, lab in samples if lab == label and str(p) not in bad]
            if not good and (name == "training" or any(lab == label for _, lab in samples)):
                raise DatasetError(f"class {cls!r} has no readable {name} images (all were skipped)")


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    out = asdict(config)
    for key, value in out.items():
        if isinstance(value, Path):
            out[key] = str(value)
    return out
