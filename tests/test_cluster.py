"""``classify --ray`` (apps.cluster): the same rows as local ``classify``, on a local Ray and on a two-node cluster
that loses a node mid-run, resumable after an interruption or a SIGKILL.

Every cluster listens on the loopback interface only. The tests need Ray (``pip install "edgecnn[ray]"``, in
the ``dev`` extra) and are skipped with that hint without it; ``-m ray`` selects them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from badinputs import write_flat
from conftest import REPO

from edgecnn.apps.classify import ClassifyConfig, classify_paths
from edgecnn.apps.cluster import INSTALL_HINT, classify_on_ray, import_ray, plan_actors
from edgecnn.apps.cluster_store import ResultsFolder, rows_table, table_rows
from edgecnn.apps.cluster_tasks import as_uri
from edgecnn.apps.outputs import Row
from edgecnn.core.errors import ConfigError, DependencyError, OutputError, ProviderError
from edgecnn.runtime.predictor import Predictor

pytestmark = pytest.mark.ray
MODEL = REPO / "models" / "shapes-cnn.int8.onnx"
try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason=INSTALL_HINT)
#: A small object store and two CPUs: what CI has.
LOCAL = {"address": "local", "num_cpus": 2, "object_store_memory": 80 * 2**20}
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated shapes in class folders, with the bad-input corpus (broken, empty, not images) mixed in."""
    from edgecnn.training.synthetic import write_dataset

    root = tmp_path_factory.mktemp("photos")
    write_dataset(root / "shapes", per_class=20, size=48, seed=7)
    write_flat(root / "bad")
    return root


def config(photos: Path, **options) -> ClassifyConfig:
    return ClassifyConfig(paths=[photos], recursive=True, top_k=2, batch_size=4, **options)


@pytest.fixture(scope="module")
def local_rows(photos: Path) -> dict[str, Row]:
    """The rows of local ``classify`` on the same folder, by path."""
    rows: list[Row] = []
    with Predictor(MODEL, provider="cpu") as predictor:
        classify_paths(config(photos), predictor, on_rows=rows.extend)
    return {row.path: row for row in rows}


def ray_rows(folder: Path) -> list[Row]:
    rows: list[Row] = []
    for table in ResultsFolder(folder, resume=True).iter_tables():
        rows += table_rows(table)
    return rows


def assert_same_rows(rows: list[Row], expected: dict[str, Row]) -> None:
    """One row per file (none missing, none twice), equal to local classify's: labels, errors, confidences."""
    paths = [row.path for row in rows]
    assert len(paths) == len(set(paths)), "a file has two rows"
    assert set(paths) == set(expected)
    for row in rows:
        want = expected[row.path]
        assert (row.status, row.label, row.error) == (want.status, want.label, want.error), row.path
        assert [label for label, _ in row.top_k] == [label for label, _ in want.top_k], row.path
        assert row.confidence == pytest.approx(want.confidence, abs=1e-6)
        assert [p for _, p in row.top_k] == pytest.approx([p for _, p in want.top_k], abs=1e-6)


@needs_ray
def test_ray_rows_equal_local_classify(photos, local_rows, tmp_path):
    out = tmp_path / "out"
    summary = classify_on_ray(config(photos), MODEL, output_dir=out, csv=True, task_files=8, **LOCAL)
    assert_same_rows(ray_rows(out), local_rows)
    skipped = sum(row.status != "ok" for row in local_rows.values())
    assert skipped >= 10 and summary.skipped == skipped
    assert summary.classified == len(local_rows) - skipped == sum(summary.per_label.values())
    assert (summary.nodes, summary.cpus, summary.actors, summary.provider) == (1, 2.0, 2, "cpu")
    assert (summary.missing, summary.duplicates_dropped, summary.interrupted) == (0, 0, False)
    # The CSV is local classify's format: the same header and one line per file.
    lines = (out / "results.csv").read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    assert lines[0] == "path,status,label,confidence,top_k,error" and len(lines) == len(local_rows) + 1
    assert (out / "summary.json").is_file()
    import pyarrow.parquet as pq

    assert pq.read_table(out / "parquet").num_rows == len(local_rows)  # the folder reads as one table
    assert not ray.is_initialized()  # the local cluster it started is gone


@needs_ray
def test_the_gpu_layout_decode_tasks_then_one_actor_per_gpu_gives_the_same_rows(photos, local_rows, tmp_path):
    """A logical GPU (Ray counts it; no device is needed): CPU tasks decode, one actor per GPU predicts.

    ONNX Runtime sees no NVIDIA device here, so the actor runs on the CPU and says why; the data flow is the
    one of a GPU cluster.
    """
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1")  # fmt: skip
    try:
        summary = classify_on_ray(config(photos, output=tmp_path / "out"), MODEL, task_files=8)
        assert ray.is_initialized()  # a connection the caller made is left to the caller
    finally:
        ray.shutdown()
    assert (summary.gpus, summary.actors, summary.provider) == (1.0, 1, "cpu")
    assert_same_rows(ray_rows(tmp_path / "out"), local_rows)


def record_threads_at_shutdown(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[threading.Thread]]:
    """The threads alive when Ray finished starting, and when it was asked to shut down."""
    seen: dict[str, set[threading.Thread]] = {}
    init, shutdown = ray.init, ray.shutdown

    def recording_init(*args, **kwargs):
        context = init(*args, **kwargs)
        seen["started"] = set(threading.enumerate())
        return context

    def recording_shutdown(*args, **kwargs):
        seen["shutdown"] = {thread for thread in threading.enumerate() if thread.is_alive()}
        return shutdown(*args, **kwargs)

    monkeypatch.setattr(ray, "init", recording_init)
    monkeypatch.setattr(ray, "shutdown", recording_shutdown)
    return seen


@needs_ray
def test_resume_after_an_interrupted_run_completes_without_duplicates(
    photos, local_rows, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    calls = []
    threads = record_threads_at_shutdown(monkeypatch)

    def interrupt(done: int, total: int | None) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the driver, mid-run

    first = classify_on_ray(
        config(photos), MODEL, output_dir=out, task_files=4, part_rows=4, on_progress=interrupt, **LOCAL
    )
    assert first.interrupted and 0 < len(ray_rows(out)) < len(local_rows)
    # No thread of the interrupted run is left to call Ray after the shutdown (Ray would end this process, exit
    # code 1, no traceback). The prefetcher Ray Data leaves parked, never handed a block, is the exception.
    left = {thread.name for thread in threads["shutdown"] - threads["started"]}
    assert left <= {"Prefetcher"}, left
    monkeypatch.undo()
    with pytest.raises(OutputError, match="--resume"):
        classify_on_ray(config(photos), MODEL, output_dir=out, **LOCAL)
    second = classify_on_ray(config(photos, resume=True, output=out), MODEL, task_files=8, **LOCAL)
    assert not second.interrupted
    assert second.already_done == len(ray_rows(out)) - second.classified - second.skipped > 0
    assert_same_rows(ray_rows(out), local_rows)
    third = classify_on_ray(config(photos, resume=True, output=out), MODEL, csv=True, **LOCAL)
    assert (third.classified, third.skipped) == (0, 0) and third.already_done > 0
    assert len((out / "results.csv").read_bytes().splitlines()) == len(local_rows) + 1


KILLED_RUN = """
import sys
from pathlib import Path
from edgecnn.apps.classify import ClassifyConfig
from edgecnn.apps.cluster import classify_on_ray
config = ClassifyConfig(paths=[Path(sys.argv[1])], recursive=True, top_k=2, batch_size=2)
classify_on_ray(config, sys.argv[2], output_dir=sys.argv[3], address="local", num_cpus=2,
                object_store_memory=80 * 2**20, task_files=2, part_rows=2, threads=1)
"""


@needs_ray
def test_resume_after_the_driver_is_killed(photos, local_rows, tmp_path):
    """SIGKILL of the driver mid-run leaves whole parts only; --resume completes them, nothing twice."""
    out = tmp_path / "out"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(photos), str(MODEL), str(out)]
    child = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if out.is_dir() and len(list(out.glob("parquet/part-*.parquet"))) >= 3:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
    finally:
        # The whole session: the driver and the local Ray it started (they share its process group).
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    done = ray_rows(out)
    assert 0 < len(done) < len(local_rows) and len({r.path for r in done}) == len(done)
    summary = classify_on_ray(config(photos, resume=True, output=out), MODEL, task_files=8, **LOCAL)
    assert summary.already_done == len(done)
    assert_same_rows(ray_rows(out), local_rows)


@pytest.fixture()
def two_nodes(monkeypatch):
    """A head and a worker node on 127.0.0.1 (2 CPUs each), and this process connected as the driver.

    Ray turns a loopback cluster address into the machine's interface address before connecting unless its
    multi-node mode is off; that mode only decides how "127.0.0.1" is read here, so the driver stays on
    loopback too.
    """
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    node_args = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
    cluster = Cluster(
        initialize_head=True, connect=False, head_node_args={**node_args, "include_dashboard": False}
    )
    try:
        worker = cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1")
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


@needs_ray
def test_two_node_cluster_finishes_when_a_node_is_removed_mid_run(photos, local_rows, two_nodes, tmp_path):
    cluster, worker = two_nodes
    removed_at: list[tuple[int, int | None]] = []

    def remove_worker(done: int, total: int | None) -> None:
        if not removed_at and done >= 8:
            removed_at.append((done, total))
            cluster.remove_node(worker)  # its decode tasks and its predictor actor die with it

    out = tmp_path / "out"
    summary = classify_on_ray(
        config(photos), MODEL, output_dir=out, task_files=2, actors=2, on_progress=remove_worker
    )
    assert summary.nodes == 2 and summary.actors == 2
    assert removed_at, "no progress was reported"
    done, total = removed_at[0]
    assert total is not None and done < total, "the node was removed after the last row"
    assert summary.missing == 0 and not summary.interrupted
    assert_same_rows(ray_rows(out), local_rows)
    assert len(ray.nodes()) == 2 and sum(node["Alive"] for node in ray.nodes()) == 1


@pytest.fixture()
def s3_bucket(photos, monkeypatch):
    """The photos in a bucket of a local S3-compatible server (moto) on 127.0.0.1; yields their URI."""
    moto_server = pytest.importorskip("moto.server", reason="moto is not installed (dev extra)")
    boto3 = pytest.importorskip("boto3")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)  # a local Ray started afterwards passes them on to its workers
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="photos")
        for path in sorted(photos.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 2**20:
                client.put_object(
                    Bucket="photos", Key=f"set/{path.relative_to(photos)}", Body=path.read_bytes()
                )
        yield f"s3://photos/set?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    finally:
        server.stop()


@needs_ray
def test_s3_uris_give_the_rows_of_the_same_files_read_locally(photos, local_rows, s3_bucket, tmp_path):
    out = tmp_path / "out"
    config = ClassifyConfig(paths=[Path(s3_bucket)], recursive=True, top_k=2, batch_size=4, output=out)
    summary = classify_on_ray(config, MODEL, task_files=8, **LOCAL)
    rows = ray_rows(out)
    assert rows and all(row.path.startswith("s3://photos/set/") for row in rows)
    uploaded = {f"s3://photos/set/{Path(p).relative_to(photos)}": row for p, row in local_rows.items()}
    assert_same_rows(rows, {path: uploaded[path] for path in uploaded if path in {r.path for r in rows}})
    assert (
        len(rows) >= len(local_rows) - 6
    )  # all but the files not uploaded (links, pipe, sparse 300 MiB file)
    assert summary.classified == sum(row.status == "ok" for row in rows) > 50


def test_without_ray_the_option_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(DependencyError, match=r'pip install "edgecnn\[ray\]"'):
        import_ray()
    with pytest.raises(DependencyError, match="edgecnn\\[ray\\]"):
        classify_on_ray(ClassifyConfig(paths=[tmp_path]), MODEL, output_dir=tmp_path / "out")


def test_options_that_do_not_apply_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--output DIR"):
        classify_on_ray(ClassifyConfig(paths=[tmp_path]), MODEL)
    with pytest.raises(ConfigError, match="--sort-into"):
        classify_on_ray(
            ClassifyConfig(paths=[tmp_path], sort_into=tmp_path / "s"), MODEL, output_dir=tmp_path
        )
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="names a folder"):
        ResultsFolder(tmp_path / "file")


def test_actors_follow_the_provider_and_the_cluster():
    assert plan_actors({"CPU": 8.0}, "auto", False, None) == (8, 0.0, "cpu")  # one per CPU
    assert plan_actors({"CPU": 8.0, "GPU": 2.0}, "auto", False, None)[:2] == (2, 1.0)  # one per GPU
    assert plan_actors({"CPU": 8.0, "GPU": 2.0}, "cpu", False, 3)[:2] == (3, 0.0)
    with pytest.raises(ProviderError, match="no GPU"):
        plan_actors({"CPU": 8.0}, "cuda", False, None)
    assert plan_actors({"CPU": 8.0}, "cuda", True, None).provider == "cpu"  # --fallback
    with pytest.raises(ConfigError):
        plan_actors({"CPU": 8.0}, "cpu", False, 0)


def test_uris_survive_pathlib_and_local_paths_stay_paths():
    assert as_uri(Path("s3://bucket/photos")) == "s3://bucket/photos"  # pathlib folds // into /
    assert as_uri("gs://bucket/a.jpg") == "gs://bucket/a.jpg"
    assert as_uri("photos/a.jpg") is None and as_uri("/data/x") is None and as_uri("file:///data") is None


def test_results_folder_parts_are_whole_and_resume_by_resolved_path(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason=INSTALL_HINT)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"x")
    rows = [
        Row("a.jpg", "ok", label="circle", confidence=0.5, top_k=[("circle", 0.5), ("square", 0.25)]),
        Row(str(tmp_path / "b.jpg"), "skipped", error="empty file (0 bytes)"),
    ]
    store = ResultsFolder(tmp_path / "out", flush_rows=1)
    store.write(rows_table(rows))
    (tmp_path / "out" / "parquet" / ".part-0001-000009.partial").write_bytes(b"torn")  # killed mid-part
    assert [p.name for p in store.parts()] == ["part-0001-000001.parquet"]
    with pytest.raises(OutputError, match="--resume"):
        ResultsFolder(tmp_path / "out")
    again = ResultsFolder(tmp_path / "out", resume=True)
    assert again.run == 2 and not list((tmp_path / "out" / "parquet").glob(".part-*"))
    assert again.statuses() == {str(tmp_path / "a.jpg"): "ok", str(tmp_path / "b.jpg"): "skipped"}
    assert [r.to_dict() for r in table_rows(next(again.iter_tables()))] == [r.to_dict() for r in rows]
    ResultsFolder(tmp_path / "out", force=True)
    assert not list((tmp_path / "out" / "parquet").iterdir())
