"""Reliability: bounded memory over 20,000 files and 10,000 frames, the bad-input corpus, and SIGKILL trials.

(a) `edgecnn classify` over 20,000 generated images (-o out.csv) in a subprocess whose RSS is sampled every
    0.1 s from /proc/PID/status; peak RSS at 10%, 50% and 100% of the files, against a 2,000-file run
    measured the same way (the baseline).
(b) `edgecnn webcam --source VIDEO --no-display --max-frames 10000` on a generated 320x240 video; RSS at
    frame ~1,000 against the end.
(c) the bad-input corpus (tests/badinputs.py) through `edgecnn classify`, flat and recursive: kinds tried,
    files, tracebacks, outcomes that differ from the documented ones; then SIGKILL trials of classify
    (results file valid after each kill, --resume completes it: lost and duplicated results counted) and of
    export (the output path never holds a partial model).

    python benchmarks/reliability.py [--model runs/cats_dogs-cnn/model.int8.onnx] [--run runs/cats_dogs-cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from common import REPO, write_result

sys.path.insert(0, str(REPO / "tests"))

MB = 1024 * 1024


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class LineCounter:
    """Counts the complete lines of a file that another process is appending to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return self.lines
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


def sample_run(cmd: list[str], progress: Callable[[], int], interval: float = 0.1) -> dict:
    """Run ``cmd``, sampling (seconds, RSS bytes, progress) every ``interval`` until it exits."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int, int]] = []
    out: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        out[name] = stream.read()

    threads = [
        threading.Thread(target=drain, args=(n, s))
        for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for t in threads:
        t.start()
    while proc.poll() is None:
        rss = rss_bytes(proc.pid)
        if rss is not None:
            samples.append((time.perf_counter() - t0, rss, progress()))
        time.sleep(interval)
    for t in threads:
        t.join()
    return {
        "returncode": proc.returncode,
        "seconds": time.perf_counter() - t0,
        "samples": samples,
        "final_progress": progress(),
        "stdout": out.get("stdout", b"").decode("utf-8", "replace"),
        "stderr": out.get("stderr", b"").decode("utf-8", "replace"),
    }


def peak_until(samples: list[tuple[float, int, int]], done: int) -> int:
    """Highest RSS among the samples taken while progress was at most ``done`` (at least the first one)."""
    eligible = [rss for _, rss, p in samples if p <= done] or [samples[0][1]]
    return max(eligible)


def write_images(folder: Path, count: int, size: int = 32, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    for i in range(count):
        image = np.roll(base, i % size, axis=i % 2)
        image[: size // 4, : size // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i:05d}.png"), image)


def classify_memory(model: Path, work: Path, files: int) -> dict:
    folder = work / f"images-{files}"
    write_images(folder, files)
    out = work / f"out-{files}.csv"
    counter = LineCounter(out)
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "classify",
        str(folder),
        "--model",
        str(model),
        "-o",
        str(out),
        "-q",
    ]
    run = sample_run(cmd, lambda: max(counter.count() - 1, 0))  # minus the CSV header
    if run["returncode"] != 0:
        sys.exit(f"classify over {files} files failed ({run['returncode']}): {run['stderr'][-2000:]}")
    samples = run["samples"]
    peaks = {f"{int(f * 100)}%": peak_until(samples, int(f * files)) for f in (0.1, 0.5, 1.0)}
    growth = (peaks["100%"] - peaks["50%"]) / peaks["50%"]
    rows = run["final_progress"]
    return {
        "files": files,
        "rows_written": rows,
        "seconds": round(run["seconds"], 2),
        "images_per_second": round(files / run["seconds"], 1),
        "samples": len(samples),
        "peak_rss_mb": {k: round(v / MB, 1) for k, v in peaks.items()},
        "last_half_growth": round(growth, 4),
    }


def webcam_memory(model: Path, work: Path, frames: int) -> dict:
    from edgecnn.training.synthetic import write_video

    video = work / "long.mp4"
    t = time.perf_counter()
    written = write_video(video, seconds_per_class=frames / 3 / 30 + 1, fps=30, width=320, height=240)
    video_seconds = time.perf_counter() - t
    assert written >= frames, written
    lines = work / "frames.jsonl"
    counter = LineCounter(lines)
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "webcam",
        "--model",
        str(model),
        "--source",
        str(video),
        "--no-display",
        "--max-frames",
        str(frames),
        "--jsonl",
        str(lines),
        "--json",
    ]
    run = sample_run(cmd, counter.count)
    if run["returncode"] != 0:
        sys.exit(f"webcam failed ({run['returncode']}): {run['stderr'][-2000:]}")
    summary = json.loads(run["stdout"])
    samples = run["samples"]
    at_1000 = min(samples, key=lambda s: abs(s[2] - 1000))
    end = samples[-1]
    return {
        "video": {
            "frames": written,
            "width": 320,
            "height": 240,
            "seconds_to_write": round(video_seconds, 1),
        },
        "frames_classified": run["final_progress"],
        "summary_frames": {k: summary.get(k) for k in ("frames_read", "frames_classified", "frames_dropped")},
        "fps": summary.get("fps"),
        "seconds": round(run["seconds"], 2),
        "rss_mb_at_frame_1000": round(at_1000[1] / MB, 1),
        "rss_frame_sampled_near_1000": at_1000[2],
        "rss_mb_at_end": round(end[1] / MB, 1),
        "rss_frame_sampled_at_end": end[2],
        "peak_rss_mb": round(max(s[1] for s in samples) / MB, 1),
        "growth_after_frame_1000": round((end[1] - at_1000[1]) / at_1000[1], 4),
        "samples": len(samples),
    }


def corpus_run(model: Path, work: Path) -> dict:
    from badinputs import CASES, outcome_problems, restore_permissions, vanish_after_listing, write_flat
    from typer.testing import CliRunner

    from edgecnn.cli import app

    runs = {}
    for consumer, extra in (("classify", []), ("classify-r", ["-r"])):
        root = work / f"corpus-{consumer}"
        cases, not_here = write_flat(root)  # a fresh copy per run: the vanishing file is deleted by each
        entries = len(os.listdir(root))
        out = work / f"corpus-{consumer}.jsonl"
        with vanish_after_listing() as deleted:
            result = CliRunner().invoke(
                app, ["classify", str(root), "--model", str(model), "-o", str(out), *extra]
            )
        restore_permissions(root)
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        results = {r["path"]: (None if r["status"] == "ok" else r["error"]) for r in rows}
        paths = [r["path"] for r in rows]
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        runs[consumer] = {
            "exit_code": result.exit_code,
            "tracebacks": result.output.count("Traceback") + int(crashed),
            "rows": len(rows),
            "classified": sum(r["status"] == "ok" for r in rows),
            "skipped": sum(r["status"] == "skipped" for r in rows),
            "duplicated": len(paths) - len(set(paths)),
            "deleted_after_listing": len(deleted),
            "outcome_problems": outcome_problems(consumer, cases, results),
        }
    return {
        "kinds_defined": len(CASES),
        "kinds_tried": len(cases),
        "kinds_not_applicable_here": not_here,
        "entries": entries,
        "runs": runs,
    }


def crash_run(model: Path, work: Path, trials: int, files: int) -> dict:
    import test_crash

    folder = work / "crash-images"
    test_crash.write_folder(folder, files)
    expected = test_crash.reference_results(folder, model, work / "crash-reference.jsonl")
    t = time.perf_counter()
    report = test_crash.crash_trials(folder, model, work, expected, trials=trials, seed=7)
    return {
        "files": len(expected),
        "trials": report.trials,
        "killed_mid_run": report.killed,
        "killed_before_the_file_existed": report.no_file_yet,
        "torn_last_lines": report.torn_tails,
        "rows_before_resume": report.rows_before_resume,
        "invalid_files_after_kill": report.invalid_files,
        "lost_results": report.missing,
        "duplicated_results": report.duplicated,
        "wrong_results": report.wrong,
        "seconds": round(time.perf_counter() - t, 1),
    }


def export_kill_run(run: Path, work: Path, trials: int) -> dict:
    import test_crash

    folder = work / "export-kills"
    folder.mkdir()
    results = test_crash.export_trials(run, folder, trials=trials, seed=9)
    return {
        "run": str(run),
        "trials": len(results),
        "killed": sum(r["code"] != 0 for r in results),
        "killed_while_the_temporary_file_existed": sum(r["seen_partial"] for r in results),
        "output_path_states": {
            s: sum(r["target"] == s for r in results) for s in ("absent", "previous model", "complete model")
        },
        "partial_output_at_the_path": 0,  # check_export_target raises on anything else
        "temporary_files_left_beside_it": sorted({n for r in results for n in r["partials"]}),
    }


def markdown(data: dict) -> str:
    a2, a20 = data["classify_memory"]["baseline"], data["classify_memory"]["large"]
    w = data["webcam_memory"]
    c = data["corpus"]
    k = data["crash_trials"]
    e = data.get("export_kills")
    flat = "flat" if data["classify_flat"] else "**growing**"
    lines = [
        "## Reliability\n",
        f"Bounded memory, the bad-input corpus and crash consistency (`benchmarks/reliability.py`, model "
        f"`{data['model']}`). RSS is read from /proc every 0.1 s while the command runs in its own process.\n",
        "| check | baseline | result | verdict |",
        "|---|---|---|---|",
        f"| `classify` peak RSS at 10% / 50% / 100% of {a20['files']:,} files | {a2['files']:,} files: {a2['peak_rss_mb']['100%']:.0f} MB | "
        f"{a20['peak_rss_mb']['10%']:.0f} / {a20['peak_rss_mb']['50%']:.0f} / {a20['peak_rss_mb']['100%']:.0f} MB "
        f"({a20['images_per_second']:.0f} images/s) | {flat}: last-half growth {a20['last_half_growth'] * 100:+.1f}%, "
        f"{data['classify_ratio']:.2f}x the {a2['files']:,}-file peak |",
        f"| `webcam` RSS over {w['frames_classified']:,} frames (320x240 video) | frame ~1,000: {w['rss_mb_at_frame_1000']:.0f} MB | "
        f"end: {w['rss_mb_at_end']:.0f} MB, peak {w['peak_rss_mb']:.0f} MB ({w['fps']:.0f} fps) | "
        f"{'flat' if abs(w['growth_after_frame_1000']) < 0.1 else '**growing**'}: {w['growth_after_frame_1000'] * 100:+.1f}% |",
        f"| bad-input corpus through `classify` (flat and `-r`) | {c['kinds_tried']} kinds ({c['entries']} files and folders) | "
        f"tracebacks: {sum(r['tracebacks'] for r in c['runs'].values())}; outcomes not as documented: "
        f"{sum(len(r['outcome_problems']) for r in c['runs'].values())}; exit codes {', '.join(str(r['exit_code']) for r in c['runs'].values())} | "
        f"{'as documented' if data['corpus_ok'] else '**not as documented**'} |",
        f"| `classify` killed with SIGKILL, then `--resume` ({k['files']:,} files; .csv, .jsonl, .json) | {k['trials']} trials, "
        f"{k['killed_mid_run']} killed mid-run | invalid files {k['invalid_files_after_kill']}, lost {k['lost_results']}, "
        f"duplicated {k['duplicated_results']}, wrong {k['wrong_results']} | {'consistent' if data['crash_ok'] else '**inconsistent**'} |",
    ]
    if e:
        states = ", ".join(f"{v} {s}" for s, v in e["output_path_states"].items() if v)
        lines.append(
            f"| `export` killed with SIGKILL | {e['trials']} trials, {e['killed_while_the_temporary_file_existed']} while "
            f"the model was being written | output path: {states}; partial models at the path: 0 | atomic |"
        )
    if c["kinds_not_applicable_here"]:
        lines.append(
            "\nNot exercised on this machine: "
            + "; ".join(f"{kind} ({why})" for kind, why in c["kinds_not_applicable_here"].items())
            + " (the test suite simulates that case)."
        )
    if e and e["temporary_files_left_beside_it"]:
        lines.append(
            f"\nA SIGKILL during `export` can leave its hidden temporary file beside the output "
            f"({len(e['temporary_files_left_beside_it'])} left after {e['trials']} trials); the output path itself only ever "
            "holds a complete model."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "cats_dogs-cnn" / "model.int8.onnx")
    parser.add_argument(
        "--run", type=Path, default=REPO / "runs" / "cats_dogs-cnn", help="Run folder for the export kills."
    )
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--baseline-files", type=int, default=2_000)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--crash-trials", type=int, default=20)
    parser.add_argument("--crash-files", type=int, default=2_000)
    parser.add_argument("--export-trials", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.argv[0] = str(Path(sys.argv[0]).resolve())  # recorded in the result file after the chdir below
    os.chdir(REPO)  # run folders record their data relative to the repository

    with tempfile.TemporaryDirectory(prefix="edgecnn-reliability-") as tmp:
        work = Path(tmp)
        model = args.model.resolve()
        model_name = str(model.relative_to(REPO)) if model.is_relative_to(REPO) else model.name
        if not model.is_file():
            from onnxmodels import mean_colour_model

            model = mean_colour_model(work / "mean-colour.onnx", size=96)
            model_name = "a 96 px test model (tests/onnxmodels.py; no trained run found)"
        data: dict = {"model": model_name}
        print(f"classify memory: {args.baseline_files} then {args.files} files...", flush=True)
        base = classify_memory(model, work, args.baseline_files)
        big = classify_memory(model, work, args.files)
        data["classify_memory"] = {"baseline": base, "large": big}
        data["classify_ratio"] = round(big["peak_rss_mb"]["100%"] / base["peak_rss_mb"]["100%"], 3)
        data["classify_flat"] = big["last_half_growth"] < 0.10 and data["classify_ratio"] < 1.10
        print(json.dumps(data["classify_memory"]), flush=True)

        print(f"webcam memory: {args.frames} frames...", flush=True)
        data["webcam_memory"] = webcam_memory(model, work, args.frames)
        print(json.dumps(data["webcam_memory"]), flush=True)

        print("bad-input corpus...", flush=True)
        data["corpus"] = corpus_run(model, work)
        data["corpus_ok"] = all(
            r["tracebacks"] == 0
            and not r["outcome_problems"]
            and r["exit_code"] == 1
            and r["duplicated"] == 0
            for r in data["corpus"]["runs"].values()
        )
        print(json.dumps(data["corpus"]), flush=True)

        print(f"SIGKILL trials: {args.crash_trials}...", flush=True)
        data["crash_trials"] = crash_run(model, work, args.crash_trials, args.crash_files)
        k = data["crash_trials"]
        data["crash_ok"] = (
            k["invalid_files_after_kill"]
            == k["lost_results"]
            == k["duplicated_results"]
            == k["wrong_results"]
            == 0
        )
        print(json.dumps(data["crash_trials"]), flush=True)

        run = args.run.resolve()
        if args.export_trials and (run / "model.keras").is_file():
            print(f"export SIGKILL trials: {args.export_trials}...", flush=True)
            data["export_kills"] = export_kill_run(run, work, args.export_trials)
            print(json.dumps(data["export_kills"]), flush=True)
        data["markdown"] = markdown(data)
    print(data["markdown"])
    write_result("reliability", data)


if __name__ == "__main__":
    main()
