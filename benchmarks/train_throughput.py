"""Training throughput: edgecnn's tf.data pipeline against the seeds' ways of feeding Keras, same model and data.

Baselines: (1) ``ImageDataGenerator.flow_from_directory`` with its own augmentation (rotation, shifts, zoom,
flip, brightness), the Python loading of the seed notebooks; (2) ``keras.utils.image_dataset_from_directory``
without cache or prefetch, Keras' stock augmentation layers (flip, rotation, zoom, translation, contrast,
brightness) at the front of the model, every JPEG decoded again each epoch. edgecnn: images decoded once through
``imaging.load_image`` and cached, augmentation mapped in tf.data (one fused affine warp instead of four
resampling layers, then contrast and brightness), prefetch. All train the same CNN (96 px, batch 32) for the same epochs; images per second is the mean over the epochs
after the first (the first includes graph tracing and, for edgecnn, filling the cache).

    python benchmarks/train_throughput.py [--data ../shared/datasets/cats_dogs] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

from common import dataset, write_result


def keras_layers_augmenter(keras, seed):
    """The seeds' augmentation: Keras' stock layers, one resampling pass per geometric layer."""
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
            layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 2),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
            layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 4),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 5),
        ]
    )


class EpochClock:
    def __new__(cls, keras):
        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.train = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_test_begin(self, logs=None):
                self.train.append(time.perf_counter() - self.t)

            def on_epoch_end(self, epoch, logs=None):
                if len(self.train) <= epoch:
                    self.train.append(time.perf_counter() - self.t)

        return Clock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    root = dataset("cats_dogs") if args.data is None else __import__("pathlib").Path(args.data)

    from edgecnn.core.contract import InputSpec
    from edgecnn.core.dataset import discover
    from edgecnn.training.augment import build_augmenter
    from edgecnn.training.models import build_cnn, import_keras
    from edgecnn.training.pipeline import make_dataset

    keras, tf = import_keras()
    splits = discover(root)
    spec = InputSpec.square(args.img_size)
    n = len(splits.train)
    results = {}

    def fit(model, ds, label):
        keras.utils.set_random_seed(0)
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        clock = EpochClock(keras)
        t0 = time.perf_counter()
        model.fit(ds, epochs=args.epochs, verbose=2, callbacks=[clock])
        total = time.perf_counter() - t0
        steady = clock.train[1:] or clock.train  # this machine's speed drifts from epoch to epoch: average
        mean = sum(steady) / len(steady)
        results[label] = {
            "mean_epoch_seconds": round(mean, 2),
            "epoch_seconds": [round(x, 2) for x in clock.train],
            "images_per_second": round(n / mean, 1),
            "total_seconds": round(total, 1),
        }
        print(label, results[label])

    # Baseline 1: the seed notebooks' ImageDataGenerator (kept by Keras 3 as a legacy class).
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(
        rotation_range=18,
        width_shift_range=0.1,
        height_shift_range=0.1,
        zoom_range=0.15,
        horizontal_flip=True,
        brightness_range=(0.85, 1.15),
    ).flow_from_directory(
        str(splits.train_dir),
        target_size=(args.img_size, args.img_size),
        batch_size=args.batch_size,
        class_mode="sparse",
        seed=0,
    )
    fit(build_cnn(spec, len(splits.classes)).model, generator, "baseline_image_data_generator")

    # Baseline 2: image_dataset_from_directory without cache or prefetch, augmentation inside the model.
    keras.utils.set_random_seed(0)
    base_ds = keras.utils.image_dataset_from_directory(
        str(splits.train_dir),
        image_size=(args.img_size, args.img_size),
        batch_size=args.batch_size,
        label_mode="int",
        seed=0,
    )
    built = build_cnn(spec, len(splits.classes))
    inputs = keras.Input(spec.shape)
    model = keras.Model(inputs, built.model(keras_layers_augmenter(keras, 0)(inputs)))
    fit(model, base_ds, "baseline_image_dataset_from_directory")

    # edgecnn: cached decode, augmentation in tf.data, prefetch.
    t0 = time.perf_counter()
    ds, _, kept = make_dataset(
        splits.train, spec, args.batch_size, shuffle=True, seed=0, augment=build_augmenter(keras, 0)
    )
    decode = time.perf_counter() - t0
    fit(build_cnn(spec, len(splits.classes)).model, ds, "edgecnn")
    results["edgecnn"]["decode_and_cache_seconds"] = round(decode, 2)

    ours = results["edgecnn"]["images_per_second"]
    ratio = ours / results["baseline_image_data_generator"]["images_per_second"]
    ratio_dataset = ours / results["baseline_image_dataset_from_directory"]["images_per_second"]
    print(
        f"edgecnn / ImageDataGenerator: {ratio:.2f}x; edgecnn / image_dataset_from_directory: {ratio_dataset:.2f}x"
    )
    write_result(
        "train_throughput",
        {
            "dataset": "cats_dogs/train",
            "images": n,
            "img_size": args.img_size,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "results": results,
            "ratio": round(ratio, 3),
            "ratio_vs_image_dataset": round(ratio_dataset, 3),
        },
    )


if __name__ == "__main__":
    main()
