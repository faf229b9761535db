"""Labelled folders: class discovery and train/validation splits (no TensorFlow: evaluation of ONNX models,
calibration and benchmarks use them too; the tf.data pipeline is ``training.pipeline``)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import DatasetError
from edgecnn.core.files import walk_folder
from edgecnn.core.imaging import IMAGE_SUFFIXES

Sample = tuple[Path, int]
Skipped = tuple[Path, str]

TRAIN_NAMES = ("train", "training")
VAL_NAMES = ("val", "valid", "validation")
#: A held-out folder that evaluation and calibration may use in place of a validation one; training never does.
TEST_NAMES = ("test",)
IMBALANCE_RATIO = 3.0


@dataclass
class LabelledFolder:
    """Image files found under a folder of class folders.

    Attributes:
        root: The folder.
        classes: Class folder names, sorted (this order is the model's output order).
        samples: (path, class index) for every file with an image suffix, sorted by class then path.
        skipped: (path, reason) for files that are not images by name.
    """

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in self.classes}
        for _, label in self.samples:
            out[self.classes[label]] += 1
        return out


@dataclass
class DataSplits:
    """The training and validation samples of one run."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val folders", "val-dir" or "split"
    train_dir: Path
    val_dir: Path | None
    val_split: float | None
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "train_dir": str(self.train_dir),
            "val_dir": str(self.val_dir) if self.val_dir else None,
            "val_split": self.val_split,
            "train_images": len(self.train),
            "val_images": len(self.val),
            "train_per_class": _per_class(self.train, self.classes),
            "val_per_class": _per_class(self.val, self.classes),
        }


def _per_class(samples: Sequence[Sample], classes: Sequence[str]) -> dict[str, int]:
    counts = {c: 0 for c in classes}
    for _, label in samples:
        counts[classes[label]] += 1
    return counts


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def list_class_folder(root: str | Path, classes: Sequence[str] | None = None) -> LabelledFolder:
    """List the image files of a folder of class folders.

    Args:
        root: A folder whose sub-folders are classes.
        classes: Expected class names (from a model or the training split); the folder's classes must be a
            subset of them, and indices follow this list.

    Raises:
        DatasetError: The folder is missing, has no class folders, or has classes the model does not know.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root} (expected a folder with one sub-folder per class)")
    try:
        found = sorted(e.name for e in os.scandir(root) if _is_dir(e) and not e.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot list {root}: {exc.strerror or exc}") from None
    if not found:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = (
            f" (found loose images such as {', '.join(loose)}: put each class in its own sub-folder)"
            if loose
            else ""
        )
        raise DatasetError(f"no class folders in {root}{hint}")
    if classes is None:
        classes = found
    else:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise DatasetError(
                f"{root} has class folders the model does not know: {', '.join(unknown[:5])} "
                f"(model classes: {', '.join(classes)})"
            )
    index = {name: i for i, name in enumerate(classes)}
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for name in found:
        files = walk_folder(root / name, recursive=True, seen=set(), skipped=skipped, other_files=True)
        samples.extend((path, index[name]) for path in sorted(files))
    return LabelledFolder(root=root, classes=list(classes), samples=samples, skipped=skipped)


def _find_child(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        candidate = root / name
        if candidate.is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class SplitLayout:
    """The split folders of a dataset root that holds them (``train/`` beside ``val/`` and/or ``test/``)."""

    train: Path
    val: Path | None
    test: Path | None

    @property
    def held_out(self) -> Path:
        """The folder to evaluate or calibrate on: the validation folder, else the test folder."""
        held_out = self.val or self.test
        assert held_out is not None  # find_split_layout returns a layout only when one of them exists
        return held_out


def find_split_layout(root: str | Path) -> SplitLayout | None:
    """Whether ``root`` is a train/validation layout, and its folders: the one rule every command uses.

    A layout is a training folder (one of TRAIN_NAMES, first found) beside a validation folder (VAL_NAMES)
    or a test folder (TEST_NAMES). Training needs the validation folder (``discover``); evaluation and
    calibration take the validation folder, else the test folder (``SplitLayout.held_out``).

    Returns:
        The layout, or None when ``root`` is not one (then it is a folder of class folders).
    """
    root = Path(root)
    train = _find_child(root, TRAIN_NAMES)
    if train is None:
        return None
    val, test = _find_child(root, VAL_NAMES), _find_child(root, TEST_NAMES)
    if val is None and test is None:
        return None
    return SplitLayout(train=train, val=val, test=test)


def evaluation_folder(data_dir: str | Path) -> Path:
    """The folder of class folders to evaluate or calibrate on: the held-out folder of a split layout, else
    ``data_dir`` itself."""
    layout = find_split_layout(data_dir)
    return layout.held_out if layout is not None else Path(data_dir)


def discover(
    data_dir: str | Path,
    val_dir: str | Path | None = None,
    val_split: float | None = None,
    seed: int = 42,
) -> DataSplits:
    """Find the classes and the train/validation samples of a dataset.

    ``data_dir`` is either a folder of class folders, or a folder with ``train/`` and ``val/`` folders of
    class folders. In the first case the validation set is ``val_dir`` if given, else a stratified
    ``val_split`` fraction of each class (default 0.2). A ``train/`` + ``test/`` tree (no validation folder)
    is the first case for ``train/``: ``test/`` is left untouched for ``evaluate``.

    Raises:
        DatasetError: Missing folders, fewer than two classes, an empty class, mismatched classes, or too few
            images to split.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}" if not root.exists() else f"not a folder: {root}")
    split_layout = find_split_layout(root)
    if split_layout is not None and split_layout.val is not None:
        train_sub, val_sub = split_layout.train, split_layout.val
        if val_dir is not None or val_split is not None:
            raise DatasetError(
                f"{root} already has train/ and val/ folders; drop --val-dir/--val-split or point at a folder of "
                "class folders"
            )
        train = list_class_folder(train_sub)
        val = list_class_folder(val_sub, classes=train.classes)
        layout, train_dir, vdir, split = "train/val folders", train_sub, val_sub, None
    elif val_dir is not None:
        if val_split is not None:
            raise DatasetError("give either --val-dir or --val-split, not both")
        # a train/ + test/ tree trains on train/ and leaves test/ for `evaluate`; never "train" as a class
        train = list_class_folder(split_layout.train if split_layout is not None else root)
        val = list_class_folder(val_dir, classes=train.classes)
        layout, train_dir, vdir, split = "val-dir", root, Path(val_dir), None
    else:
        split = 0.2 if val_split is None else val_split
        if not 0.0 < split < 1.0:
            raise DatasetError(f"--val-split must be between 0 and 1 (exclusive), got {split}")
        train_root = (
            split_layout.train if split_layout is not None else root
        )  # train/ + test/: test/ held out
        train = list_class_folder(train_root)
        val = None
        layout, train_dir, vdir = "split", train_root, None

    classes = train.classes
    if len(classes) < 2:
        raise DatasetError(
            f"found {len(classes)} class folder(s) in {train.root}; at least two classes are needed"
        )
    counts = train.counts()
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"class folder(s) with no images in {train.root}: {', '.join(empty)}")
    skipped = list(train.skipped)

    if val is None:
        assert split is not None
        rng = random.Random(seed)
        train_samples: list[Sample] = []
        val_samples: list[Sample] = []
        for label, name in enumerate(classes):
            items = [s for s in train.samples if s[1] == label]
            n_val = round(len(items) * split)
            if n_val < 1 or len(items) - n_val < 1:
                need = max(2, int(np.ceil(1 / min(split, 1 - split))))
                raise DatasetError(
                    f"class {name!r} has {len(items)} image(s): too few to split with --val-split {split} "
                    f"(need at least {need}); add images or pass --val-dir"
                )
            rng.shuffle(items)
            val_samples.extend(sorted(items[:n_val]))
            train_samples.extend(sorted(items[n_val:]))
    else:
        train_samples = train.samples
        val_samples = val.samples
        skipped.extend(val.skipped)
        if not val_samples:
            raise DatasetError(f"the validation folder {val.root} has no images")

    warnings: list[str] = []
    train_counts = _per_class(train_samples, classes)
    largest, smallest = max(train_counts.values()), min(train_counts.values())
    if smallest and largest / smallest >= IMBALANCE_RATIO:
        warnings.append(
            f"strong class imbalance: {max(train_counts, key=train_counts.__getitem__)} has {largest} training "
            f"images, {min(train_counts, key=train_counts.__getitem__)} has {smallest}; accuracy will favour the "
            "larger class (consider balancing or judging by per-class recall)"
        )
    return DataSplits(
        classes=classes,
        train=train_samples,
        val=val_samples,
        layout=layout,
        train_dir=train_dir,
        val_dir=vdir,
        val_split=split,
        skipped=skipped,
        warnings=warnings,
    )
