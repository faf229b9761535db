"""A file the decoders choke on is skipped with its reason, whatever they raise, on every path.

The decoders are made to raise what a fuzzed TIFF made Pillow raise (``OverflowError: Python int too large
to convert to C ssize_t``) for one file: Pillow's own ``Image.load`` fails for images of one odd size, so the
error comes from inside the real decoder, not from a replaced edgecnn function.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from foreignmodels import colour_folder, colour_model_nchw
from PIL import Image
from typer.testing import CliRunner

import edgecnn
from edgecnn.cli import app
from edgecnn.core.contract import InputSpec
from edgecnn.core.decode import decode_one, decode_parallel
from edgecnn.core.errors import ImageError
from edgecnn.core.imaging import decode_image, failure_reason, load_image

SPEC = InputSpec.square(16)
CRASH_SIZE = (7, 5)  # (width, height) of the file Pillow fails on
OVERFLOW = "Python int too large to convert to C ssize_t"
REASON = f"cannot decode image (OverflowError: {OVERFLOW})"
MODEL = REPO / "models" / "shapes-cnn.int8.onnx"


@pytest.fixture()
def crash_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PNG of ``CRASH_SIZE`` that Pillow raises OverflowError for while decoding it."""
    real_load = Image.Image.load

    def load(self: Image.Image):  # type: ignore[no-untyped-def]
        if self.size == CRASH_SIZE:
            raise OverflowError(OVERFLOW)
        return real_load(self)

    path = tmp_path / "fuzzed.png"
    Image.new("RGB", CRASH_SIZE, (200, 10, 10)).save(path)
    monkeypatch.setattr(Image.Image, "load", load)
    return path


def test_load_image_raises_only_image_error_whatever_the_decoder_raised(crash_file):
    with pytest.raises(ImageError) as caught:
        load_image(crash_file, SPEC)
    assert str(caught.value) == REASON
    assert isinstance(caught.value.__cause__, OverflowError)  # kept for whoever debugs it
    with pytest.raises(ImageError, match="OverflowError"):
        load_image(crash_file.read_bytes(), SPEC)
    with pytest.raises(ImageError, match="OverflowError"):  # the thumbnails' decoder too
        decode_image(crash_file)


def test_interrupts_are_not_turned_into_skipped_files(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)

    def interrupted(self: Image.Image):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_image(path, SPEC)


def test_the_one_rule_gives_the_same_reason_everywhere(crash_file, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (0, 200, 0)).save(good)
    one = decode_one(crash_file, SPEC)
    assert (one.image, one.error) == (None, REASON)
    assert decode_one(good, SPEC).image.shape == (16, 16, 3)
    parallel = list(decode_parallel([good, crash_file, good], SPEC, workers=2))
    assert [d.error for d in parallel] == [None, REASON, None]
    assert failure_reason(OverflowError(OVERFLOW)) == REASON
    assert failure_reason(ImageError("empty file (0 bytes)")) == "empty file (0 bytes)"


def test_the_python_api_says_which_file_and_why(crash_file):
    model = edgecnn.load(MODEL)
    with pytest.raises(ImageError) as caught:
        model.predict(crash_file)
    assert str(caught.value) == f"{crash_file}: {REASON}"


def test_adopt_check_skips_the_file_instead_of_ending_in_a_traceback(crash_file, tmp_path):
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    model = colour_model_nchw(tmp_path / "foreign.onnx")
    photos = colour_folder(tmp_path / "photos", per_class=2)
    crash_file.rename(photos / "red" / "0-fuzzed.png")  # listed first
    result = CliRunner().invoke(
        app,
        ["adopt", str(model), "--labels", str(tmp_path / "labels.txt"), "--preset", "torchvision"]
        + ["--check", str(photos), "--json", "--force"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["check"]["images"] == 6
    options = edgecnn.AdoptOptions(labels=tmp_path / "labels.txt", preset="torchvision")
    api = edgecnn.adopt(model, options, output=tmp_path / "again.onnx", check_dir=photos)
    assert api.check.passed and api.check.skipped == [(photos / "red" / "0-fuzzed.png", REASON)]


def test_the_ray_tasks_skip_the_file_instead_of_failing_the_task(crash_file, tmp_path):
    """What a Ray decode task and a CPU predictor actor run on a block, called here without a cluster."""
    pa = pytest.importorskip("pyarrow")
    from edgecnn.apps.cluster_tasks import PredictBatches, decode_block

    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (0, 0, 200)).save(good)
    names = [str(good), str(crash_file)]
    block = pa.table(
        {
            "index": pa.array([0, 1], pa.int64()),
            "path": pa.array(names, pa.string()),
            "source": pa.array([n.encode() for n in names], pa.binary()),
        }
    )
    decoded = decode_block(block, SPEC)
    assert list(decoded["error"]) == ["", REASON]
    actor = PredictBatches(MODEL.read_bytes(), MODEL.name, "cpu", 1, False, 2, 4)
    rows = actor(block).to_pylist()
    assert [(r["path"], r["status"], r["error"]) for r in rows] == [
        (str(good), "ok", None),
        (str(crash_file), "skipped", REASON),
    ]
