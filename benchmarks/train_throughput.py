"""Training throughput: edgecnn's tf.data pipeline against the seeds' way of feeding Keras, same model and data.

Baseline: ``keras.utils.image_dataset_from_directory`` without cache or prefetch, augmentation layers at the
front of the model (as the seed notebooks do), decoding every JPEG again each epoch. edgecnn: images decoded
once through ``imaging.load_image`` and cached, augmentation mapped in tf.data, prefetch. Both train the same
CNN (96 px, batch 32) for the same epochs; images per second is measured over the last epoch (the first one
includes graph tracing and, for edgecnn, filling the cache).

    python benchmarks/train_throughput.py [--data ../shared/datasets/cats_dogs] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

from common import dataset, write_result


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
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    root = dataset("cats_dogs") if args.data is None else __import__("pathlib").Path(args.data)

    from edgecnn.contract import InputSpec
    from edgecnn.data import discover, make_dataset
    from edgecnn.models import build_cnn, import_keras
    from edgecnn.train import build_augmenter

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
        last = clock.train[-1]
        results[label] = {
            "last_epoch_seconds": round(last, 2),
            "images_per_second": round(n / last, 1),
            "total_seconds": round(total, 1),
        }
        print(label, results[label])

    # Baseline: the seeds' pipeline.
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
    model = keras.Model(inputs, built.model(build_augmenter(keras, 0)(inputs)))
    fit(model, base_ds, "baseline_image_dataset_from_directory")

    # edgecnn: cached decode, augmentation in tf.data, prefetch.
    t0 = time.perf_counter()
    ds, _, kept = make_dataset(
        splits.train, spec, args.batch_size, shuffle=True, seed=0, augment=build_augmenter(keras, 0)
    )
    decode = time.perf_counter() - t0
    fit(build_cnn(spec, len(splits.classes)).model, ds, "edgecnn")
    results["edgecnn"]["decode_and_cache_seconds"] = round(decode, 2)

    ratio = (
        results["edgecnn"]["images_per_second"]
        / results["baseline_image_dataset_from_directory"]["images_per_second"]
    )
    print(f"edgecnn / baseline training throughput: {ratio:.2f}x")
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
        },
    )


if __name__ == "__main__":
    main()
