"""Integration on real photos from ../shared/datasets (skipped cleanly when the folder is absent)."""

import json

import numpy as np
import pytest
from conftest import REPO, shared_dataset
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import InputSpec
from edgecnn.core.dataset import list_class_folder
from edgecnn.core.imaging import load_image
from edgecnn.training.pipeline import make_dataset

pytestmark = pytest.mark.realdata
runner = CliRunner()


def test_rgba_png_validation_photos_same_pixels_in_training_and_inference():
    root = shared_dataset("horse_or_human") / "val"
    samples = list_class_folder(root).samples
    picked = samples[:6] + samples[-6:]
    assert any(Image.open(p).mode == "RGBA" for p, _ in picked)  # the val set is the original RGBA PNGs
    spec = InputSpec.square(64)
    ds, skipped, kept = make_dataset(picked, spec, batch_size=4, shuffle=False, seed=0)
    assert not skipped and kept == len(picked)
    train_side = np.concatenate([x.numpy() for x, _ in ds])
    infer_side = np.stack([load_image(p, spec) for p, _ in picked]).astype(np.float32)
    assert np.abs(train_side - infer_side).max() <= 1.0


def test_classify_real_photos_with_the_shipped_model(tmp_path):
    root = shared_dataset("cats_dogs") / "val" / "cats"
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(root.iterdir())[:20]:
        (photos / path.name).symlink_to(path)
    out = tmp_path / "r.jsonl"
    model = REPO / "models" / "shapes-cnn.int8.onnx"
    result = runner.invoke(app, ["classify", str(photos), "--model", str(model), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 and all(r["status"] == "ok" for r in rows)
    assert json.loads(result.stdout)["classified"] == 20


def test_the_imagenet_model_knows_cats_and_dogs():
    """A sample of real photos (not the benchmark): the default model's top-1 falls in the right ImageNet
    classes (cats 281-285, dogs 151-268) for most of them."""
    from edgecnn.core.shipped import default_model_path
    from edgecnn.tools.imagenet import labelled_photos, score_superclasses

    photos = labelled_photos(shared_dataset("cats_dogs") / "val", limit=40, seed=3)
    assert len(photos) == 40 and {name for _, name in photos} == {"cats", "dogs"}
    score = score_superclasses(default_model_path(), photos)
    assert score.top1 >= 0.8 and score.top5 >= score.top1, score.per_folder
