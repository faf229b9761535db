"""Which folders of a dataset are training, validation and test data: one rule for every command."""

import itertools

import numpy as np
import pytest
from PIL import Image

from edgecnn.core.dataset import (
    TEST_NAMES,
    TRAIN_NAMES,
    VAL_NAMES,
    discover,
    evaluation_folder,
    find_split_layout,
)

COLOURS = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}


def write_class_folders(root, per_class=3, size=16):
    for name, rgb in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(("train", "val"), list(itertools.product(TRAIN_NAMES, VAL_NAMES)))
def test_every_train_and_validation_name_pair_is_a_layout(tmp_path, train, val):
    (tmp_path / train).mkdir()
    (tmp_path / val).mkdir()
    layout = find_split_layout(tmp_path)
    assert layout is not None
    assert (layout.train, layout.val, layout.test) == (tmp_path / train, tmp_path / val, None)
    assert evaluation_folder(tmp_path) == tmp_path / val


def test_train_beside_test_is_a_layout_for_evaluation_only(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / TEST_NAMES[0]).mkdir()
    layout = find_split_layout(tmp_path)
    assert layout is not None and layout.val is None
    assert evaluation_folder(tmp_path) == tmp_path / "test"


def test_validation_is_preferred_to_test(tmp_path):
    for name in ("training", "validation", "test"):
        (tmp_path / name).mkdir()
    assert evaluation_folder(tmp_path) == tmp_path / "validation"


@pytest.mark.parametrize(
    "folders", [(), ("red", "green"), ("train",), ("val", "test"), ("validation", "red")]
)
def test_class_folders_are_not_a_layout(tmp_path, folders):
    for name in folders:
        (tmp_path / name).mkdir()
    assert find_split_layout(tmp_path) is None
    assert evaluation_folder(tmp_path) == tmp_path


def test_discover_and_evaluation_agree_on_a_training_validation_tree(tmp_path):
    write_class_folders(tmp_path / "training")
    write_class_folders(tmp_path / "validation", per_class=2)
    splits = discover(tmp_path)
    assert splits.layout == "train/val folders"
    assert splits.val_dir == evaluation_folder(tmp_path) == tmp_path / "validation"
    assert len(splits.train) == 9 and len(splits.val) == 6


def test_training_on_a_train_and_test_tree_splits_train_and_leaves_test(tmp_path):
    """train/ + test/ with no validation folder: train/'s classes, split; test/ is never trained on."""
    write_class_folders(tmp_path / "train", per_class=5)
    write_class_folders(tmp_path / "test", per_class=2)
    splits = discover(tmp_path)
    assert splits.classes == sorted(COLOURS)  # not ["test", "train"]
    assert splits.layout == "split" and len(splits.train) + len(splits.val) == 15
    assert all("test" not in path.relative_to(tmp_path).parts for path, _ in splits.train + splits.val)
    assert evaluation_folder(tmp_path) == tmp_path / "test"
