"""Training augmentation: the fused affine layer's geometry, its training switch and its use inside tf.data."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edgecnn.training.augment import RandomAffine  # noqa: E402

SIDE = 64
CENTRE = (SIDE - 1) / 2


def blob_batch(n, x, y, sigma=2.0, channels=3):
    """n copies of one smooth bright spot at (x, y) on black, float32 in 0..255."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    spot = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat(spot[None, :, :, None], n, axis=0).repeat(channels, axis=3).astype(np.float32)


def centroids(images):
    """The intensity-weighted centre (x, y) of each image's first channel."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    weights = images[..., 0] / images[..., 0].sum(axis=(1, 2), keepdims=True)
    return np.stack([(weights * xx).sum(axis=(1, 2)), (weights * yy).sum(axis=(1, 2))], axis=1)


def test_inactive_outside_training_and_identity_with_zero_ranges():
    images = np.random.default_rng(0).uniform(0, 255, (4, SIDE, SIDE, 3)).astype(np.float32)
    layer = RandomAffine(seed=1)
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    still = RandomAffine(flip=False, rotation=0, zoom=0, translation=0, seed=1)
    np.testing.assert_allclose(np.asarray(still(images, training=True)), images, atol=1e-3)


def test_flip_mirrors_about_half_the_images():
    images = np.random.default_rng(1).uniform(0, 255, (64, SIDE, SIDE, 3)).astype(np.float32)
    out = np.asarray(
        RandomAffine(flip=True, rotation=0, zoom=0, translation=0, seed=2)(images, training=True)
    )
    same = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, images)]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, images)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 <= sum(mirrored) <= 54


def test_rotation_turns_about_the_centre_within_the_range():
    radius = 20.0
    images = blob_batch(64, CENTRE + radius, CENTRE)
    out = np.asarray(
        RandomAffine(flip=False, rotation=0.05, zoom=0, translation=0, seed=3)(images, training=True)
    )
    dx, dy = (centroids(out) - CENTRE).T
    np.testing.assert_allclose(np.hypot(dx, dy), radius, atol=0.5)
    angles = np.degrees(np.arctan2(dy, dx))
    assert np.abs(angles).max() <= 18.5 and np.abs(angles).max() > 9
    assert (angles > 1).any() and (angles < -1).any()


def test_zoom_scales_distances_from_the_centre_within_the_range():
    radius = 16.0
    images = blob_batch(64, CENTRE + radius, CENTRE)
    out = np.asarray(
        RandomAffine(flip=False, rotation=0, zoom=0.15, translation=0, seed=4)(images, training=True)
    )
    dx, dy = (centroids(out) - CENTRE).T
    np.testing.assert_allclose(dy, 0, atol=0.2)
    factors = dx / radius  # the output shows the input scaled by 1 / (1 + zoom draw)
    assert factors.min() >= 1 / 1.15 - 0.02 and factors.max() <= 1 / 0.85 + 0.02
    assert factors.min() < 0.95 and factors.max() > 1.05


def test_zoom_out_shrinks_the_subject_as_far_as_the_factor_and_repeats_the_edge():
    radius = 16.0
    layer = RandomAffine(flip=False, rotation=0, zoom=0.15, translation=0, zoom_out=2.0, seed=7)
    out = np.asarray(layer(blob_batch(64, CENTRE + radius, CENTRE), training=True))
    factors = (centroids(out)[:, 0] - CENTRE) / radius
    assert factors.min() >= 1 / 2.0 - 0.02 and factors.max() <= 1 / 0.85 + 0.02
    assert factors.min() < 0.6 and factors.max() > 1.05  # far out and a little in
    # A ramp (value = column) stays a non-decreasing ramp: the border repeats the edge, never mirrors it.
    ramp = np.broadcast_to(np.arange(SIDE, dtype=np.float32)[None, None, :, None], (16, SIDE, SIDE, 3))
    warped = np.asarray(layer(np.ascontiguousarray(ramp), training=True))
    assert (np.diff(warped[..., 0], axis=2) >= -1e-3).all()
    assert (warped[:, :, 0, 0] < 1e-3).sum() > 0 and warped.max() <= SIDE - 1 + 1e-3
    reflected = np.asarray(RandomAffine(flip=False, rotation=0, zoom=0.5, translation=0, seed=7)(ramp))
    assert (np.diff(reflected[..., 0], axis=2) < -0.5).any()  # the old fill mirrors: what zoom_out avoids
    with pytest.raises(ValueError, match="zoom_out"):
        RandomAffine(zoom_out=0.9)


def test_translation_shifts_within_a_tenth_of_the_side():
    images = blob_batch(64, CENTRE, CENTRE)
    out = np.asarray(
        RandomAffine(flip=False, rotation=0, zoom=0, translation=0.1, seed=5)(images, training=True)
    )
    shifts = centroids(out) - CENTRE
    assert np.abs(shifts).max() <= 0.1 * SIDE + 0.3
    assert np.abs(shifts[:, 0]).max() > 3 and np.abs(shifts[:, 1]).max() > 3


def test_runs_inside_tf_data_on_uint8_and_grey_batches():
    layer = RandomAffine(seed=6)
    grey = tf.constant(np.random.default_rng(2).integers(0, 255, (8, SIDE, SIDE, 1)), tf.uint8)
    ds = tf.data.Dataset.from_tensors(grey).repeat(2).map(lambda b: layer(b, training=True))
    batches = list(ds)
    assert [tuple(b.shape) for b in batches] == [(8, SIDE, SIDE, 1)] * 2
    assert all(b.dtype == tf.uint8 for b in batches)
    assert not np.array_equal(batches[0].numpy(), batches[1].numpy())
    single = layer(tf.cast(grey[0], tf.float32), training=True)
    assert tuple(single.shape) == (SIDE, SIDE, 1)


def test_out_of_range_factor_is_refused():
    with pytest.raises(ValueError, match="rotation"):
        RandomAffine(rotation=1.5)
