"""The training recipe: a cosine that fits the time budget, mixup, label smoothing."""

import itertools
import json
import math

import numpy as np
import pytest
from conftest import TINY_SIZE

from edgecnn.core.errors import ConfigError
from edgecnn.training.config import TrainConfig
from edgecnn.training.schedule import FLOOR, BudgetCosine, early_stopping, make_optimizer


def test_budget_cosine_warms_up_then_decays_with_the_steps():
    plan = BudgetCosine(lr=1e-3, total_steps=100, warmup_steps=10, seconds=1e9)
    assert plan.rate(0, 0.0) == pytest.approx(1e-4)
    assert plan.rate(5, 0.0) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert plan.rate(10, 0.0) == pytest.approx(1e-3)
    assert plan.rate(55, 0.0) == pytest.approx(1e-3 * (FLOOR + (1 - FLOOR) * 0.5))
    assert plan.rate(100, 0.0) == pytest.approx(1e-3 * FLOOR)
    rates = [plan.rate(s, 0.0) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_budget_cosine_follows_the_clock_when_time_runs_out_first():
    plan = BudgetCosine(lr=1e-3, total_steps=10_000, warmup_steps=10, seconds=100.0)
    # A tenth of the steps but half the time: the rate is the cosine's midpoint, not its start.
    assert plan.rate(1000, 50.0) == pytest.approx(1e-3 * (FLOOR + (1 - FLOOR) * 0.5))
    assert plan.rate(1000, 40.0) == pytest.approx(1e-3 * (FLOOR + (1 - FLOOR) * 0.5))  # never goes back
    assert plan.rate(1000, 100.0) == pytest.approx(1e-3 * FLOOR)
    assert plan.rate(1000, 250.0) == pytest.approx(1e-3 * FLOOR)  # never below the floor
    # A 20 s epoch moves the end 20 s earlier: the last epoch that fits runs at the floor.
    plan = BudgetCosine(lr=1e-3, total_steps=10_000, warmup_steps=10, seconds=100.0)
    assert plan.rate(1000, 40.0, epoch_seconds=20.0) == pytest.approx(
        1e-3 * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    )
    assert plan.rate(1000, 80.0, epoch_seconds=20.0) == pytest.approx(1e-3 * FLOOR)


@pytest.mark.parametrize("first_epoch", [0, 20])  # the first phase, and a fine-tuning phase after 20 epochs
def test_early_stopping_waits_for_the_last_third_of_the_phase(first_epoch):
    """A validation loss that only gets worse: no stop in the phase's first two thirds, then a stop after
    patience."""
    import keras

    class Weights:  # what EarlyStopping asks of its model
        stop_training = False

        def get_weights(self):
            return []

        def set_weights(self, weights):
            pass

    stopper = early_stopping(keras, first_epoch, epochs=20, patience=3)
    stopper.set_model(Weights())
    stopper.on_train_begin()
    stopped_at = None
    for epoch in range(first_epoch, first_epoch + 20):
        stopper.on_epoch_end(epoch, {"val_loss": 1.0 + epoch})
        if stopper.model.stop_training:
            stopped_at = epoch - first_epoch
            break
    # Watched from the phase's epoch 13 (2/3 of 20) on: the best there, then 3 epochs without a better one.
    assert stopped_at == 16


def test_budget_cosine_caps_the_warm_up_at_a_fifth_of_the_steps():
    plan = BudgetCosine(lr=1.0, total_steps=20, warmup_steps=10, seconds=1e9)
    assert plan.warmup_steps == 4 and plan.rate(4, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("label_smoothing", 1.0, "--label-smoothing"),
        ("label_smoothing", -0.1, "--label-smoothing"),
        ("mixup", -1.0, "--mixup"),
        ("mixup", 11.0, "--mixup"),
        ("downscale", 1.5, "--downscale"),
        ("desaturate", -0.1, "--desaturate"),
        ("zoom_out", 0.5, "--zoom-out"),
        ("ema", 1.0, "--ema"),
        ("zoom_out", 5.0, "--zoom-out"),
        ("bn_momentum", 1.0, "--bn-momentum"),
        ("weight_decay", -0.01, "--weight-decay"),
        ("weight_decay", 1.0, "--weight-decay"),
    ],
)
def test_recipe_options_are_checked(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data_dir=tmp_path, arch="cnn", **{field: value})


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_weight_decay_shrinks_the_kernels_and_spares_batch_norm_and_biases(weight_decay):
    import keras

    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, bias_initializer="ones"),
            keras.layers.BatchNormalization(),
        ]
    )
    before = {v.path: np.array(v) for v in model.trainable_variables}
    optimizer = make_optimizer(keras, 0.1, weight_decay, ema=0.0)
    # A zero gradient moves nothing but the decay: decayed weights shrink by exactly lr x decay.
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in model.trainable_variables])
    after = {v.path: np.array(v) for v in model.trainable_variables}
    kernel = next(p for p in before if p.endswith("kernel"))
    np.testing.assert_allclose(after[kernel], before[kernel] * (1 - 0.1 * weight_decay), rtol=1e-6)
    spared = [p for p in before if p.split("/")[-1] in ("gamma", "beta", "bias")]
    assert len(spared) == 3
    for path in spared:
        np.testing.assert_array_equal(after[path], before[path])


def test_mixup_blends_images_and_labels_with_the_same_weight():
    import tensorflow as tf

    from edgecnn.training.augment import mix_batch

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    mixed, soft = (np.asarray(t) for t in mix_batch(tf.constant(images), tf.constant(labels), 0.4, seed=3))
    partner = np.arange(16)[::-1]
    own = np.einsum("nk,nk->n", soft, labels)  # weight of each image's own label
    other = np.einsum("nk,nk->n", soft, labels[partner])
    same = (labels == labels[partner]).all(axis=1)
    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    lam = np.where(same, 1.0, own)
    assert (lam >= 0.5 - 1e-6).all() and (lam[~same] < 1.0).any()  # mostly itself, some really mixed
    for i in np.flatnonzero(~same):
        expected = lam[i] * images[i] + (1 - lam[i]) * images[partner[i]]
        np.testing.assert_allclose(mixed[i], expected, rtol=1e-5, atol=1e-3)
        assert other[i] == pytest.approx(1 - lam[i], abs=1e-6)


def test_time_budget_run_decays_the_rate_to_its_floor(tmp_path, synth_dir, monkeypatch):
    from edgecnn.training import schedule
    from edgecnn.training.train import train

    # Simulated time: every reading of the budget's clock advances it by 0.1 s, so the run fits the same
    # number of epochs on any machine (a real 7 s budget fitted one epoch on a busy machine, where tracing
    # made the first epoch last more than half the budget).
    readings = itertools.count()
    monkeypatch.setattr(schedule, "clock", lambda: next(readings) * 0.1)
    result = train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=tmp_path / "run",
            arch="cnn",
            img_size=TINY_SIZE,
            epochs=500,
            batch_size=16,
            base_filters=4,
            max_minutes=0.12,
            patience=500,
            label_smoothing=0.1,
            mixup=0.2,
            downscale=0.5,
            desaturate=0.5,
            verbose=0,
        )
    )
    report = result.report
    history = json.loads((result.run_dir / "history.json").read_text())
    rates = history["learning_rate"]
    assert report["stopped_by_time_budget"] and 4 <= report["epochs_run"] < 500
    assert len(rates) == report["epochs_run"]
    assert rates[0] > rates[-1] and all(a >= b for a, b in zip(rates[1:], rates[2:]))
    # The last epoch that fitted ended within about one epoch of the cosine's end.
    assert rates[-1] <= 1e-3 * (FLOOR + (1 - FLOOR) * 0.5)
    assert report["config"]["label_smoothing"] == 0.1 and report["config"]["mixup"] == 0.2
    assert report["config"]["downscale"] == 0.5 and report["config"]["desaturate"] == 0.5
    assert 0 <= report["val_accuracy"] <= 1 and len(history["val_accuracy"]) == report["epochs_run"]


def test_random_downscale_blurs_like_an_enlarged_small_photo():
    import cv2

    from edgecnn.training.augment import RandomDownscale

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    always = RandomDownscale(probability=1.0, smallest=0.5, seed=2)
    out = np.asarray(always(images, training=True))
    assert out.shape == images.shape
    for image, got in zip(images, out):
        # Some shrink factor in [0.5, 1) reproduces the image exactly with the inference resize (INTER_AREA).
        candidates = [
            cv2.resize(
                cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA),
                (32, 32),
                interpolation=cv2.INTER_AREA,
            )
            for s in range(16, 33)
        ]
        assert min(np.abs(c - got).max() for c in candidates) < 1e-3
        assert got.std() < image.std()  # detail was lost
    never = RandomDownscale(probability=0.0)
    np.testing.assert_array_equal(np.asarray(never(images, training=True)), images)
    np.testing.assert_array_equal(np.asarray(always(images, training=False)), images)
    with pytest.raises(ValueError, match="probability"):
        RandomDownscale(probability=1.5)


def test_random_desaturate_turns_some_images_grey_and_resaturates_the_others():
    from edgecnn.training.augment import RandomDesaturate

    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (64, 8, 8, 3)).astype(np.float32)
    grey = images.mean(axis=-1, keepdims=True)
    out = np.asarray(RandomDesaturate(probability=0.5, saturation=0.5, seed=3)(images, training=True))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    spread = np.abs(out - out.mean(axis=-1, keepdims=True)).max(axis=(1, 2, 3))
    turned_grey = spread < 1e-3
    assert 16 <= turned_grey.sum() <= 48  # about half, at probability 0.5
    np.testing.assert_allclose(out[turned_grey], np.broadcast_to(grey, images.shape)[turned_grey], atol=1e-3)
    # The others are blends with their own grey, weight within [-0.5, 0.5] (clipping aside): colour kept.
    for image, got, g in zip(images[~turned_grey], out[~turned_grey], grey[~turned_grey]):
        weight = ((g - image) * (got - image)).sum() / ((g - image) ** 2).sum()
        inside = (image + (g - image) * weight >= 0).all() and (image + (g - image) * weight <= 255).all()
        assert -0.5 - 1e-4 <= weight <= 0.5 + 1e-4
        if inside:
            np.testing.assert_allclose(got, image + (g - image) * weight, atol=1e-2)
    single = images[..., :1]
    np.testing.assert_array_equal(np.asarray(RandomDesaturate(1.0)(single, training=True)), single)
    np.testing.assert_array_equal(np.asarray(RandomDesaturate(1.0)(images, training=False)), images)
    with pytest.raises(ValueError, match="saturation"):
        RandomDesaturate(saturation=2.0)


def test_cnn_batch_norm_momentum_is_set_on_every_layer():
    import keras

    from edgecnn.core.contract import InputSpec
    from edgecnn.training.models import build_cnn

    model = build_cnn(InputSpec.square(TINY_SIZE), 2, base_filters=4, bn_momentum=0.9).model
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(momenta) == 7 and set(momenta) == {0.9}


def test_default_recipe_per_architecture(tmp_path):
    cnn = TrainConfig(data_dir=tmp_path, arch="cnn")
    assert (cnn.epochs, cnn.label_smoothing, cnn.downscale, cnn.mixup) == (60, 0.1, 0.5, 0.0)
    assert (cnn.desaturate, cnn.zoom_out) == (0.0, 1.6)
    assert TrainConfig(data_dir=tmp_path, arch="vgg16").epochs == 40
    assert TrainConfig(data_dir=tmp_path, arch="cnn", epochs=3).epochs == 3


def test_ema_validates_checkpoints_and_saves_the_average(tmp_path, synth_dir):
    """Validation, the best checkpoint and model.keras must all be the averaged weights: the saved model's
    loss on the validation images equals the validation loss recorded for its epoch."""
    import keras

    from edgecnn.core.contract import InputSpec
    from edgecnn.core.imaging import load_image
    from edgecnn.training.train import train

    common = dict(
        data_dir=synth_dir, arch="cnn", img_size=TINY_SIZE, epochs=3, batch_size=8, base_filters=4, verbose=0
    )
    result = train(TrainConfig(out_dir=tmp_path / "ema", patience=3, ema=0.9, **common))
    plain = train(TrainConfig(out_dir=tmp_path / "plain", patience=3, **common))
    history = json.loads((result.run_dir / "history.json").read_text())
    report = result.report
    assert report["config"]["ema"] == 0.9
    classes = sorted(p.name for p in (synth_dir / "val").iterdir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((synth_dir / "val" / c).iterdir())]
    spec = InputSpec.square(TINY_SIZE)
    images = np.stack([load_image(f, spec) for f, _ in files]).astype(np.float32)
    labels = keras.utils.to_categorical([i for _, i in files], len(classes))
    model = keras.models.load_model(result.run_dir / "model.keras")
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(labels, model.predict(images, verbose=0))
    assert float(loss) == pytest.approx(history["val_loss"][report["best_epoch"] - 1], rel=1e-3)
    # The average really differs from the raw weights: the same run without it validates differently.
    plain_history = json.loads((plain.run_dir / "history.json").read_text())
    assert not np.allclose(history["val_loss"], plain_history["val_loss"], rtol=1e-3)
