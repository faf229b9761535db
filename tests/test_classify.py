"""classify: outputs, bad input, resume, sorting, providers, and the inference path without TensorFlow."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from imagefiles import save
from onnxmodels import mean_colour_model, solid
from typer.testing import CliRunner

from edgecnn.apps.classify import ClassifyConfig, classify_paths
from edgecnn.apps.outputs import read_done
from edgecnn.cli import app
from edgecnn.core.errors import ProviderError
from edgecnn.runtime.predictor import Predictor

runner = CliRunner()
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


@pytest.fixture()
def model(tmp_path):
    return mean_colour_model(tmp_path / "colour.onnx")


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(7):
        for name, colour in COLOURS.items():
            save(solid(colour), root / f"{name}_{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not listed: not an image name")
    sub = root / "sub"
    sub.mkdir()
    save(solid(COLOURS["red"]), sub / "deep_red.png")
    return root


def test_labels_and_confidences_are_right(model, photos):
    predictor = Predictor(model, provider="cpu")
    rows = []
    summary = classify_paths(
        ClassifyConfig(paths=[photos], batch_size=4, top_k=2), predictor, on_rows=rows.extend
    )
    ok = [r for r in rows if r.status == "ok"]
    assert summary.classified == 21 and summary.skipped == 2
    for row in ok:
        assert row.label == os.path.basename(row.path).split("_")[0]
        assert len(row.top_k) == 2 and row.top_k[0][1] >= row.top_k[1][1]
    assert {r.path.split(os.sep)[-1] for r in rows if r.status == "skipped"} == {"broken.jpg", "empty.png"}
    assert summary.per_label == {"red": 7, "green": 7, "blue": 7}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_output_formats(model, photos, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    result = runner.invoke(
        app, ["classify", str(photos), "-r", "--model", str(model), "-o", str(out), "--top-k", "3"]
    )
    assert result.exit_code == 1, result.output  # two files were skipped
    if suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
        assert set(rows[0]) == {"path", "status", "label", "confidence", "top_k", "error"}
        top = next(r for r in rows if r["status"] == "ok")["top_k"].split(";")
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        top = next(r for r in rows if r["status"] == "ok")["top_k"]
    else:
        rows = json.loads(out.read_text())
        top = next(r for r in rows if r["status"] == "ok")["top_k"]
    assert len(rows) == 24 and len(top) == 3
    statuses = sorted(r["status"] for r in rows)
    assert statuses.count("skipped") == 2
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert all(r["error"] for r in skipped)
    assert len(read_done(out)) == 24


def test_nothing_to_classify_is_refused_before_the_model_opens_and_an_empty_folder_says_so(model, tmp_path):
    out = tmp_path / "r.csv"
    result = runner.invoke(
        app, ["classify", str(tmp_path / "gone"), str(tmp_path / "also-gone"), "-o", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: nothing to classify: {tmp_path / 'gone'}, {tmp_path / 'also-gone'} not found"
    ]  # no model line: refused before the shipped model was opened
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    result = runner.invoke(app, ["classify", str(empty), "--model", str(model)])
    assert result.exit_code == 0
    assert "no image files found (edgecnn reads .jpg, .jpeg, .png" in result.stderr
    save(solid(COLOURS["blue"]), empty / "b.png")  # one missing path among real ones: a skipped row
    result = runner.invoke(app, ["classify", str(empty), str(tmp_path / "gone"), "--model", str(model)])
    assert result.exit_code == 1 and "skipped" in result.stderr and "no image files" not in result.stderr


def test_exit_codes(model, photos, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    save(solid(COLOURS["blue"]), good / "b.png")
    assert runner.invoke(app, ["classify", str(good), "--model", str(model)]).exit_code == 0
    assert runner.invoke(app, ["classify", str(photos), "--model", str(model)]).exit_code == 1
    result = runner.invoke(app, ["classify", str(good), "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2 and "model file not found" in result.stderr
    result = runner.invoke(app, ["classify", str(good), "--model", str(model), "--batch-size", "0"])
    assert result.exit_code == 2 and "--batch-size" in result.stderr


def test_a_missing_input_path_beside_others_is_reported_not_fatal(model, tmp_path):
    (tmp_path / "in").mkdir()
    save(solid(COLOURS["blue"]), tmp_path / "in" / "b.png")
    paths = [str(tmp_path / "nope"), str(tmp_path / "in")]
    result = runner.invoke(app, ["classify", *paths, "--model", str(model), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["skipped"] == 1 and json.loads(result.stdout)["classified"] == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_interrupted_then_resumed_has_no_duplicates_or_losses(model, photos, tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    predictor = Predictor(model, provider="cpu")
    batches = {"n": 0}

    def stop_after_two_batches(done, total):
        batches["n"] += 1
        if batches["n"] == 2:
            raise KeyboardInterrupt

    config = ClassifyConfig(paths=[photos], batch_size=5, output=out, recursive=True)
    first = classify_paths(config, predictor, on_progress=stop_after_two_batches)
    assert first.interrupted
    partial = read_done(out)
    assert 0 < len(partial) < 24
    again = ClassifyConfig(paths=[photos], batch_size=5, output=out, recursive=True, resume=True)
    second = classify_paths(again, predictor)
    assert second.already_done == len(partial)
    if suffix == ".json":
        paths = [r["path"] for r in json.loads(out.read_text())]
    elif suffix == ".jsonl":
        paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    else:
        paths = [r["path"] for r in csv.DictReader(out.open())]
    assert len(paths) == len(set(paths)) == 24


def test_resume_drops_a_torn_last_line(model, photos, tmp_path):
    out = tmp_path / "r.jsonl"
    predictor = Predictor(model, provider="cpu")
    classify_paths(ClassifyConfig(paths=[photos], output=out), predictor)
    text = out.read_text()
    lines = text.splitlines()
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])  # a kill mid-write
    classify_paths(ClassifyConfig(paths=[photos], output=out, resume=True), predictor)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len({r["path"] for r in rows}) == len(lines)


def test_existing_output_needs_resume_or_force(model, photos, tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("path,status\n")
    result = runner.invoke(app, ["classify", str(photos), "--model", str(model), "-o", str(out)])
    assert result.exit_code == 2 and "--resume" in result.stderr


def test_sort_into_copy_move_and_clash(model, photos, tmp_path):
    target = tmp_path / "sorted"
    (target / "red").mkdir(parents=True)
    (target / "red" / "red_0.png").write_bytes(b"already here")
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "--sort-into", str(target), "-q"]
    )
    assert result.exit_code == 1
    assert (target / "red" / "red_0.png").read_bytes() == b"already here"  # never overwritten
    assert (target / "red" / "red_0_1.png").is_file()
    assert len(list((target / "green").iterdir())) == 7
    assert (photos / "red_1.png").exists()  # copy keeps sources
    loose = tmp_path / "loose"
    loose.mkdir()
    save(solid(COLOURS["red"]), loose / "r1.png")
    save(solid(COLOURS["red"]), loose / "r2.png")
    save(solid((128, 128, 128)), loose / "grey.png")  # equal channels: confidence 1/3
    moved = tmp_path / "moved"
    result = runner.invoke(
        app,
        [
            "classify",
            str(loose),
            "--model",
            str(model),
            "--sort-into",
            str(moved),
            "--move",
            "--min-confidence",
            "0.9",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert list(loose.iterdir()) == []  # moved: sources gone only after their copies landed
    assert sorted(p.name for p in (moved / "red").iterdir()) == ["r1.png", "r2.png"]
    assert [p.name for p in (moved / "_uncertain").iterdir()] == ["grey.png"]


def test_sort_into_cannot_escape_target_whatever_the_labels(tmp_path):
    from edgecnn.apps.sorting import Sorter, safe_folder_name

    for hostile in ("../../etc", "/abs/path", "..", ".", "a/../../b", "\x00x", "C:\\win", ".hidden"):
        name = safe_folder_name(hostile)
        assert "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")
    sorter = Sorter(tmp_path / "t")
    src = tmp_path / "x.png"
    src.write_bytes(b"x")
    landed = sorter.place(src, "../../../escape", 0.9)
    assert landed.resolve().is_relative_to((tmp_path / "t").resolve())


def test_recursive_listing_does_not_follow_symlink_loops_twice(model, tmp_path):
    root = tmp_path / "loop"
    (root / "a").mkdir(parents=True)
    save(solid(COLOURS["red"]), root / "a" / "one.png")
    (root / "a" / "back").symlink_to(root)
    predictor = Predictor(model, provider="cpu")
    rows = []
    summary = classify_paths(ClassifyConfig(paths=[root], recursive=True), predictor, on_rows=rows.extend)
    assert summary.classified == 1 and [os.path.basename(r.path) for r in rows] == ["one.png"]


def test_explicit_cuda_fails_with_one_line_reason_and_fallback_works(model, tmp_path):
    good = tmp_path / "g"
    good.mkdir()
    save(solid(COLOURS["red"]), good / "r.png")
    result = runner.invoke(app, ["classify", str(good), "--model", str(model), "--provider", "cuda"])
    if result.exit_code == 0:
        pytest.skip("CUDA really works on this machine")
    assert result.exit_code == 2
    assert "cuda cannot start" in result.stderr and "--fallback" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(
        app, ["classify", str(good), "--model", str(model), "--provider", "cuda", "--fallback"]
    )
    assert result.exit_code == 0 and "fell back" in result.stderr


def test_simulated_cuda_that_cannot_start(model, monkeypatch):
    """A provider that ONNX Runtime lists but silently drops is caught through get_providers()."""
    import edgecnn.runtime.predictor as rt

    real = rt.import_onnxruntime

    def fake_ort():
        ort = real()

        class FakeOrt:
            def __getattr__(self, name):
                return getattr(ort, name)

            @staticmethod
            def get_available_providers():
                return ["CUDAExecutionProvider", "CPUExecutionProvider"]

            @staticmethod
            def InferenceSession(path, sess_options=None, providers=None):
                os.write(
                    2,
                    b"Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file\n",
                )
                return ort.InferenceSession(
                    path, sess_options=sess_options, providers=["CPUExecutionProvider"]
                )

        return FakeOrt()

    monkeypatch.setattr(rt, "import_onnxruntime", fake_ort)
    monkeypatch.setattr(rt, "has_nvidia_device", lambda: True)
    with pytest.raises(ProviderError, match="libcudnn.so.9"):
        Predictor(model, provider="cuda")
    predictor = Predictor(model, provider="cuda", fallback=True)
    assert predictor.provider == "cpu" and "libcudnn" in predictor.info.note
    auto = Predictor(model, provider="auto")
    assert auto.provider == "cpu"


def test_unknown_provider_lists_choices(model):
    with pytest.raises(ProviderError, match="auto, cpu, cuda, tensorrt"):
        Predictor(model, provider="rocm")


def test_onnxruntime_clash_is_detected_with_fix():
    from edgecnn.runtime.providers import runtime_clash_message

    message = runtime_clash_message([("onnxruntime", "1.22.0"), ("onnxruntime-gpu", "1.31.1")])
    assert "onnxruntime 1.22.0" in message and "onnxruntime-gpu 1.31.1" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in message
    assert runtime_clash_message([("onnxruntime-gpu", "1.31.1")]) is None


def test_classify_never_imports_tensorflow(model, photos):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from edgecnn.cli import app\n"
        f"r = CliRunner().invoke(app, ['classify', {str(photos)!r}, '--model', {str(model)!r}, '-q'])\n"
        "assert r.exit_code in (0, 1), r.output\n"
        "print('IMPORTED', [m for m in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr


def test_memory_stays_bounded_by_the_window(model, tmp_path):
    """decode_parallel never holds more than its window of decoded images."""
    from edgecnn.core.contract import InputSpec
    from edgecnn.core.decode import decode_parallel

    path = save(solid(COLOURS["red"]), tmp_path / "x.png")
    in_flight = {"max": 0, "now": 0}

    def items():
        for _ in range(500):
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            yield path

    for _ in decode_parallel(items(), InputSpec.square(16), workers=2, window=16):
        in_flight["now"] -= 1
    assert in_flight["max"] <= 17


def test_predictor_batches_and_top_k(model):
    predictor = Predictor(model, provider="cpu")
    probs = predictor.predict(
        [np.full((16, 16, 3), (200, 10, 10), np.uint8), np.full((16, 16, 3), (10, 10, 200), np.uint8)]
    )
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    top = predictor.top_k(probs, 5)
    assert [t[0][0] for t in top] == ["red", "blue"] and len(top[0]) == 3


def test_fixed_batch_model_classifies_a_last_partial_batch(tmp_path):
    """A graph with a fixed batch dimension above 1 pads the last partial batch instead of failing mid-run."""
    import onnx

    path = mean_colour_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(model, str(path))
    predictor = Predictor(path, provider="cpu")
    assert predictor.fixed_batch == 4
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 0, 0), (0, 200, 0)]
    images = [solid(c, size=16) for c in colours]
    probs = predictor.predict(images)
    assert probs.shape == (5, 3)
    assert [predictor.labels[i] for i in probs.argmax(axis=1)] == ["red", "green", "blue", "red", "green"]
