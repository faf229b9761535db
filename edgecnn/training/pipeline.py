"""The tf.data training pipeline over labelled samples (TensorFlow is imported only when it is built)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec
from edgecnn.core.dataset import Sample, Skipped
from edgecnn.core.decode import decode_one
from edgecnn.core.errors import OutputError
from edgecnn.core.version import __version__

#: The prefix of tf.data's cache files inside a run folder's ``cache/`` (``<prefix>-<key>-<split>...``).
CACHE_PREFIX = "decoded"


def cache_key(samples: Sequence[Sample], spec: InputSpec) -> str:
    """A name for the decoded images of ``samples`` under ``spec``: it changes when the data or settings do.

    The files (path, label, size, modification time), the input spec and the edgecnn version go into it,
    so a cache left by another run (other data, image size, channels or resize) is never read back.
    """
    files: list[list[Any]] = []
    for path, label in samples:
        try:
            st = os.stat(path)
            stamp: list[int | None] = [st.st_size, st.st_mtime_ns]
        except OSError:  # an unreadable file is skipped at decode time; it still names the data
            stamp = [None, None]
        files.append([str(path), int(label), *stamp])
    facts = {"edgecnn": __version__, "input": spec.to_dict(), "files": files}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def clear_decode_cache(cache_dir: Path) -> None:
    """Remove the tf.data cache files a run left in ``cache_dir`` (a killed run leaves them, lock file too).

    A killed run's lock file would make tf.data refuse the next run, and a finished cache of other data
    would be read back as if it were this run's; nothing else uses the folder, so it is emptied of them.

    Raises:
        OutputError: A leftover cache file cannot be removed.
    """
    if not cache_dir.is_dir():
        return
    for leftover in sorted(cache_dir.glob(CACHE_PREFIX + "*")):
        try:
            leftover.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot remove the leftover decode cache {leftover}: {exc.strerror or exc}; "
                "delete it or choose another --out"
            ) from None


def make_dataset(
    samples: Sequence[Sample],
    spec: InputSpec,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augment: Callable[..., Any] | None = None,
    cache_file: str | None = None,
    num_classes: int | None = None,
    mixup: float = 0.0,
) -> tuple[Any, list[Skipped], int]:
    """Build a cached tf.data pipeline of (float32 image batch, label batch) and decode it once.

    Decoding runs ``imaging.load_image`` in parallel inside tf.data; the decoded images are cached (in
    memory, or in ``cache_file``), so later epochs only shuffle, augment and batch. Files that fail to
    decode are dropped and returned with their reason.

    Args:
        num_classes: Give one-hot float labels of this width (int labels when None).
        mixup: Mixup's Beta(alpha, alpha) parameter, applied after ``augment`` (0: off; needs
            ``num_classes``).

    Returns:
        (dataset, skipped files, number of images kept).
    """
    import tensorflow as tf

    failures: list[Skipped] = []
    paths = [str(p) for p, _ in samples]
    labels = np.array([label for _, label in samples], dtype=np.int32)
    h, w, c = spec.shape

    def _load(path: bytes) -> tuple[np.ndarray, np.bool_]:
        decoded = decode_one(path.decode("utf-8", "surrogateescape"), spec)  # core.decode's one rule
        if decoded.image is not None:
            return decoded.image, np.bool_(True)
        failures.append((Path(decoded.item), decoded.error or "unreadable"))
        return np.zeros((h, w, c), np.uint8), np.bool_(False)

    def _map(path: Any, label: Any) -> tuple[Any, Any, Any]:
        image, ok = tf.numpy_function(_load, [path], [tf.uint8, tf.bool], stateful=False)
        image.set_shape((h, w, c))
        ok.set_shape(())
        return image, label, ok

    def _is_ok(image: Any, label: Any, ok: Any) -> Any:
        return ok

    def _drop_flag(image: Any, label: Any, ok: Any) -> tuple[Any, Any]:
        return image, label

    def _to_float(images: Any, batch_labels: Any) -> tuple[Any, Any]:
        return tf.cast(images, tf.float32), batch_labels

    def _augment(images: Any, batch_labels: Any) -> tuple[Any, Any]:
        assert augment is not None
        return augment(images, training=True), batch_labels

    def _one_hot(images: Any, batch_labels: Any) -> tuple[Any, Any]:
        return images, tf.one_hot(batch_labels, num_classes)

    def _mixup(images: Any, batch_labels: Any) -> tuple[Any, Any]:
        from edgecnn.training.augment import mix_batch

        return mix_batch(images, batch_labels, mixup, seed)

    no_autograph = tf.autograph.experimental.do_not_convert
    # Fixed parallelism instead of tf.data's autotuner: on a small machine the autotuner keeps re-tuning
    # after every validation pass and takes CPU from the training step (measured: epochs 23 s -> 38 s on
    # 2 cores). Decoding happens once (then the cache serves), so one thread per core is enough.
    parallel = max(1, os.cpu_count() or 1)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = tf.data.Dataset.from_tensor_slices((paths, labels)).with_options(options)
    ds = ds.map(no_autograph(_map), num_parallel_calls=parallel, deterministic=True)
    ds = ds.filter(no_autograph(_is_ok)).map(no_autograph(_drop_flag))
    ds = ds.cache(cache_file or "")
    kept = 0
    for images, _ in ds.batch(256):  # one pass: fills the cache and collects the failures
        kept += int(images.shape[0])
    if shuffle:
        ds = ds.shuffle(max(kept, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(no_autograph(_to_float), num_parallel_calls=parallel)
    if augment is not None:
        ds = ds.map(no_autograph(_augment), num_parallel_calls=parallel)
    if num_classes is not None:
        ds = ds.map(no_autograph(_one_hot))
    if mixup:
        if num_classes is None:
            raise ValueError("mixup needs one-hot labels: give num_classes")
        ds = ds.map(no_autograph(_mixup), num_parallel_calls=parallel)
    ds = ds.prefetch(2)
    return ds, sorted(failures), kept
