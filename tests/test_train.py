"""Training: the CLI, the run folder, the data pipeline's parity with inference, VGG16 and its weights."""

import json

import numpy as np
import pytest
from conftest import TINY_SIZE
from imagefiles import gradient_rgb, save
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import InputSpec, ModelContract
from edgecnn.core.dataset import list_class_folder
from edgecnn.core.errors import DependencyError
from edgecnn.core.imaging import load_image
from edgecnn.training.pipeline import make_dataset
from edgecnn.training.synthetic import write_dataset

runner = CliRunner()


def awkward_folder(root):
    """Two classes of RGBA, grey, 16-bit, palette and plain files, plus one corrupt file."""
    for k, name in enumerate(["a", "b"]):
        folder = root / name
        folder.mkdir(parents=True)
        rgb = np.roll(gradient_rgb(30, 40), 20 * k, axis=1)
        save(rgb, folder / "plain.jpg")
        save(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), folder / "rgba.png")
        save(rgb[:, :, 1], folder / "grey.png")
        Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.mark.parametrize("channels", [3, 1])
def test_training_pipeline_matches_inference_preprocessing(tmp_path, channels):
    folder = list_class_folder(awkward_folder(tmp_path / "d"))
    spec = InputSpec.square(TINY_SIZE, channels=channels)
    ds, skipped, kept = make_dataset(folder.samples, spec, batch_size=4, shuffle=False, seed=0)
    assert [p.name for p, _ in skipped] == ["broken.jpg"]
    train_side = np.concatenate([x.numpy() for x, _ in ds])
    good = [p for p, _ in folder.samples if p.name != "broken.jpg"]
    infer_side = np.stack([load_image(p, spec) for p in good]).astype(np.float32)
    assert kept == len(good) == train_side.shape[0]
    assert train_side.dtype == np.float32 and train_side.shape[1:] == spec.shape
    assert np.abs(train_side - infer_side).max() <= 1.0


def test_run_folder_artefacts(trained_run):
    for name in (
        "model.keras",
        "report.json",
        "history.json",
        "curves.png",
        "confusion_matrix.png",
        "misclassified.png",
    ):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "report.json").read_text())
    for key in ("val_accuracy", "classes", "arch", "img_size", "per_class", "epochs_run", "train_seconds"):
        assert key in report
    assert report["classes"] == ["circle", "square", "triangle"]
    assert report["arch"] == "cnn" and report["img_size"] == TINY_SIZE and report["epochs_run"] >= 1
    assert set(report["per_class"]["circle"]) == {"precision", "recall", "f1", "support"}
    contract = ModelContract.from_dict(report["contract"])
    assert contract.labels == ("circle", "square", "triangle") and contract.input.height == TINY_SIZE
    history = json.loads((trained_run / "history.json").read_text())
    assert (
        len(history["loss"]) == report["epochs_run"] and len(history["val_accuracy"]) == report["epochs_run"]
    )


def test_evaluate_keras_matches_the_training_report(trained_run, synth_dir):
    result = runner.invoke(app, ["evaluate", str(trained_run / "model.keras"), str(synth_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    report = json.loads((trained_run / "report.json").read_text())
    assert data["count"] == 24
    assert data["accuracy"] == pytest.approx(report["val_accuracy"])
    assert np.array(data["confusion_matrix"]).sum() == 24


def test_cli_train_grey_awkward_files_lists_skipped(tmp_path):
    data = awkward_folder(tmp_path / "d")
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--arch",
            "cnn",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "--base-filters",
            "4",
            "--val-split",
            "0.4",
            "--grayscale",
            "--no-augment",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 1, result.output  # a file was skipped
    assert "broken.jpg" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["channels"] == 1 and report["contract"]["input"]["color_order"] == "GRAY"
    assert [s["path"].endswith("broken.jpg") for s in report["skipped"]] == [True]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{tmp}/missing"], "data folder not found"),
        (["train", "{one}"], "at least two classes"),
        (["train", "{empty}"], "no images"),
        (["train", "{few}"], "too few to split"),
        (["train", "{few}", "--arch", "cnn", "--fine-tune-epochs", "2"], "efficientnet-lite2 only"),
        (["train", "{few}", "--img-size", "8"], "--img-size"),
        (["evaluate", "{tmp}/nope.keras", "{few}"], "model file not found"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    one = tmp_path / "one"
    save(gradient_rgb(), (one / "a").mkdir(parents=True) or one / "a" / "x.png")
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    save(gradient_rgb(), empty / "a" / "x.png")
    few = tmp_path / "few"
    for name in ("a", "b"):
        (few / name).mkdir(parents=True)
        save(gradient_rgb(), few / name / "x.png")
    filled = [a.format(tmp=tmp_path, one=one, empty=empty, few=few) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_arch_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path), "--arch", "resnet50"])
    assert result.exit_code == 2
    assert "cnn" in result.stderr and "vgg16" in result.stderr


def test_interrupt_keeps_best_model_and_writes_report(tmp_path, synth_dir, monkeypatch):
    import keras

    from edgecnn.training.config import TrainConfig
    from edgecnn.training.train import train

    original = keras.callbacks.EarlyStopping.on_epoch_end

    def interrupt_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(keras.callbacks.EarlyStopping, "on_epoch_end", interrupt_after_second_epoch)
    result = train(
        TrainConfig(
            data_dir=synth_dir,
            out_dir=tmp_path / "r",
            arch="cnn",
            img_size=32,
            epochs=5,
            base_filters=4,
            verbose=0,
        )
    )
    assert result.interrupted
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["interrupted"] is True and report["epochs_run"] >= 1
    assert (tmp_path / "r" / "model.keras").is_file()


def test_vgg16_without_weights_trains_and_fine_tunes(tmp_path):
    data = tmp_path / "d"
    write_dataset(data, classes=("circle", "square"), per_class=6, size=32, seed=3)
    out = tmp_path / "vgg"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--arch",
            "vgg16",
            "--weights",
            "none",
            "--img-size",
            "32",
            "--epochs",
            "1",
            "--fine-tune-epochs",
            "1",
            "--batch-size",
            "4",
            "--val-split",
            "0.34",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["arch"] == "vgg16" and report["epochs_run"] == 2
    assert "caffe" in report["contract"]["normalization"]


def test_vgg16_preprocessing_layer_matches_keras_preprocess_input():
    import keras

    from edgecnn.training.models import build_vgg16

    spec = InputSpec.square(32)
    built = build_vgg16(spec, 2, weights="none")
    pre = keras.Model(built.model.input, built.model.get_layer("vgg16_preprocess").output)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    assert np.abs(np.asarray(pre(x)) - expected).max() < 1e-4


@pytest.mark.parametrize("suffix", [".weights.h5", "_notop.h5"])
def test_vgg16_loads_a_local_weights_file(tmp_path, suffix):
    import h5py
    import keras

    from edgecnn.training.models import build_vgg16

    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(7)
    source.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in source.get_weights()])
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".weights.h5":
        source.save_weights(str(path))
    else:  # the legacy layout of Keras' downloadable vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, source)
    built = build_vgg16(InputSpec.square(32), 2, weights=str(path))
    loaded = built.base.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, source.get_weights()))


def test_vgg16_offline_imagenet_names_the_cache_file_and_weights_option(monkeypatch):
    import keras

    from edgecnn.training.models import VGG16_WEIGHTS_FILE, build_vgg16

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.applications, "VGG16", no_network)
    with pytest.raises(DependencyError) as info:
        build_vgg16(InputSpec.square(32), 2, weights="imagenet")
    message = str(info.value)
    assert VGG16_WEIGHTS_FILE in message and "--weights PATH" in message and "URL fetch failure" in message


def test_missing_weights_file_is_a_clear_error(tmp_path):
    result = runner.invoke(
        app, ["train", str(tmp_path), "--arch", "vgg16", "--weights", str(tmp_path / "no.h5")]
    )
    assert result.exit_code == 2
