"""What the workers of a Ray run (``classify --ray``) execute, and the listing that feeds them.

Files are listed on the driver: local paths with the one folder walker (``core.files``), URIs (``s3://``,
``gs://``, anything pyarrow's filesystems open) with a filesystem listing under the same rules (image suffixes,
hidden names ignored, name order). A decode task (in front of GPU actors) or a CPU actor reads each file and
runs ``core.imaging.load_image``; a file that cannot be used gets its reason, never a failed task. A predictor
actor holds the model in an ONNX Runtime session and turns a batch into the rows local ``classify`` writes
(``apps.outputs.Row``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edgecnn.apps.classify import ClassifyConfig, ClassifySummary
from edgecnn.apps.cluster_store import results_table, resume_key
from edgecnn.apps.outputs import Row
from edgecnn.core.contract import InputSpec
from edgecnn.core.decode import Decoded, decode_one, decode_parallel
from edgecnn.core.errors import ConfigError, ImageError
from edgecnn.core.files import iter_image_files
from edgecnn.core.imaging import IMAGE_SUFFIXES, MAX_FILE_BYTES
from edgecnn.runtime.predictor import Predictor

#: Files of a block read at once from an object store (``s3://``, ``gs://``) by one task or actor.
URI_READERS = 16
#: Decoded pixels one decode task hands on: small enough to retry cheaply, large enough to amortise a task.
TASK_PIXEL_BYTES = 2 * 2**20
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$")  # s3://b/k; also s3:/b/k, as pathlib spells it


def as_uri(raw: str | os.PathLike[str]) -> str | None:
    """``raw`` as a URI (``s3://bucket/key``) when it names one, else None (a local path)."""
    match = _URI.match(os.fspath(raw))
    if match is None or match.group(1).lower() == "file":
        return None
    return f"{match.group(1).lower()}://{match.group(2)}"


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot open {uri}: {str(exc).splitlines()[0][:200]}") from None


def iter_uri_files(uri: str, recursive: bool, skipped: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """(path as reported, URI to read) of the image files under a URI, in name order; hidden names ignored."""
    from pyarrow import fs

    base_uri, _, query = uri.partition("?")
    scheme = base_uri.split("://", 1)[0]
    filesystem, base = _filesystem(uri)
    info = filesystem.get_file_info(base)
    if info.type == fs.FileType.NotFound:
        skipped.append((base_uri, "not found"))
        return
    if info.type == fs.FileType.File:
        yield base_uri, uri
        return
    found = filesystem.get_file_info(fs.FileSelector(base, recursive=recursive))
    for entry in sorted(found, key=lambda e: e.path):
        relative = entry.path[len(base) :].lstrip("/")
        if entry.type != fs.FileType.File or any(part.startswith(".") for part in relative.split("/")):
            continue
        if Path(entry.base_name).suffix.lower() in IMAGE_SUFFIXES:
            reported = f"{scheme}://{entry.path}"
            if entry.size is not None and entry.size > MAX_FILE_BYTES:  # refused unread, as a local file is
                mib = f"file is {entry.size / 2**20:.0f} MiB; images over {MAX_FILE_BYTES // 2**20} MiB are refused"
                skipped.append((reported, mib))
                continue
            yield reported, reported + (f"?{query}" if query else "")


def read_uri(uri: str) -> bytes:
    """The bytes of a file named by a URI.

    Raises:
        ImageError: It cannot be read (the reason, as for a local file).
    """
    try:
        filesystem, path = _open_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read())
    except FileNotFoundError:
        raise ImageError("file not found (it may have been moved or deleted)") from None
    except (
        Exception
    ) as exc:  # pyarrow's filesystems raise OSError, ArrowInvalid, ... : this file, not the task
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ImageError(f"cannot read file ({first[:120]})") from None


_FILESYSTEMS: dict[str, Any] = {}  # one client per bucket and options in each worker process


def _open_uri(uri: str) -> tuple[Any, str]:
    parts = urlsplit(uri)
    if parts.scheme not in ("s3", "gs", "gcs"):
        return _filesystem(uri)
    key = f"{parts.scheme}://{parts.netloc}" + (f"?{parts.query}" if parts.query else "")
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = _filesystem(key)[0]
    return _FILESYSTEMS[key], parts.netloc + parts.path


def _fetch(name: str) -> str | bytes:  # load_image takes a file's bytes as well as its path
    return read_uri(name) if "://" in name else name


def decode_block(batch: Any, spec: InputSpec) -> dict[str, np.ndarray]:
    """Read and decode one block of files (columns index, path, source) into model inputs.

    A file that cannot be used gets its reason in ``error`` (and a blank image), like ``classify``'s rows:
    never a failed task. The decode stage of GPU runs; CPU actors call it on their own blocks.
    """
    names = [os.fsdecode(source) for source in batch.column("source").to_pylist()]
    images = np.zeros((len(names), *spec.shape), np.uint8)
    errors = [""] * len(names)
    if any("://" in name for name in names):
        # Object stores answer each GET after tens of milliseconds: many reads in flight, in order, bounded.
        decoded: Iterable[Decoded[str]] = decode_parallel(names, spec, workers=URI_READERS, path_of=_fetch)
    else:
        decoded = (decode_one(name, spec) for name in names)
    for i, item in enumerate(decoded):  # core.decode's one rule: an image, or the reason it is skipped
        if item.image is None:
            errors[i] = item.error or "unreadable"
        else:
            images[i] = item.image
    return {
        "index": batch.column("index").to_numpy(),
        "path": np.array(batch.column("path").to_pylist(), dtype=object),
        "image": images,
        "error": np.array(errors, dtype=object),
    }


class PredictBatches:
    """Ray Data actor: the model file (from the object store) in an ONNX Runtime session.

    It takes decoded batches (a dict of arrays from the decode tasks, in front of GPU actors), or blocks of
    files (an Arrow table of paths: a CPU actor decodes them itself, then runs the model batch by batch,
    so no pixels cross the object store). Either way it returns the rows of ``apps.cluster_store``'s schema
    with the listing index and the provider that ran.
    """

    def __init__(
        self,
        model: Any,
        name: str,
        provider: str,
        threads: int | None,
        fallback: bool,
        top_k: int,
        batch_size: int,
    ) -> None:
        import ray

        data = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        folder = tempfile.mkdtemp(prefix="edgecnn-model-")
        try:
            path = Path(folder) / name
            path.write_bytes(data)
            self.predictor = Predictor(path, provider=provider, threads=threads, fallback=fallback)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the session holds the model in memory
        self.top_k = top_k
        self.batch_size = batch_size

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if isinstance(batch, dict):
            return self.predict(batch)
        decoded = decode_block(batch, self.predictor.contract.input)
        step = self.batch_size
        return pa.concat_tables(
            [
                self.predict({key: column[i : i + step] for key, column in decoded.items()})
                for i in range(0, batch.num_rows, step)
            ]
        )

    def predict(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        errors = [str(e) or None for e in batch["error"]]
        ok = [i for i, error in enumerate(errors) if error is None]
        probs = self.predictor.predict_batch(batch["image"][ok].astype(np.float32)) if ok else None
        tops: list[list[tuple[str, float]]] = [[] for _ in errors]
        for i, top in zip(ok, self.predictor.top_k(probs, self.top_k) if probs is not None else []):
            tops[i] = top
        table = results_table([str(p) for p in batch["path"]], errors, tops)
        info = self.predictor.info
        table = table.append_column("_index", pa.array(np.asarray(batch["index"], np.int64)))
        table = table.append_column("_provider", pa.array([info.provider] * len(errors), pa.string()))
        return table.append_column("_note", pa.array([info.note or ""] * len(errors), pa.string()))


def list_inputs(
    config: ClassifyConfig, done: dict[str, str], summary: ClassifySummary
) -> tuple[list[str], list[bytes], list[Row]]:
    """(paths as reported, what workers read, rows for what could not be listed) of the files still to do.

    One row per file: a file named twice (``a.jpg a.jpg``, a folder and a file in it, a link to it) is
    listed once, at its first place, matched by ``cluster_store.resume_key`` as ``--resume`` matches it.
    """
    paths: list[str] = []
    sources: list[bytes] = []
    skipped: list[tuple[Any, str]] = []
    seen: set[str] = set()

    def first(key: str) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    def keep(reported: str, key: str, source: bytes) -> None:
        if not first(key):
            return
        status = done.get(key)
        if status is not None:
            summary.already_done += 1
            summary.already_skipped += status != "ok"
            return
        paths.append(reported)
        sources.append(source)

    local = []
    for raw in config.paths:
        uri = as_uri(raw)
        if uri is None:
            local.append(raw)
            continue
        for reported, source in iter_uri_files(uri, config.recursive, skipped):
            keep(reported, resume_key(reported), source.encode())
    for path in iter_image_files(local, recursive=config.recursive, skipped=skipped):
        keep(str(path), resume_key(str(path)), os.fsencode(os.path.abspath(path)))
    rows = [
        Row(str(p), "skipped", error=reason)
        for p, reason in skipped
        if first(key := resume_key(str(p))) and key not in done
    ]
    return paths, sources, rows


def files_per_task(spec: InputSpec, batch_size: int, files: int, plan: Any) -> int:
    """Files per Ray task: a block a CPU actor decodes and classifies, or a GPU run's decode task.

    CPU actors pass no pixels on: blocks of up to 1,000 files, at least 4 per actor so the last ones finish
    together, and at least a batch unless that would leave an actor without a block. Decode tasks hand their pixels to the GPUs through the object store: about 2 MiB of them.
    """
    if plan.num_gpus:
        return max(batch_size, min(1000, TASK_PIXEL_BYTES // max(1, int(np.prod(spec.shape)))))
    # A few files: one block per actor at most a batch long, so every actor gets work.
    return max(min(batch_size, -(-files // plan.size)), min(1000, files // (4 * plan.size)))
