"""`classify --ray` against local `classify` on the same cores, and a simulated two-node cluster against one node.

Generates N photo-sized JPEGs (640x480, default 20,000) in a temporary folder (not in the repository), reads
them once so every run finds them in the page cache, then measures, one run each, on the same model and the
same files:
- local `classify`: the library call `edgecnn classify DIR -o results.csv` makes (decode threads + ONNX Runtime);
- Ray, one node: `classify_on_ray(..., address="local", num_cpus=CORES)`, the call behind `--ray local`;
- Ray, two nodes: a head and a worker node started with `ray.cluster_utils.Cluster` on 127.0.0.1, half the
  cores each, against one node of the same kind with all of them;
- where the time goes: read, decode + resize, model and result writing per image, each timed alone on one core.

Images per second count the files classified over the run's own seconds (listing, decoding, the model, the
results written); the Ray figures also give the wall time with the cluster's start and stop.

    python benchmarks/ray_classify.py [--images 20000] [--model models/shapes-cnn.int8.onnx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, RESULTS, write_result

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's workers at the priority local classify runs at
DEFAULT_MODEL = REPO / "models" / "shapes-cnn.int8.onnx"
TARGET_RATIO = 0.8  # Ray on the same cores: at least 0.8x local classify's images/s


def make_photos(folder: Path, count: int, seed: int = 0) -> float:
    """``count`` 640x480 JPEGs with photo-like content (gradients, noise, shapes); returns the mean size."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    bases = []  # a few noisy gradient backgrounds; each photo draws its own shapes over one of them
    for _ in range(16):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = ((xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / 800.0 + 0.5)[..., None]
        img = c0 * t + c1 * (1 - t) + rng.normal(0, 6, (480, 640, 1))
        bases.append(img.clip(0, 255).astype(np.uint8))
    sizes = []
    for i in range(count):
        img = bases[i % len(bases)].copy()
        for _ in range(3):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, 640)), int(rng.integers(0, 480))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), int(rng.integers(20, 160)), colour, -1)
            else:
                cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 200)), y + 90), colour, -1)
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / f"photo_{i:06d}.jpg").write_bytes(data.tobytes())
        sizes.append(len(data))
    return float(np.mean(sizes))


class BackgroundLoad:
    """CPU-seconds that processes outside this benchmark (and its Ray processes) used while a run went on.

    Other work on a shared machine takes cores from whichever run it overlaps; each run records how much (the
    processes' own counters, read every 0.2 s and at the end), so a ratio is read with that in mind.
    """

    def __init__(self) -> None:
        import threading

        self.tick = os.sysconf("SC_CLK_TCK")
        self.used: dict[int, tuple[bool, float]] = {}  # pid: (ours, CPU-seconds during the run)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _processes(self) -> dict[int, tuple[int, float]]:
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick)
        return found

    def _sample(self) -> None:
        processes = self._processes()
        for pid, (_, cpu) in processes.items():
            if pid in self.used:
                ours = self.used[pid][0]
            else:
                chain, steps = pid, 0
                while chain > 1 and chain != self.me and steps < 64:
                    chain, steps = processes.get(chain, (0, 0.0))[0], steps + 1
                ours = chain == self.me
            self.used[pid] = (ours, cpu - self.start.get(pid, 0.0))

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self._sample()

    def __enter__(self) -> BackgroundLoad:
        self.me = os.getpid()
        self.start = {pid: cpu for pid, (_, cpu) in self._processes().items()}
        self.wall = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()
        self.wall = time.perf_counter() - self.wall

    def figures(self) -> dict[str, float]:
        own = sum(cpu for ours, cpu in self.used.values() if ours)
        other = sum(cpu for ours, cpu in self.used.values() if not ours)
        return {"own_cpu_seconds": own, "other_cpu_seconds": other, "measured_wall": self.wall}


def loaded(fn: Any, *args: Any) -> dict[str, Any]:
    with BackgroundLoad() as load:
        result = fn(*args)
    return {**result, **load.figures()}


def warm_cache(folder: Path) -> int:
    total = 0
    for path in sorted(folder.iterdir()):
        total += len(path.read_bytes())
    return total


def stage_costs(folder: Path, model: Path, count: int = 1000, batch: int = 32) -> dict[str, float]:
    """Milliseconds per image of each stage, one core, on ``count`` of the photos."""
    import cv2

    from edgecnn.apps.cluster_store import rows_table
    from edgecnn.apps.outputs import Row
    from edgecnn.core.contract import InputSpec
    from edgecnn.core.imaging import load_image
    from edgecnn.runtime.predictor import Predictor

    cv2.setNumThreads(1)
    files = sorted(folder.iterdir())[:count]
    predictor = Predictor(model, provider="cpu", threads=1)
    spec = predictor.contract.input
    t = time.perf_counter()
    data = [f.read_bytes() for f in files]
    read = time.perf_counter() - t
    t = time.perf_counter()
    images = [load_image(d, spec) for d in data]
    decode = time.perf_counter() - t
    stacked = np.stack(images).astype(np.float32)
    predictor.predict_batch(stacked[:batch])
    t = time.perf_counter()
    probs = [predictor.predict_batch(stacked[i : i + batch]) for i in range(0, len(images), batch)]
    run = time.perf_counter() - t
    t = time.perf_counter()
    tops = predictor.top_k(np.concatenate(probs), 1)
    rows = [
        Row(str(f), "ok", label=top[0][0], confidence=top[0][1], top_k=top) for f, top in zip(files, tops)
    ]
    rows_table(rows)
    write = time.perf_counter() - t
    n = len(files)
    by_input = {}  # decoding for larger models: JPEG draft mode then decodes at a larger scale
    for side in (96, 224):
        t = time.perf_counter()
        for d in data[:300]:
            load_image(d, InputSpec.square(side))
        by_input[f"{side}x{side}"] = 1000 * (time.perf_counter() - t) / min(300, n)
    return {
        "images": n,
        "read_ms": 1000 * read / n,
        "decode_resize_ms": 1000 * decode / n,
        "model_ms": 1000 * run / n,
        "rows_ms": 1000 * write / n,
        "source_pixels": "640x480",
        "model_input": f"{spec.height}x{spec.width}x{spec.channels}",
        "decode_resize_ms_for_input": by_input,
    }


def driver_rows_per_cpu_second(rows: int = 200_000, block: int = 1000) -> float:
    """CPU cost of the driver's part per row: drop repeats, count, buffer and write Parquet parts (no Ray)."""
    import pyarrow as pa

    from edgecnn.apps.cluster import ClusterSummary, _count
    from edgecnn.apps.cluster_store import ResultsFolder, results_table

    tables = []
    for i in range(0, rows, block):
        paths = [f"/data/photos/{i // 10_000:04d}/photo_{j:07d}.jpg" for j in range(i, i + block)]
        t = results_table(paths, [None] * block, [[("circle", 0.9), ("square", 0.05)]] * block)
        tables.append(t.append_column("_index", pa.array(np.arange(i, i + block))))
    with tempfile.TemporaryDirectory() as folder:
        store, summary, seen = ResultsFolder(folder), ClusterSummary(), np.zeros(rows, bool)
        start = time.process_time()
        for table in tables:  # the loop of apps.cluster._run, less Ray's transfer to the driver
            index = table.column("_index").to_numpy()
            fresh = ~seen[index]
            seen[index] = True
            part = table.filter(pa.array(fresh)).drop_columns(["_index"])
            _count(part, summary)
            store.write(part)
        store.flush()
        return rows / (time.process_time() - start)


def local_run(folder: Path, model: Path, work: Path, batch: int) -> dict[str, Any]:
    from edgecnn.apps.classify import ClassifyConfig, classify_paths
    from edgecnn.runtime.predictor import Predictor

    t = time.perf_counter()
    with Predictor(model, provider="cpu") as predictor:
        config = ClassifyConfig(paths=[folder], output=work / "local.csv", batch_size=batch, force=True)
        summary = classify_paths(config, predictor)
    wall = time.perf_counter() - t
    return {
        "classified": summary.classified,
        "skipped": summary.skipped,
        "seconds": summary.seconds,
        "wall_seconds": wall,
        "images_per_second": summary.images_per_second,
        "workers": summary.workers,
    }


def ray_run(folder: Path, model: Path, work: Path, batch: int, cores: int) -> dict[str, Any]:
    from edgecnn.apps.classify import ClassifyConfig
    from edgecnn.apps.cluster import classify_on_ray

    t = time.perf_counter()
    config = ClassifyConfig(paths=[folder], output=work / "ray", batch_size=batch, force=True)
    marks = Marks()
    summary = classify_on_ray(config, model, address="local", num_cpus=cores, on_progress=marks)
    wall = time.perf_counter() - t
    return ray_figures(summary, wall, marks)


class Marks:
    """(seconds since the first call's run began, files done) as rows reach the driver."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.marks.append((time.perf_counter() - self.start, done))

    def figures(self) -> dict[str, float]:
        """When the first rows came, and the rate from the tenth of the files on (the pipeline full)."""
        end_t, end_n = self.marks[-1]
        tenth_t, tenth_n = next(m for m in self.marks if m[1] >= end_n / 10)
        return {
            "first_rows_after_seconds": self.marks[0][0],
            "steady_images_per_second": (end_n - tenth_n) / (end_t - tenth_t) if end_t > tenth_t else 0.0,
        }


def ray_figures(summary: Any, wall: float, marks: Marks) -> dict[str, Any]:
    return {
        **marks.figures(),
        "classified": summary.classified,
        "skipped": summary.skipped,
        "seconds": summary.seconds,
        "wall_seconds": wall,
        "images_per_second": summary.images_per_second,
        "nodes": summary.nodes,
        "cpus": summary.cpus,
        "actors": summary.actors,
        "missing": summary.missing,
        "duplicates_dropped": summary.duplicates_dropped,
    }


def cluster_run(folder: Path, model: Path, work: Path, batch: int, cpus: list[int]) -> dict[str, Any]:
    """A simulated cluster on 127.0.0.1, one node per entry of ``cpus``; the driver joins it on loopback."""
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from edgecnn.apps.classify import ClassifyConfig
    from edgecnn.apps.cluster import classify_on_ray

    ray_constants.ENABLE_RAY_CLUSTER = False  # read "127.0.0.1" as loopback, not as this machine's address
    node = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**node, "num_cpus": cpus[0], "include_dashboard": False},
    )
    try:
        for n in cpus[1:]:
            cluster.add_node(**node, num_cpus=n)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1")
        t = time.perf_counter()
        config = ClassifyConfig(
            paths=[folder], output=work / f"cluster-{len(cpus)}", batch_size=batch, force=True
        )
        marks = Marks()
        summary = classify_on_ray(config, model, on_progress=marks)
        wall = time.perf_counter() - t
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {**ray_figures(summary, wall, marks), "node_cpus": cpus}


def markdown(r: dict[str, Any]) -> str:
    local, one, two, single = r["local"], r["ray_local"], r["two_nodes"], r["one_node"]
    s = r["stages"]
    met = "met" if r["ratio"] >= TARGET_RATIO else "**not met**"
    lines = [
        "## classify on a Ray cluster (`classify --ray`)",
        "",
        f"{r['images']:,} generated 640x480 JPEGs (this script's `make_photos`, seed 0; mean "
        f"{r['mean_bytes'] / 1024:.0f} KiB, in the page cache), "
        f"model `{r['model']}` ({s['model_input']} input), batch {r['batch']}, one run each on the same "
        f"{r['cores']} cores. Images/s count the run itself (listing, decoding, the model, results written); "
        "wall time adds the start and stop of Ray. The machine: "
        f"{r['machine']['cpu']}, {r['machine']['usable_cores']} cores, {r['machine']['platform']}, "
        f"ray {r.get('ray_version', '?')}.",
        "",
        "| run | images | seconds | images/s | wall time | vs local | other processes' CPU-s during the run |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name: str, x: dict[str, Any]) -> str:
        return (
            f"| {name} | {x['classified']:,} | {x['seconds']:.1f} | {x['images_per_second']:.0f} | "
            f"{x['wall_seconds']:.1f} s | {x['images_per_second'] / local['images_per_second']:.2f}x | "
            f"{x['other_cpu_seconds']:.1f} |"
        )

    lines += [
        row(f"local `classify` ({local['workers']} decode threads + ONNX Runtime)", local),
        row(f"`--ray local`, 1 node, {one['cpus']:.0f} CPUs, {one['actors']} predictor actors", one),
        row(f"simulated cluster, 1 node x {single['node_cpus'][0]} CPUs", single),
        row(f"simulated cluster, 2 nodes x {two['node_cpus'][0]} CPU (loopback)", two),
        "",
        f"- Ray / local on the same {r['cores']} cores: **{r['ratio']:.2f}x** (target {TARGET_RATIO}x: {met})",
        f"- two nodes / one node with the same CPUs in all: {r['two_vs_one']:.2f}x (both on this one machine: "
        "this measures the cost of spreading the run over two raylets and object stores, not a speed-up)",
        f"- where Ray's time goes on these {r['cores']} cores (the simulated one-node run, its cluster already up): "
        f"the first rows reached the driver {single['first_rows_after_seconds']:.1f} s after the call (Ray Data "
        "starting its executor and actor processes, each importing Ray, edgecnn and ONNX Runtime, then a first "
        f"block of files); from a tenth of the files on, Ray classified {single['steady_images_per_second']:.0f} "
        f"images/s ({single['steady_images_per_second'] / local['images_per_second']:.2f}x local's whole-run "
        "rate: one ONNX Runtime thread per actor process, decoding and the model sharing no interpreter lock). "
        "The gap is a start-up cost: it shrinks as the number of images grows.",
        f"- every run: missing rows {max(x['missing'] for x in (one, two, single))}, "
        f"duplicate rows dropped {max(x['duplicates_dropped'] for x in (one, two, single))}",
        "",
        "Where the time goes, per image, each stage alone on one core "
        f"({s['images']} of the photos): read {s['read_ms']:.3f} ms, decode + resize {s['decode_resize_ms']:.3f} ms "
        f"(JPEG draft mode decodes at a reduced scale), model {s['model_ms']:.3f} ms (batch {r['batch']}), rows "
        f"{s['rows_ms']:.3f} ms; one core: {r['per_core_images_per_second']:.0f} images/s. Decode + resize of the "
        "same photos for a larger model input: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in s["decode_resize_ms_for_input"].items())
        + f". The driver's own work per row (drop repeats, count, write Parquet parts; Ray's transfer of the "
        f"rows not included): {s['driver_rows_per_cpu_second']:,.0f} rows per CPU-second.",
        "",
        f"Command: `{r['command']}` (measured {r['measured']}, {r['machine']['cpu']}, "
        f"{r['machine']['usable_cores']} cores). The section is kept in `benchmarks/results/ray_classify.md` beside "
        "its JSON (`python benchmarks/ray_classify.py --render` rewrites it from the JSON).",
    ]
    return "\n".join(lines) + "\n"


def ray_version() -> str:
    from importlib import metadata

    return metadata.version("ray")


def render() -> str:
    """Write results/ray_classify.md (the section of docs/BENCHMARKS.md) from results/ray_classify.json."""
    import json

    text = markdown(json.loads((RESULTS / "ray_classify.json").read_text(encoding="utf-8")))
    (RESULTS / "ray_classify.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--photos", type=Path, help="a folder for the photos: filled on the first run, reused after"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite results/ray_classify.md")
    args = parser.parse_args()
    if args.render:
        render()
        return
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="edgecnn-ray-bench-"))
    try:
        folder = args.photos or work / "photos"
        # A scratch folder is filled once, then reused; the record beside it (not in it: classify would read
        # it as a file) says that a generation of this many photos finished.
        done = folder.with_name(folder.name + ".complete")
        if done.is_file() and done.read_text().strip() == str(args.images):
            mean = warm_cache(folder) / len(list(folder.iterdir()))
        elif folder.is_dir() and any(folder.iterdir()):
            raise SystemExit(
                f"{folder} holds files but no record of a finished generation of {args.images} photos "
                f"({done.name} beside it): give an empty or new folder"
            )
        else:
            t = time.perf_counter()
            mean = make_photos(folder, args.images)
            done.write_text(f"{args.images}\n")
            print(f"generated {args.images} photos in {time.perf_counter() - t:.0f} s")
        warm_cache(folder)
        stages = stage_costs(folder, args.model, batch=args.batch)
        stages["driver_rows_per_cpu_second"] = driver_rows_per_cpu_second()
        print("stages", stages)
        local = loaded(local_run, folder, args.model, work, args.batch)
        print("local", local)
        ray_local = loaded(ray_run, folder, args.model, work, args.batch, cores)
        print("ray local", ray_local)
        one_node = loaded(cluster_run, folder, args.model, work, args.batch, [cores])
        print("one node", one_node)
        two_nodes = loaded(
            cluster_run, folder, args.model, work, args.batch, [cores // 2, cores - cores // 2]
        )
        print("two nodes", two_nodes)
        per_image_ms = stages["decode_resize_ms"] + stages["read_ms"] + stages["model_ms"] + stages["rows_ms"]
        result = {
            "images": len(list(folder.iterdir())),
            "mean_bytes": mean,
            "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model),
            "batch": args.batch,
            "cores": cores,
            "stages": stages,
            "per_core_images_per_second": 1000 / per_image_ms,
            "local": local,
            "ray_local": ray_local,
            "one_node": one_node,
            "two_nodes": two_nodes,
            "ratio": ray_local["images_per_second"] / local["images_per_second"],
            "two_vs_one": two_nodes["images_per_second"] / one_node["images_per_second"],
            "ray_version": ray_version(),
        }
        write_result("ray_classify", result)
        print(render())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
