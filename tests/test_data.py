import numpy as np
import pytest
from imagefiles import gradient_rgb, save

from edgecnn.core.dataset import discover, list_class_folder
from edgecnn.core.errors import DatasetError


def make_classes(root, counts, ext="png"):
    for name, n in counts.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save(gradient_rgb(16, 16), folder / f"{name}{i}.{ext}")
    return root


def test_flat_layout_splits_each_class(tmp_path):
    make_classes(tmp_path, {"a": 10, "b": 20})
    splits = discover(tmp_path, val_split=0.2, seed=1)
    assert splits.classes == ["a", "b"]
    assert splits.layout == "split"
    val = np.bincount([label for _, label in splits.val])
    assert val.tolist() == [2, 4]
    assert len(splits.train) == 24
    assert not {p for p, _ in splits.train} & {p for p, _ in splits.val}
    again = discover(tmp_path, val_split=0.2, seed=1)
    assert again.val == splits.val  # the same seed gives the same split


def test_train_val_layout(tmp_path):
    make_classes(tmp_path / "train", {"x": 3, "y": 3})
    make_classes(tmp_path / "val", {"x": 1, "y": 2})
    splits = discover(tmp_path)
    assert splits.layout == "train/val folders"
    assert (len(splits.train), len(splits.val)) == (6, 3)


def test_val_dir(tmp_path):
    make_classes(tmp_path / "t", {"x": 3, "y": 3})
    make_classes(tmp_path / "v", {"x": 1, "y": 1})
    splits = discover(tmp_path / "t", val_dir=tmp_path / "v")
    assert splits.layout == "val-dir" and len(splits.val) == 2


def test_non_image_files_are_listed(tmp_path):
    make_classes(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "notes.txt").write_text("hi")
    splits = discover(tmp_path)
    assert [p.name for p, _ in splits.skipped] == ["notes.txt"]
    assert "not an image" in splits.skipped[0][1]


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (lambda r: None, {}, "not found"),
        (lambda r: make_classes(r, {"a": 5}), {}, "at least two classes"),
        (lambda r: make_classes(r, {"a": 5, "b": 0}), {}, "no images.*b"),
        (lambda r: make_classes(r, {"a": 5, "b": 1}), {"val_split": 0.2}, "too few to split"),
        (lambda r: make_classes(r, {"a": 5, "b": 5}), {"val_split": 1.5}, "between 0 and 1"),
        (lambda r: (r.mkdir(), (r / "x.jpg").write_bytes(b"1")), {}, "no class folders.*own sub-folder"),
    ],
)
def test_dataset_errors(tmp_path, setup, kwargs, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        discover(root, **kwargs)


def test_val_classes_must_match(tmp_path):
    make_classes(tmp_path / "train", {"x": 3, "y": 3})
    make_classes(tmp_path / "val", {"x": 1, "z": 1})
    with pytest.raises(DatasetError, match="does not know: z"):
        discover(tmp_path)


def test_both_val_options_refused(tmp_path):
    make_classes(tmp_path, {"a": 5, "b": 5})
    with pytest.raises(DatasetError, match="either"):
        discover(tmp_path, val_dir=tmp_path, val_split=0.2)


def test_imbalance_warning(tmp_path):
    make_classes(tmp_path, {"a": 40, "b": 5})
    splits = discover(tmp_path)
    assert any("imbalance" in w for w in splits.warnings)


def test_recursive_class_folders_and_links(tmp_path):
    make_classes(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "more").mkdir()
    save(gradient_rgb(8, 8), tmp_path / "a" / "more" / "deep.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    folder = list_class_folder(tmp_path)
    assert folder.counts() == {"a": 3, "b": 2}
    assert len({p for p, _ in folder.samples}) == len(folder.samples)  # the loop is walked once
    assert not folder.skipped
