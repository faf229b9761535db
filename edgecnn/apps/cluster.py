"""``classify --ray``: the same classification as ``classify``, run by Ray Data on a cluster.

The driver lists the files (the one folder walker, or a pyarrow filesystem listing for ``s3://`` and
``gs://`` URIs), skips those the output folder already has, and hands Ray Data blocks of paths. Every file is
read and decoded by ``core.imaging.load_image`` on a CPU of the cluster (a file that cannot be used becomes a
``skipped`` row with its reason, never a failed task) and classified by a pool of predictor actors that hold
the model file, which travels through Ray's object store (the nodes need no copy of it). With GPUs, CPU tasks
decode and one actor per GPU (``num_gpus=1``) runs the model; without, one actor per CPU decodes its own blocks
and runs the model on them (no pixels cross the object store). Rows come back to the driver, which keeps each
listed file's first row only (a block Ray ran twice after losing a node cannot duplicate a file) and writes
them as whole Parquet parts (``apps.cluster_store``). Ray retries the tasks and restarts the actors of a node
that dies; ``--resume`` on the output folder skips what earlier runs finished, matching files by their
resolved path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgecnn.apps.classify import ClassifyConfig, ClassifySummary
from edgecnn.apps.cluster_store import ResultsFolder, rows_table
from edgecnn.apps.cluster_tasks import PredictBatches, decode_block, files_per_task, list_inputs
from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError, DependencyError, EdgecnnError, ProviderError
from edgecnn.runtime.predictor import Predictor

log = logging.getLogger("edgecnn")
INSTALL_HINT = 'Ray is not installed; install it with: pip install "edgecnn[ray]"'
#: CPUs a predictor actor reserves (it runs one intra-op thread). Under one: when a node dies, Ray restarts its
#: actors on the nodes left, and actors reserving whole CPUs could then hold every CPU of a survivor, leaving
#: none for the decode tasks they wait on (seen with two nodes of two CPUs: the run stalled).
ACTOR_CPUS = 0.5


@dataclass
class ClusterSummary(ClassifySummary):
    """What a Ray run did: the local summary plus the cluster it ran on."""

    address: str = ""
    nodes: int = 0
    cpus: float = 0.0
    gpus: float = 0.0
    actors: int = 0
    parts: int = 0
    csv: str | None = None
    duplicates_dropped: int = 0  # rows of files that already had one (a block Ray ran twice)
    missing: int = 0  # listed files Ray returned no row for (none expected; --resume completes them)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["ray"] = {
            "address": self.address,
            "nodes": self.nodes,
            "cpus": self.cpus,
            "gpus": self.gpus,
            "actors": self.actors,
            "parts": self.parts,
            "csv": self.csv,
            "duplicates_dropped": self.duplicates_dropped,
            "missing": self.missing,
        }
        return data


def import_ray() -> Any:
    """Import Ray and Ray Data, or say how to install them.

    Raises:
        DependencyError: Ray (with Ray Data) or pyarrow is missing.
    """
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DependencyError(INSTALL_HINT) from None
    return ray


def connect(
    ray: Any, address: str, num_cpus: int | None = None, object_store_memory: int | None = None
) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the running one), or start one (``local``).

    Returns:
        Whether this call connected (and so should disconnect); False when Ray was already initialised.

    Raises:
        ConfigError: No cluster answers at ``address``, or ``num_cpus`` was given for an existing cluster.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        # Ray starts its workers at niceness 15, behind anything else on the machine; here they are the job,
        # and run at the priority local classify would (an explicit RAY_worker_niceness wins).
        os.environ.setdefault("RAY_worker_niceness", "0")
        # A cluster of this machine alone listens on the loopback interface only.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            include_dashboard=False,
            logging_level=logging.WARNING,
            _node_ip_address="127.0.0.1",
        )
        return True
    if num_cpus is not None:
        raise ConfigError("the number of CPUs is set by the cluster; it applies to --ray local only")
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"no Ray cluster at --ray {address} ({first[:160]}); start one with `ray start --head`, "
            "set RAY_ADDRESS, or use --ray local"
        ) from None
    return True


class ActorPlan(NamedTuple):
    size: int
    num_gpus: float
    provider: str


def plan_actors(resources: dict[str, float], provider: str, fallback: bool, actors: int | None) -> ActorPlan:
    """Predictor actors: one per GPU for CUDA (``auto`` when the cluster has GPUs), else CPU actors.

    Raises:
        ProviderError: A GPU provider was asked for on a cluster without GPUs (and no ``fallback``).
        ConfigError: ``actors`` is below 1.
    """
    if actors is not None and actors < 1:
        raise ConfigError(f"the number of predictor actors must be at least 1, got {actors}")
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    wants_gpu = provider in ("cuda", "tensorrt") or (provider == "auto" and gpus > 0)
    if wants_gpu and gpus == 0:
        if not fallback:
            raise ProviderError(
                f"--provider {provider}: the Ray cluster has no GPU ({cpus} CPUs); use --provider cpu or auto, "
                "or add --fallback"
            )
        wants_gpu = False
    if wants_gpu:
        return ActorPlan(actors or gpus, 1.0, provider)
    return ActorPlan(actors or cpus, 0.0, "cpu")  # one per CPU, each decoding its own blocks


def warn_unused_workers(workers: int | None, plan: ActorPlan) -> None:
    """Say so when ``--workers`` has nothing to set: it sizes the decode tasks in front of GPU actors, and CPU
    actors decode their own blocks. A warning, not a refusal: whether the cluster has GPUs is known only
    once connected, and the same command line is meant to run on either kind of cluster."""
    if workers is not None and not plan.num_gpus:
        log.warning(
            f"--workers {workers} is ignored: this run has no GPU actors, and each of its {plan.size} CPU "
            "actors decodes its own files"
        )


def classify_on_ray(
    config: ClassifyConfig,
    model_path: str | os.PathLike[str],
    address: str = "local",
    output_dir: str | os.PathLike[str] | None = None,
    csv: bool = False,
    provider: str = "auto",
    num_cpus: int | None = None,
    *,
    threads: int | None = None,
    fallback: bool = False,
    actors: int | None = None,
    task_files: int | None = None,
    part_rows: int = 4096,
    object_store_memory: int | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ClusterSummary:
    """Classify every image under ``config.paths`` on a Ray cluster; rows as local ``classify`` writes them.

    Args:
        config: The run's options (``paths``, ``recursive``, ``batch_size``, ``top_k``, ``resume``,
            ``force``; ``workers``: most decode tasks at once, with GPUs; without, a warning says it is
            ignored); ``output`` is the results folder
            unless ``output_dir`` is given. ``sort_into`` does not apply.
        model_path: The edgecnn .onnx model; its bytes go to the actors through Ray's object store.
        address: ``local`` (start Ray on this machine), ``auto`` (the running cluster: ``ray start --head``
            or ``RAY_ADDRESS``), or a cluster address (``host:6379``, ``ray://host:10001``). When Ray is
            already initialised in this process, that connection is used.
        output_dir: The results folder (Parquet parts, ``results.csv`` with ``csv``, ``summary.json``).
        csv: Also write ``results.csv`` (the local ``classify`` CSV format) with every row of the folder.
        provider: auto, cpu, cuda or tensorrt; CUDA and TensorRT run one actor per GPU.
        num_cpus: CPUs of a ``local`` cluster [default: all].
        threads: ONNX Runtime intra-op threads per CPU actor [default: 1].
        fallback: Run on CPU actors when the cluster has no GPU for ``cuda``/``tensorrt``.
        actors: Predictor actors [default: one per GPU, or one per CPU, each decoding its own blocks].
        task_files: Files per Ray task [default: up to 1,000 for CPU actors, about 2 MiB of decoded pixels
            for a GPU run's decode tasks; at least a batch].
        part_rows: Rows per Parquet part (a killed driver loses at most these, which ``resume`` redoes).
        object_store_memory: Object store bytes of a ``local`` cluster [default: Ray's].
        on_progress: Called with (files done, files to do) as rows arrive.

    Returns:
        The run's summary; ``summary.output`` is the results folder.

    Raises:
        DependencyError: Ray is not installed (the message says how to install it).
        ConfigError: Options that do not apply, or no cluster at ``address``.
        OutputError: The results folder holds an earlier run (without ``resume``/``force``) or cannot be written.
        ModelFileError, ContractError, ProviderError: As for ``Predictor``.
        EdgecnnError: The Ray run failed; the rows written so far are kept for ``--resume``.
    """
    folder = output_dir if output_dir is not None else config.output
    if folder is None:
        raise ConfigError("--ray needs --output DIR, the folder for the results")
    if config.sort_into is not None:
        raise ConfigError("--sort-into does not work with --ray; sort from the results afterwards")
    with Predictor(model_path, provider="cpu") as checked:  # a bad model fails here, before the cluster
        contract = checked.contract
    ray = import_ray()
    store = ResultsFolder(folder, resume=config.resume, force=config.force, flush_rows=part_rows)
    done = store.statuses() if config.resume else {}
    summary = ClusterSummary(output=str(store.folder), batch_size=config.batch_size, address=address)
    started = connect(ray, address, num_cpus, object_store_memory)
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    try:
        quiet.setLevel(logging.WARNING)
        resources = ray.cluster_resources()
        summary.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        summary.cpus, summary.gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        plan = plan_actors(resources, provider, fallback, actors)
        warn_unused_workers(config.workers, plan)
        summary.actors, summary.workers = plan.size, max(1, int(summary.cpus))  # every CPU decodes
        log.info(
            f"Ray cluster {address}: {summary.nodes} nodes, {summary.cpus:g} CPUs, {summary.gpus:g} GPUs; "
            f"{plan.size} predictor actors ({'one per GPU' if plan.num_gpus else 'CPU'})"
        )
        start = time.perf_counter()
        paths, sources, listing_rows = list_inputs(config, done, summary)
        unlisted = rows_table(listing_rows)
        _count(unlisted, summary)
        store.write(unlisted)
        try:
            if paths:
                _run(ray, config, model_path, contract.input, plan, paths, sources, threads, fallback,
                     task_files, store, summary, on_progress)  # fmt: skip
        except KeyboardInterrupt:
            summary.interrupted = True
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgecnnError(
                f"the Ray run failed ({first[:200]}); the rows so far are in {store.folder}: continue with --resume"
            ) from None
        finally:
            store.flush()
            summary.seconds = time.perf_counter() - start
    finally:
        quiet.setLevel(level)
        if started:
            ray.shutdown()
    summary.parts = len(store.parts())
    if csv:
        summary.csv = str(store.export_csv())
    if summary.missing:
        log.warning(f"{summary.missing} files got no result from the cluster; run again with --resume")
    store.write_summary(json.dumps(summary.to_dict(), indent=1) + "\n")
    return summary


def _run(
    ray: Any,
    config: ClassifyConfig,
    model_path: str | os.PathLike[str],
    spec: InputSpec,
    plan: ActorPlan,
    paths: list[str],
    sources: list[bytes],
    threads: int | None,
    fallback: bool,
    task_files: int | None,
    store: ResultsFolder,
    summary: ClusterSummary,
    on_progress: Callable[[int, int | None], None] | None,
) -> None:
    """The Ray Data pipeline over the files to do, its rows written to ``store`` as they arrive."""
    import pyarrow as pa

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    step = task_files or files_per_task(spec, config.batch_size, len(paths), plan)
    blocks = [
        pa.table(
            {
                "index": pa.array(range(i, min(i + step, len(paths))), pa.int64()),
                "path": pa.array(paths[i : i + step], pa.string()),
                "source": pa.array(sources[i : i + step], pa.binary()),
            }
        )
        for i in range(0, len(paths), step)
    ]
    dataset = ray.data.from_arrow(blocks)
    if plan.num_gpus:
        # GPU actors: CPU tasks decode (a whole CPU each) and hand batches of pixels to the GPUs.
        stage = dataset.map_batches(
            decode_block,
            batch_format="pyarrow",
            batch_size=None,
            fn_kwargs={"spec": spec},
            compute=ray.data.TaskPoolStrategy(size=config.workers),
            num_cpus=1,
        )
        batch_format, batch_size = "numpy", config.batch_size
        memory = actor_memory(Path(model_path).stat().st_size)
    else:
        # CPU actors, one per CPU, each decoding its own blocks and running the model on them: what Ray Data's
        # fusion of the two stages would do, without converting the pixels between them. Measured on 2 CPUs:
        # about half of local classify's images/s with a separate decode stage, 0.83x with this layout.
        stage, batch_format, batch_size, memory = dataset, "pyarrow", None, None
    predicted = stage.map_batches(
        PredictBatches,
        batch_format=batch_format,
        batch_size=batch_size,
        fn_constructor_kwargs={
            "model": ray.put(Path(model_path).read_bytes()),
            "name": Path(model_path).name,
            "provider": plan.provider,
            "threads": threads or (None if plan.num_gpus else 1),
            "fallback": fallback,
            "top_k": config.top_k,
            "batch_size": config.batch_size,
        },
        compute=ray.data.ActorPoolStrategy(size=plan.size),
        num_cpus=ACTOR_CPUS,
        num_gpus=plan.num_gpus or None,
        memory=memory,  # GPU actors: the session's memory, so Ray places them where it fits
    )
    seen = np.zeros(len(paths), bool)
    providers: dict[str, str] = {}
    # The iterator is closed, and the threads it started have ended, before this returns, even on Ctrl-C: a
    # thread that calls Ray after ray.shutdown() makes Ray end the whole process (exit code 1, no traceback).
    running = set(threading.enumerate())
    tables = iter(predicted.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
    try:
        for table in tables:
            index = table.column("_index").to_numpy()
            first = np.zeros(len(index), bool)
            first[np.unique(index, return_index=True)[1]] = True
            fresh = first & ~seen[index]
            seen[index] = True
            summary.duplicates_dropped += int(len(index) - fresh.sum())
            for name, note in zip(table.column("_provider").to_pylist(), table.column("_note").to_pylist()):
                providers.setdefault(name, note)
            rows = table.filter(pa.array(fresh)).drop_columns(["_index", "_provider", "_note"])
            _count(rows, summary)
            store.write(rows)
            if on_progress is not None:
                on_progress(int(seen.sum()), len(paths))
    finally:
        tables.close()
        join_new_threads(running)
    summary.missing = int(len(paths) - seen.sum())
    summary.provider = "+".join(sorted(providers)) or plan.provider
    summary.provider_note = "; ".join(sorted({note for note in providers.values() if note})) or None


def join_new_threads(before: set[threading.Thread], timeout: float = 20.0) -> None:
    """Wait (up to ``timeout`` seconds in all) for the threads started since ``before`` to end.

    Ray Data leaves worker threads finishing a block after its iterator is closed. Its block prefetcher is left
    alone: Ray 2.60 stops it only at the end of the data, it stays parked, and with ``prefetch_batches=0`` it
    is never handed a block, so it never calls Ray.
    """
    deadline = time.monotonic() + timeout
    for thread in set(threading.enumerate()) - before:
        if thread.name != "Prefetcher":
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.debug(f"thread {thread.name} still running after the Ray run")


def actor_memory(model_bytes: int) -> int:
    """Bytes a predictor actor reserves: its ONNX Runtime session (weights, arena, a batch) and headroom."""
    return max(256 * 2**20, 8 * model_bytes)


def _count(table: Any, summary: ClassifySummary) -> None:
    import pyarrow.compute as pc

    ok = pc.equal(table.column("status"), "ok")
    for item in pc.value_counts(table.column("label").filter(ok)).to_pylist():
        summary.per_label[item["values"] or "?"] += item["counts"]
    classified = int(pc.sum(ok).as_py() or 0)
    summary.classified += classified
    summary.skipped += table.num_rows - classified
    if table.num_rows > classified and len(summary.skipped_examples) < 20:
        skipped = table.filter(pc.invert(ok)).slice(0, 20 - len(summary.skipped_examples))
        summary.skipped_examples += zip(
            skipped.column("path").to_pylist(), skipped.column("error").to_pylist()
        )
