"""Every kind of bad input (tests/badinputs.py) through classify, train, export calibration and evaluate.

For each consumer: no traceback, every bad file named with a reason, every good file used exactly once, and
the documented exit codes (0 all processed, 1 some skipped, 2 usage or model errors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from badinputs import (
    CASES,
    UNREADABLE,
    VANISHING,
    Case,
    applicable_cases,
    outcome_problems,
    picture,
    restore_permissions,
    used_count,
    vanish_after_listing,
    write_flat,
    write_labelled,
)
from onnxmodels import mean_colour_model
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.imaging import IMAGE_SUFFIXES

pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # the bad-EXIF case
runner = CliRunner()
LABELS = ("circle", "square", "triangle")  # the labels of the trained_run fixture, in the same order


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mean_colour_model(tmp_path_factory.mktemp("model") / "m.onnx", labels=LABELS)


@pytest.fixture()
def flat(tmp_path):
    root = tmp_path / "corpus"
    cases, not_here = write_flat(root)
    yield root, cases, not_here
    restore_permissions(root)


@pytest.fixture()
def labelled(tmp_path):
    root = tmp_path / "labelled"
    placed, not_here = write_labelled(root)
    yield root, placed, not_here
    restore_permissions(root)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


def check_outcomes(consumer: str, cases: list[Case], results: dict[str, str | None]) -> None:
    """``results``: path -> None (used) or the skip reason. Every case must match its expectation."""
    problems = outcome_problems(consumer, cases, results)
    assert not problems, f"{consumer}:\n" + "\n".join(problems)


def test_corpus_has_every_required_kind():
    kinds = {c.kind for c in CASES}
    assert len(kinds) == len(CASES) >= 30
    required = (
        "zero-byte file",
        "truncated JPEG",
        "truncated PNG",
        "PNG named .jpg",
        "JPEG named .png",
        "text named .jpg",
        "HTML named .jpg",
        "PDF named .jpg",
        "CMYK JPEG",
        "progressive JPEG",
        "EXIF-rotated JPEG",
        "16-bit grey PNG",
        "palette PNG",
        "palette PNG with transparency",
        "grey+alpha PNG",
        "RGBA PNG",
        "animated GIF",
        "multi-page TIFF",
        "1x1 image",
        "1x10000 image",
        "decompression bomb header",
        "WebP",
        "HEIC",
        "name with spaces",
        "unicode name",
        "leading dash",
        "symbolic-link loop",
        "unreadable file (chmod 000)",
        "directory named x.jpg",
        "deleted between listing and reading",
    )
    assert not [k for k in required if k not in kinds]


def test_the_generated_files_are_what_they_claim(flat):
    root, cases, _ = flat
    with Image.open(root / "cmyk.jpg") as img:
        assert img.mode == "CMYK"
    with Image.open(root / "progressive.jpg") as img:
        assert img.info.get("progressive") or img.info.get("progression")
    with Image.open(root / "animated.gif") as img:
        assert img.n_frames == 3
    with Image.open(root / "pages.tiff") as img:
        assert img.n_frames == 3
    with Image.open(root / "sixteen-grey.png") as img:
        assert img.mode.startswith("I")
    with Image.open(root / "png-inside.jpg") as img:
        assert img.format == "PNG"
    assert (root / "huge.png").stat().st_size > 256 * 2**20
    assert (root / "x.jpg").is_dir() and (root / "loop" / "back").resolve() == root.resolve()


@pytest.mark.parametrize("recursive", [False, True], ids=["flat", "recursive"])
def test_classify_every_kind(flat, model, tmp_path, recursive):
    root, cases, _ = flat
    out = tmp_path / "out.jsonl"
    args = ["classify", str(root), "--model", str(model), "-o", str(out), "--batch-size", "4"]
    with vanish_after_listing() as deleted:
        result = runner.invoke(app, [*args, *(["-r"] if recursive else [])])
    no_traceback(result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert [p.name for p in deleted] == [VANISHING]
    assert result.exit_code == 1, result.output  # some files were skipped
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a file was reported twice"
    results = {r["path"]: (None if r["status"] == "ok" else r["error"]) for r in rows}
    check_outcomes("classify-r" if recursive else "classify", cases, results)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert f"{len(skipped)} skipped" in result.stderr
    for row in skipped[:10]:  # the first ten are named on the terminal too
        assert f"skipped {row['path']}: {row['error']}" in result.stderr


def check_labelled(consumer, root, placed, skipped, used_total):
    """Skipped files against the expectations, and the used count against what must have been used."""
    cases = [case for case, _ in placed.values()]
    results = {item["path"]: item["reason"] for item in skipped}
    assert len(results) == len(skipped), "a file was reported twice"
    # Every listed file that was not skipped was used: add them, so check_outcomes sees the whole picture.
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            path = str(Path(dirpath, name))
            if path not in results and Path(path).is_file() and Path(path).suffix.lower() in IMAGE_SUFFIXES:
                results[path] = None
    check_outcomes(consumer, cases, results)
    assert used_total == used_count(cases, consumer), "files were lost (or counted twice)"


@pytest.fixture(scope="module")
def trained_on_corpus(tmp_path_factory):
    """One `edgecnn train` run over the corpus laid out in two class folders."""
    root = tmp_path_factory.mktemp("train") / "labelled"
    placed, _ = write_labelled(root)
    out = root.parent / "run"
    args = [
        "train",
        str(root),
        "--arch",
        "cnn",
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--base-filters",
        "4",
        "--no-augment",
    ]
    with vanish_after_listing() as deleted:
        result = runner.invoke(app, [*args, "--batch-size", "8", "--out", str(out), "-q"])
    restore_permissions(root)
    return result, root, placed, deleted, out


@pytest.fixture(scope="module")
def exported_with_corpus(tmp_path_factory, trained_run, synth_dir):
    """`edgecnn export --int8` of the tiny run, calibrated on the corpus."""
    root = tmp_path_factory.mktemp("calib") / "labelled"
    placed, _ = write_labelled(root)
    target = root.parent / "m.onnx"
    args = ["export", str(trained_run), "-o", str(target), "--int8", "--calib", str(root)]
    # --eval points the parity check and the accuracy gate at the run's own images: only calibration reads
    # the corpus.
    args += ["--eval", str(synth_dir / "val"), "--max-accuracy-drop", "100", "--json"]
    with vanish_after_listing() as deleted:
        result = runner.invoke(app, args)
    restore_permissions(root)
    return result, root, placed, deleted, target


def test_train_every_kind(trained_on_corpus):
    result, root, placed, deleted, out = trained_on_corpus
    no_traceback(result.output)
    assert result.exit_code in (0, 1), result.output
    assert [p.name for p in deleted] == [VANISHING]
    report = json.loads((out / "report.json").read_text())
    used = report["data"]["train_images"] + report["data"]["val_images"]
    check_labelled("labelled", root, placed, report["skipped"], used)
    assert f"skipped {len(report['skipped'])} file(s)" in result.stderr


@pytest.mark.parametrize("kind", ["onnx", "keras"])
def test_evaluate_every_kind(labelled, model, trained_run, kind):
    root, placed, _ = labelled
    model_file = model if kind == "onnx" else trained_run / "model.keras"
    with vanish_after_listing() as deleted:
        result = runner.invoke(app, ["evaluate", str(model_file), str(root), "--json", "--batch-size", "8"])
    no_traceback(result.output)
    assert result.exit_code == 1, result.output
    assert [p.name for p in deleted] == [VANISHING]
    data = json.loads(result.stdout)
    check_labelled("labelled", root, placed, data["skipped"], data["count"])
    for item in data["skipped"][:10]:
        assert f"skipped {item['path']}: {item['reason']}" in result.stderr
    assert f"... and {len(data['skipped']) - 10} more skipped" in result.stderr


def test_export_calibration_every_kind(exported_with_corpus):
    result, root, placed, deleted, target = exported_with_corpus
    no_traceback(result.output)
    assert result.exit_code in (0, 1), result.output
    assert [p.name for p in deleted] == [VANISHING]
    int8 = json.loads(result.stdout)["int8"]
    check_labelled("calibration", root, placed, int8["skipped"], int8["calib_images"])
    assert target.is_file() and Path(int8["output"]).is_file()
    shown = [line for line in result.stderr.splitlines() if line.startswith("skipped calibration file")]
    assert len(shown) == 5 and f"... and {len(int8['skipped']) - 5} more skipped" in result.stderr


def test_train_exit_code_is_1_when_files_were_skipped(trained_on_corpus):
    assert trained_on_corpus[0].exit_code == 1


def test_export_exit_code_is_1_when_calibration_files_were_skipped(exported_with_corpus):
    assert exported_with_corpus[0].exit_code == 1


def test_evaluate_exit_codes(model, tmp_path):
    data = tmp_path / "data"
    for label in ("circle", "square"):
        (data / label).mkdir(parents=True)
        Image.fromarray(picture()).save(data / label / "a.png")
    result = runner.invoke(app, ["evaluate", str(model), str(data)])
    assert result.exit_code == 0, result.output
    (data / "circle" / "bad.jpg").write_bytes(b"")
    result = runner.invoke(app, ["evaluate", str(model), str(data)])
    assert result.exit_code == 1 and "bad.jpg: empty file" in result.stderr
    (data / "hexagon").mkdir()
    result = runner.invoke(app, ["evaluate", str(model), str(data)])
    no_traceback(result.output)
    assert result.exit_code == 2 and "hexagon" in result.stderr


def test_only_bad_files_is_a_one_line_error(model, trained_run, tmp_path):
    data = tmp_path / "data"
    for label in ("circle", "square"):
        (data / label).mkdir(parents=True)
        (data / label / "x.jpg").write_bytes(b"")
    result = runner.invoke(app, ["evaluate", str(model), str(data)])
    no_traceback(result.output)
    assert result.exit_code == 2 and "could be read" in result.stderr
    result = runner.invoke(app, ["classify", str(data / "circle"), "--model", str(model), "-q"])
    assert result.exit_code == 1  # every file skipped: still "some inputs failed", never 0
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    result = runner.invoke(app, ["export", str(trained_run), "-o", str(fp32), "--int8", "--calib", str(data)])
    no_traceback(result.output)
    assert result.exit_code == 2 and "no readable images" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 2  # the progress line and the error
    assert not fp32.exists() and not int8.exists()


def test_classify_exit_codes(model, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    Image.fromarray(picture()).save(good / "a.png")
    result = runner.invoke(app, ["classify", str(good), "--model", str(model), "-o", str(tmp_path / "a.csv")])
    assert result.exit_code == 0, result.output
    (good / "bad.jpg").write_bytes(b"")
    result = runner.invoke(app, ["classify", str(good), "--model", str(model), "-o", str(tmp_path / "b.csv")])
    assert result.exit_code == 1
    for model_file, words in (
        (tmp_path / "missing.onnx", "not found"),
        (good / "a.png", "ONNX"),
        (good, "folder"),
    ):
        result = runner.invoke(app, ["classify", str(good), "--model", str(model_file)])
        no_traceback(result.output)
        assert result.exit_code == 2 and words in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["classify", str(good), "--model", str(model), "--top-k", "0"])
    assert result.exit_code == 2 and "--top-k" in result.stderr


def test_unreadable_file_is_skipped_with_permission_denied(model, tmp_path):
    folder = tmp_path / "perm"
    cases, not_here = applicable_cases(tmp_path)
    if "unreadable file (chmod 000)" in not_here:
        pytest.skip(not_here["unreadable file (chmod 000)"])
    folder.mkdir()
    Image.fromarray(picture()).save(folder / "fine.png")
    case = next(c for c in cases if c.name == UNREADABLE)
    case.writer(folder / UNREADABLE)
    try:
        result = runner.invoke(app, ["classify", str(folder), "--model", str(model), "--json", "-q"])
    finally:
        restore_permissions(folder)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["classified"] == 1
    assert summary["skipped_examples"][0]["reason"] == "permission denied"


def test_permission_denied_reads_are_reported_even_as_root(model, tmp_path, monkeypatch):
    """The same path as chmod 000, simulated where permission bits do not stop reads (root)."""
    folder = tmp_path / "perm"
    folder.mkdir()
    Image.fromarray(picture()).save(folder / "fine.png")
    Image.fromarray(picture()).save(folder / UNREADABLE)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == UNREADABLE:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = runner.invoke(app, ["classify", str(folder), "--model", str(model), "--json", "-q"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["classified"] == 1
    assert summary["skipped_examples"] == [{"path": str(folder / UNREADABLE), "reason": "permission denied"}]


def test_non_utf8_file_names_survive_json_outputs_and_resume(model, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Image.fromarray(picture()).save(folder / name)
    (folder / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"")
    for suffix in (".jsonl", ".json", ".csv"):
        out = tmp_path / f"r{suffix}"
        result = runner.invoke(app, ["classify", str(folder), "--model", str(model), "-o", str(out), "-q"])
        no_traceback(result.output)
        assert result.exit_code == 1
        if suffix == ".csv":
            assert out.read_bytes().count(b"caf\xe9.png") == 1  # CSV keeps the original bytes
        else:
            text = out.read_bytes().decode("utf-8")  # JSON stays valid UTF-8
            rows = json.loads(text) if suffix == ".json" else [json.loads(x) for x in text.splitlines()]
            assert {r["path"] for r in rows} == {
                str(folder / name),
                str(folder / os.fsdecode(b"bad\xff.jpg")),
            }
        again = runner.invoke(
            app, ["classify", str(folder), "--model", str(model), "-o", str(out), "--resume", "-q"]
        )
        no_traceback(again.output)
        assert "2 already in" in again.stderr


def test_non_utf8_file_name_printed_to_a_strict_utf8_terminal(model, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    Image.fromarray(picture()).save(folder / os.fsdecode(b"caf\xe9.png"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # what an en_US.UTF-8 locale gives
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "classify", str(folder), "--model", str(model)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert b"Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr.decode("utf-8", "replace")


def test_resume_keeps_exit_code_1_when_the_file_holds_skipped_rows(model, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(picture()).save(folder / "a.png")
    (folder / "b.jpg").write_bytes(b"")
    out = tmp_path / "r.csv"
    first = runner.invoke(app, ["classify", str(folder), "--model", str(model), "-o", str(out), "-q"])
    assert first.exit_code == 1
    again = runner.invoke(app, ["classify", str(folder), "--model", str(model), "-o", str(out), "--resume"])
    assert again.exit_code == 1  # the same result file as an uninterrupted run: same exit code
