"""Defects a review of imaging and decoding found (each test failed on the reviewed revision)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from imagefiles import gradient_rgb, jpeg_with_orientation, save
from PIL import Image, features

import edgecnn.core.imaging as imaging
from edgecnn.apps.classify import ClassifyConfig, classify_paths
from edgecnn.core.contract import InputSpec
from edgecnn.core.dataset import list_class_folder
from edgecnn.core.decode import decode_parallel
from edgecnn.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shapes-cnn.int8.onnx"
SPEC = InputSpec.square(32)
HEIF_REASON = 'HEIC/HEIF image: install pillow-heif to read it (pip install "edgecnn[heif]")'


def _iso_box(brand: bytes) -> bytes:
    """The start of an ISO-BMFF file (HEIC, AVIF) with the given major brand and no image in it."""
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1" + b"\x00" * 64


def _photos(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [save(gradient_rgb(40 + i, 60), folder / f"photo-{i}.png") for i in range(count)]


def _classify(folder: Path) -> dict[str, tuple[str, str | None]]:
    rows: list = []
    with Predictor(MODEL, provider="cpu") as predictor:
        classify_paths(ClassifyConfig(paths=[folder], batch_size=2), predictor, on_rows=rows.extend)
    return {Path(row.path).name: (row.status, row.error) for row in rows}


@pytest.fixture()
def without_pillow_heif(monkeypatch):
    """This process as it is on a machine without pillow-heif (whether or not it is installed here)."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)


def _avif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gradient_rgb(48, 64)).save(buf, format="AVIF")
    return buf.getvalue()


# --- 1. 16-bit images are scaled by their bit depth, not by their content ------------------------------------


def test_dark_16_bit_image_is_scaled_by_bit_depth_not_content(tmp_path):
    values = np.array([[0, 128, 255, 200, 129]], dtype=np.uint16)  # all <= 255: a very dark 16-bit image
    path = tmp_path / "dark16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
    out = imaging.decode_image(path)
    assert out[0, :, 0].tolist() == np.round(values[0] / 257.0).astype(int).tolist() == [0, 0, 1, 1, 1]


# --- 2. A decoder exception other than ImageError skips the file, not the run ---------------------------------


def _crash_on(monkeypatch, crashes: dict[str, Exception]) -> None:
    real = imaging.decode_image

    def decode_image(source, draft_size=None):
        exc = crashes.get(Path(str(source)).name) if not isinstance(source, bytes) else None
        if exc is not None:
            raise exc
        return real(source, draft_size)

    monkeypatch.setattr(imaging, "decode_image", decode_image)


def test_decoder_exception_other_than_image_error_skips_only_that_file_in_classify(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    _photos(folder, 4)
    _crash_on(
        monkeypatch,
        {
            "photo-1.png": RuntimeError("decoder blew up"),
            "photo-2.png": cv2.error("OpenCV(4.x) resize.cpp: (-215:Assertion failed) !ssize.empty()"),
        },
    )
    rows = _classify(folder)
    assert rows["photo-0.png"][0] == "ok" and rows["photo-3.png"][0] == "ok"
    assert rows["photo-1.png"] == ("skipped", "cannot decode image (RuntimeError: decoder blew up)")
    status, reason = rows["photo-2.png"]
    assert status == "skipped" and reason.startswith("cannot decode image (cv2.error: OpenCV(4.x) resize.cpp")


def test_decoder_exception_other_than_image_error_drops_only_that_file_in_training_pipeline(
    tmp_path, monkeypatch
):
    pytest.importorskip("tensorflow")
    from edgecnn.training.pipeline import make_dataset

    paths = _photos(tmp_path / "a", 3)
    _crash_on(monkeypatch, {"photo-1.png": RuntimeError("decoder blew up")})
    _, skipped, kept = make_dataset(
        [(p, 0) for p in paths], SPEC, batch_size=2, shuffle=False, seed=0, cache_file=None
    )
    assert kept == 2
    assert skipped == [(paths[1], "cannot decode image (RuntimeError: decoder blew up)")]


# --- 3. HEIC and AVIF photos are listed, and decoded or skipped with what to install -------------------------


def test_heic_photo_in_a_folder_is_listed_and_skipped_with_what_to_install(tmp_path, without_pillow_heif):
    folder = tmp_path / "phone"
    _photos(folder, 2)
    (folder / "phone.heic").write_bytes(_iso_box(b"heic"))
    (folder / "burst.HEIF").write_bytes(_iso_box(b"mif1"))
    rows = _classify(folder)
    assert rows["phone.heic"] == ("skipped", HEIF_REASON)
    assert rows["burst.HEIF"] == ("skipped", HEIF_REASON)
    assert rows["photo-0.png"][0] == rows["photo-1.png"][0] == "ok"


def test_avif_photo_in_a_folder_is_classified_or_skipped_with_what_to_install(tmp_path, monkeypatch):
    folder = tmp_path / "phone"
    _photos(folder, 1)
    if features.check("avif"):
        (folder / "modern.avif").write_bytes(_avif_bytes())
        assert _classify(folder)["modern.avif"][0] == "ok"
        monkeypatch.setattr(imaging, "can_read_avif", lambda: False, raising=False)  # as on an older Pillow
    else:
        (folder / "modern.avif").write_bytes(_iso_box(b"avif"))
    status, reason = _classify(folder)["modern.avif"]
    assert status == "skipped"
    assert reason.startswith("AVIF image: this Pillow cannot read AVIF") and "pip install" in reason


def test_heic_and_avif_in_a_training_class_folder_are_listed_and_skipped_with_the_reason(
    tmp_path, monkeypatch, without_pillow_heif
):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        _photos(root / name, 2)
    (root / "cat" / "phone.heic").write_bytes(_iso_box(b"heic"))
    (root / "dog" / "modern.avif").write_bytes(_avif_bytes() if features.check("avif") else _iso_box(b"avif"))
    monkeypatch.setattr(imaging, "can_read_avif", lambda: False, raising=False)
    listed = list_class_folder(root)
    names = {p.name for p, _ in listed.samples}
    assert {"phone.heic", "modern.avif"} <= names
    assert not [p for p, _ in listed.skipped if p.suffix in (".heic", ".avif")]

    pytest.importorskip("tensorflow")
    from edgecnn.training.pipeline import make_dataset

    _, skipped, kept = make_dataset(listed.samples, SPEC, batch_size=4, shuffle=False, seed=0)
    reasons = {p.name: r for p, r in skipped}
    assert kept == 4
    assert reasons["phone.heic"] == HEIF_REASON
    assert reasons["modern.avif"].startswith("AVIF image: this Pillow cannot read AVIF")


# --- 4. Importing and using edgecnn leaves process-wide state alone ------------------------------------------

_GLOBALS_SCRIPT = r"""
import importlib, json, os, pkgutil, sys, tempfile, warnings
from pathlib import Path

os.umask(0o027)
import cv2
cv2.setNumThreads(3)
import matplotlib
matplotlib.use("pdf")
import numpy as np
import onnxruntime
import onnxruntime.capi._pybind_state as pybind
from PIL import Image

logger_calls = []
onnxruntime.set_default_logger_severity = lambda *a: logger_calls.append(a)
pybind.set_default_logger_severity = lambda *a: logger_calls.append(a)
before = {
    "MAX_IMAGE_PIXELS": Image.MAX_IMAGE_PIXELS,
    "cv2 threads": cv2.getNumThreads(),
    "matplotlib backend": matplotlib.get_backend(),
}

import edgecnn
for package in ("edgecnn.core", "edgecnn.runtime", "edgecnn.apps"):
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")
model = edgecnn.load("models/shapes-cnn.int8.onnx")
prediction = model.predict("samples/circle-1.jpg")

from edgecnn.training import plots
out = Path(tempfile.mkdtemp())
plots.plot_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, out / "curves.png", phase_starts=[1])
plots.plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], out / "confusion.png")
plots.plot_misclassified([np.zeros((8, 8, 3), np.uint8)], ["a"], ["b"], [0.9], out / "wrong.png")

after = {
    "MAX_IMAGE_PIXELS": Image.MAX_IMAGE_PIXELS,
    "cv2 threads": cv2.getNumThreads(),
    "matplotlib backend": matplotlib.get_backend(),
}
print(json.dumps({
    "before": before,
    "after": after,
    "umask": oct(os.umask(0)),
    "logger_calls": logger_calls,
    "plots": sorted(p.name for p in out.iterdir() if p.stat().st_size > 0),
    "label": prediction.label,
}))
"""


def test_importing_and_using_edgecnn_leaves_process_wide_state_alone():
    pytest.importorskip("matplotlib")
    result = subprocess.run(
        [sys.executable, "-c", _GLOBALS_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["after"] == state["before"]
    assert state["umask"] == oct(0o027)
    assert state["logger_calls"] == [], "ONNX Runtime's process-wide default logger was changed"
    assert state["plots"] == ["confusion.png", "curves.png", "wrong.png"]
    assert state["label"]


# --- 5. Decoding in threads never touches the process-wide warnings filters -----------------------------------


def _bad_exif_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(gradient_rgb()).save(buf, format="JPEG")
    good = buf.getvalue()
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\x12\x00\x99" * 8
    path.write_bytes(good[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + good[2:])
    return path


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's own, through the filters
def test_decoding_in_threads_never_swaps_the_warnings_filters(tmp_path, monkeypatch):
    files = []
    for i in range(6):
        files.append(_bad_exif_jpeg(tmp_path / f"bad-exif-{i}.jpg"))
        files.append(jpeg_with_orientation(gradient_rgb(), tmp_path / f"rotated-{i}.jpg", 6))
        files.append(save(gradient_rgb(), tmp_path / f"plain-{i}.png"))
    real = warnings.catch_warnings

    def catch_warnings(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("edgecnn."):
            raise AssertionError(f"{caller} swapped the process-wide warnings filters")
        return real(*args, **kwargs)

    monkeypatch.setattr(warnings, "catch_warnings", catch_warnings)
    filters = warnings.filters
    snapshot = list(filters)
    changed: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if warnings.filters is not filters or warnings.filters != snapshot:
                changed.append("warnings.filters changed while decoding")
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = list(decode_parallel(files * 4, SPEC, workers=8))
    finally:
        stop.set()
        watcher.join()
    assert [r.error for r in results if r.error] == []
    assert changed == []
    assert warnings.filters is filters and warnings.filters == snapshot
    assert imaging.decode_image(files[1]).shape == (60, 40, 3)  # still turned upright (EXIF orientation 6)
    assert imaging.decode_image(files[0]).shape == (40, 60, 3)
