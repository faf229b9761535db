"""A run into a folder that an interrupted run left behind: its decode cache and lock file are not this run's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_SIZE

from edgecnn.core.contract import InputSpec
from edgecnn.core.dataset import discover
from edgecnn.training.pipeline import cache_key

SPEC = InputSpec.square(TINY_SIZE)


def _stale_cache(prefix: str, count: int) -> None:
    """A finished tf.data cache of ``count`` black images, all of class 0: what another run decoded."""
    import tensorflow as tf

    images = np.zeros((count, TINY_SIZE, TINY_SIZE, 3), np.uint8)
    labels = np.zeros(count, np.int32)
    for _ in tf.data.Dataset.from_tensor_slices((images, labels)).cache(prefix):
        pass


def _leftovers(cache_dir, samples, kind: str) -> None:
    """What a killed run leaves, under the old fixed names and under this run's own keyed names."""
    cache_dir.mkdir(parents=True)
    prefixes = [f"decoded-{split}" for split in ("train", "val")]
    prefixes += [f"decoded-{cache_key(s, SPEC)}-{split}" for split, s in zip(("train", "val"), samples)]
    for prefix in prefixes:
        if kind == "lock file":  # killed while decoding: tf.data refuses a cache whose lock file is there
            (cache_dir / f"{prefix}_0.lockfile").write_text("Created at: 1")
            (cache_dir / f"{prefix}_0.data-00000-of-00001.tempstate1").write_bytes(b"")
        else:  # killed while training: a finished cache of other images
            _stale_cache(str(cache_dir / prefix), count=5)


@pytest.mark.parametrize("kind", ["lock file", "finished cache"])
def test_interrupted_runs_leftover_cache_is_not_read_and_does_not_fail(
    tmp_path, synth_dir, monkeypatch, kind
):
    from edgecnn.training import train as train_module
    from edgecnn.training.config import TrainConfig

    monkeypatch.setattr(train_module, "MEMORY_CACHE_LIMIT", 0)  # the on-disk cache, as for a large dataset
    run = tmp_path / "run"
    splits = discover(synth_dir)
    _leftovers(run / "cache", (splits.train, splits.val), kind)
    (run / "best.weights.h5").write_bytes(b"a checkpoint of the interrupted run")

    result = train_module.train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=run,
            arch="cnn",
            img_size=TINY_SIZE,
            epochs=1,
            batch_size=16,
            base_filters=4,
            precision="fp32",
            verbose=0,
        )
    )
    data = result.report["data"]
    assert (data["train_images"], data["val_images"]) == (len(splits.train), len(splits.val)) == (72, 24)
    assert result.metrics.count == 24 and result.metrics.confusion.sum(axis=1).tolist() == [8, 8, 8]
    assert (run / "model.keras").is_file() and not (run / "best.weights.h5").exists()
    assert not list((run / "cache").glob("decoded*"))  # nothing left for the next run either


def test_cache_key_follows_the_data_and_the_settings(tmp_path, synth_dir):
    samples = discover(synth_dir).train
    key = cache_key(samples, SPEC)
    assert cache_key(list(samples), SPEC) == key
    assert cache_key(samples, InputSpec.square(TINY_SIZE + 8)) != key
    assert cache_key(samples, InputSpec.square(TINY_SIZE, channels=1)) != key
    assert cache_key(samples[:-1], SPEC) != key
    assert cache_key([(p, (label + 1) % 3) for p, label in samples], SPEC) != key
    changed = tmp_path / samples[0][0].name
    changed.write_bytes(samples[0][0].read_bytes() + b"\0")  # same name elsewhere, other bytes
    assert cache_key([(changed, samples[0][1]), *samples[1:]], SPEC) != key
