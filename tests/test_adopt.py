"""``edgecnn adopt``: a foreign ONNX classifier gets a contract once, then every command works with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from foreignmodels import (
    COLOURS,
    colour_folder,
    colour_model_nchw,
    graph_model,
    imagenet_input,
    softmax,
)
from onnx import TensorProto, helper, numpy_helper
from onnx import load as onnx_load
from onnx import save as onnx_save
from typer.testing import CliRunner

import edgecnn
from edgecnn.cli import app
from edgecnn.conversion.labels import read_labels
from edgecnn.conversion.preprocess import PRESETS, AdoptOptions, Preprocessing
from edgecnn.core.errors import ConfigError, ModelFileError
from edgecnn.core.imaging import load_image
from edgecnn.core.onnxfile import load_onnx, op_counts, opset_of, read_contract

runner = CliRunner()
LABELS = "red\ngreen\nblue\n"


@pytest.fixture()
def torch_model(tmp_path: Path) -> Path:
    (tmp_path / "labels.txt").write_text(LABELS)
    return colour_model_nchw(tmp_path / "resnet.onnx")


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    return colour_folder(tmp_path / "photos")


def original_probabilities(model: Path, pixels: np.ndarray) -> np.ndarray:
    """The foreign model as its own pipeline runs it, one image at a time (its batch is fixed at 1)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = [session.run(None, {"input": imagenet_input(pixels[i : i + 1])})[0] for i in range(len(pixels))]
    return softmax(np.concatenate(logits).astype(np.float64))


def adopt_cli(model: Path, *args: str) -> object:
    return runner.invoke(app, ["adopt", str(model), "--labels", str(model.parent / "labels.txt"), *args])


def test_adopted_nchw_logits_model_equals_the_original_after_the_stated_transforms(torch_model, photos):
    result = adopt_cli(torch_model, "--preset", "torchvision", "--check", str(photos), "--json")
    assert result.exit_code == 0, result.output
    adopted = torch_model.with_name("resnet.edgecnn.onnx")
    summary = json.loads(result.stdout)
    assert summary["check"]["images"] == 12 and summary["check"]["max_abs_diff"] <= 1e-5
    contract = read_contract(load_onnx(adopted))
    assert contract.labels == ("red", "green", "blue")
    assert (contract.input.fit, contract.input.crop_fraction, contract.input.resize) == (
        "crop",
        0.875,
        "pil-bilinear",
    )
    assert contract.source["adopted"]["layout"] == "NCHW"
    assert contract.source["adopted"]["output_kind"] == "logits"  # read from the rows: no final Softmax
    assert "softmax appended" in contract.normalization
    # The same images through the contract's resize: the adopted file on raw pixels, the original on the
    # torchvision transform written out by hand.
    files = sorted(photos.rglob("*.*"))
    pixels = np.stack([load_image(p, contract.input) for p in files]).astype(np.float32)
    model = edgecnn.load(adopted)
    got = np.array([list(p.probabilities.values()) for p in model.predict(files)])
    assert np.abs(got - original_probabilities(torch_model, pixels)).max() <= 1e-5
    assert [p.label for p in model.predict(files)] == [p.parent.name for p in files]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_graph_does_what_its_numpy_transform_does(tmp_path, preset):
    """The prepended nodes and Preprocessing.apply are the same arithmetic, for every recipe and layout."""
    from edgecnn.conversion.adopt import adopt_onnx

    # logits = the per-channel means of what the model receives, so any preprocessing difference shows.
    model = graph_model(
        tmp_path / "m.onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    options = AdoptOptions(labels=["a", "b", "c"], preset=preset)
    pre, resize = options.resolve()
    adopt_onnx(model, options.labels, pre, resize, output=tmp_path / "a.onnx")
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    expected = softmax(pre.with_layout("NHWC").apply(pixels).mean(axis=(1, 2)).astype(np.float64))
    got = edgecnn.load(tmp_path / "a.onnx").predictor.predict_batch(pixels)
    assert np.abs(got - expected).max() <= 1e-5
    assert read_contract(load_onnx(tmp_path / "a.onnx")).source["adopted"]["layout"] == "NHWC"


def test_after_adoption_every_command_works(torch_model, photos, tmp_path):
    assert adopt_cli(torch_model, "--preset", "torchvision").exit_code == 0
    adopted = str(torch_model.with_name("resnet.edgecnn.onnx"))
    info = runner.invoke(app, ["info", adopted])
    assert info.exit_code == 0 and "adopted" in info.stdout and "red, green, blue" in info.stdout
    assert "resize pil-bilinear (crop 0.875)" in info.stdout
    results = tmp_path / "results.csv"
    classify = runner.invoke(
        app, ["classify", str(photos), "--recursive", "--model", adopted, "--output", str(results)]
    )
    assert classify.exit_code == 0, classify.output
    rows = results.read_text().splitlines()[1:]
    assert len(rows) == 12 and all(Path(r.split(",")[0]).parent.name == r.split(",")[2] for r in rows)
    evaluate = runner.invoke(app, ["evaluate", adopted, str(photos), "--json"])
    assert evaluate.exit_code == 0, evaluate.output
    assert json.loads(evaluate.stdout)["accuracy"] == 1.0
    bench = runner.invoke(app, ["benchmark", adopted, "--batch-sizes", "1", "--runs", "2", "--warmup", "1"])
    assert bench.exit_code == 0, bench.output
    # int8 from an ONNX file that has no Keras source: calibrated on images, gated on a labelled folder.
    int8 = runner.invoke(
        app, ["export", adopted, "--int8", "--calib", str(photos), "--eval", str(photos), "--json"]
    )
    assert int8.exit_code == 0, int8.output
    figures = json.loads(int8.stdout)["int8"]
    assert figures["int8_accuracy"] >= figures["fp32_accuracy"] - 0.01
    quantised = load_onnx(torch_model.with_name("resnet.edgecnn.int8.onnx"))
    assert op_counts(quantised)["QuantizeLinear"] > 0
    q_contract = read_contract(quantised)
    assert q_contract.input.fit == "crop" and q_contract.source["adopted"]["scale"] == "0-1"
    assert q_contract.quantization["calibration_source"] == str(photos)
    fp16 = runner.invoke(app, ["export", adopted, "--fp16", "--eval", str(photos)])
    assert fp16.exit_code == 0, fp16.output
    assert read_contract(load_onnx(torch_model.with_name("resnet.edgecnn.fp16.onnx"))).precision == "fp16"


def test_webcam_runs_an_adopted_model_on_a_video(torch_model, tmp_path):
    import cv2

    assert (
        adopt_cli(torch_model, "--preset", "torchvision", "--fit", "letterbox", "--pad-value", "0").exit_code
        == 0
    )
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), (40, 40, 210), np.uint8))  # BGR: red
    writer.release()
    lines = tmp_path / "frames.jsonl"
    model = str(torch_model.with_name("resnet.edgecnn.onnx"))
    result = runner.invoke(
        app, ["webcam", "--source", str(video), "--model", model, "--no-display", "--jsonl", str(lines)]
    )
    assert result.exit_code == 0, result.output
    frames = [json.loads(line) for line in lines.read_text().splitlines()]
    assert frames and all(f["label"] == "red" for f in frames)


def test_a_reshape_that_spells_out_the_fixed_batch_is_freed(tmp_path, photos):
    """torch's exporter writes Reshape(x, [1, -1]) for a flatten at a fixed batch of 1."""
    (tmp_path / "labels.txt").write_text(LABELS)
    model = colour_model_nchw(tmp_path / "fixed.onnx", reshape_to_batch_one=True)
    result = adopt_cli(model, "--preset", "torchvision", "--check", str(photos), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "1 Reshape(s) that spelled out the fixed batch now take any batch" in summary["notes"]
    assert summary["check"]["max_abs_diff"] <= 1e-5  # on a batch of 12 and on one image


def test_a_graph_that_needs_its_fixed_batch_is_refused_with_the_reason(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    model = graph_model(
        tmp_path / "fixed.onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [
            helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Concat", ["flat", "extra"], ["y"], axis=1),  # a (1, 2) constant: batch 1 only
        ],
        [numpy_helper.from_array(np.zeros((1, 2), np.float32), "extra")],
    )
    result = adopt_cli(model, "--scale", "0-1")
    assert result.exit_code == 2
    assert (
        "does not run on a batch of images (Non-zero status code returned while running Concat"
        in result.output
    )
    assert "dynamic_axes" in result.output and "/onnxruntime_src" not in result.output
    assert not (tmp_path / "fixed.edgecnn.onnx").exists()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda p: graph_model(
                p,
                [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("a", "b")],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                [helper.make_node("Add", ["a", "b"], ["y"])],
            ),
            "has 2 inputs ('a', 'b'); edgecnn adopts models with one image input",
        ),
        (
            lambda p: graph_model(
                p,
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8, 8])],
                [helper.make_node("Relu", ["x"], ["y"])],
            ),
            "no batch dimension",
        ),
        (
            lambda p: graph_model(
                p,
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])],
                [helper.make_node("Relu", ["x"], ["y"])],
            ),
            "not a class vector",
        ),
    ],
    ids=["two-inputs", "no-batch", "segmentation-output"],
)
def test_what_cannot_be_adopted_is_refused_with_the_reason(tmp_path, build, message):
    (tmp_path / "labels.txt").write_text(LABELS)
    model = build(tmp_path / "m.onnx")
    result = adopt_cli(model, "--scale", "0-1")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_labels_whose_count_differs_from_the_output_are_refused(torch_model):
    (torch_model.parent / "labels.txt").write_text("cat\ndog\n")
    result = adopt_cli(torch_model, "--preset", "torchvision")
    assert (
        result.exit_code == 2
        and "the labels name 2 classes; the model's output 'logits' has 3" in result.output
    )


def test_several_outputs_need_output_name(tmp_path):
    (tmp_path / "labels.txt").write_text(LABELS)
    model = colour_model_nchw(tmp_path / "two.onnx", extra_output=True)
    refused = adopt_cli(model, "--preset", "torchvision")
    assert refused.exit_code == 2 and "has 2 outputs ('logits', 'relu'); pass --output-name" in refused.output
    chosen = adopt_cli(model, "--preset", "torchvision", "--output-name", "logits")
    assert chosen.exit_code == 0, chosen.output
    adopted = load_onnx(tmp_path / "two.edgecnn.onnx")
    assert [o.name for o in adopted.graph.output] == ["probabilities"]
    assert "Relu" not in op_counts(adopted)  # what only the dropped output used is gone


def test_clear_errors_for_bad_options_and_files(torch_model, tmp_path):
    assert "say how the model expects its pixels" in adopt_cli(torch_model).output
    assert "--std values must be above 0" in adopt_cli(torch_model, "--scale", "0-1", "--std", "0,1,1").output
    assert "--size takes HxW" in adopt_cli(torch_model, "--scale", "0-1", "--size", "big").output
    size = adopt_cli(torch_model, "--scale", "0-1", "--size", "64x64")
    assert "--size 64x64 disagrees with the graph's input size 32x32" in size.output
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "labels.txt").write_text(LABELS)
    assert "is not a readable ONNX model" in adopt_cli(bad, "--scale", "0-1").output
    assert adopt_cli(torch_model, "--preset", "torchvision").exit_code == 0
    again = runner.invoke(
        app,
        [
            "adopt",
            str(torch_model.with_name("resnet.edgecnn.onnx")),
            "--labels",
            str(tmp_path / "labels.txt"),
            "--scale",
            "0-1",
            "-o",
            str(tmp_path / "twice.onnx"),
        ],
    )
    assert again.exit_code == 2 and "already carries an edgecnn contract" in again.output
    exists = adopt_cli(torch_model, "--preset", "torchvision")
    assert exists.exit_code == 2 and "exists; pass --force" in exists.output
    options_only = runner.invoke(app, ["export", str(torch_model), "--preset", "torchvision"])
    assert options_only.exit_code == 2 and "pass --labels FILE too" in options_only.output


def test_a_dynamic_input_size_needs_size(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    model = graph_model(
        tmp_path / "dyn.onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")],
    )
    refused = adopt_cli(model, "--scale", "0-1")
    assert refused.exit_code == 2 and "pass --size HxW" in refused.output
    assert adopt_cli(model, "--scale", "0-1", "--size", "24x40").exit_code == 0
    spec = read_contract(load_onnx(tmp_path / "dyn.edgecnn.onnx")).input
    assert (spec.height, spec.width) == (24, 40)


def test_a_model_that_outputs_probabilities_gets_no_second_softmax(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    model = graph_model(
        tmp_path / "p.onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 4, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])],
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("Softmax", ["m"], ["probabilities"], axis=-1),
        ],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    assert adopt_cli(model, "--scale", "0-1").exit_code == 0
    adopted = load_onnx(tmp_path / "p.edgecnn.onnx")
    assert op_counts(adopted)["Softmax"] == 1
    assert read_contract(adopted).source["adopted"]["output_kind"] == "probabilities"


def test_labels_files_in_the_forms_other_tools_write(tmp_path):
    forms = {
        "plain.txt": "cat\ndog\n\n",
        "teachable.txt": "0 Class 1\n1 Class 2\n",
        "list.json": '["cat", "dog"]',
        "object.json": '{"1": "dog", "0": "cat"}',
        "keras.json": '{"0": ["n02123045", "cat"], "1": ["n02084071", "dog"]}',
    }
    read = {name: read_labels(_write(tmp_path / name, text)) for name, text in forms.items()}
    assert read["teachable.txt"] == ("Class 1", "Class 2")
    assert {v for k, v in read.items() if k != "teachable.txt"} == {("cat", "dog")}
    assert read_labels(_write(tmp_path / "dup.txt", "crane\nbird\ncrane\n")) == ("crane", "bird", "crane (2)")
    for text, message in [
        ("cat\n\ndog\n", "line 2 is blank"),
        ("", "is empty"),
        ('{"0": "a", "2": "b"}', "without gaps"),
        ("[1, 2]", "label 0 is not a name"),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_labels(_write(tmp_path / "bad.txt", text))
    with pytest.raises(ConfigError, match="not found"):
        read_labels(tmp_path / "missing.txt")


def test_the_library_api_adopts_too(torch_model):
    result = edgecnn.adopt(
        torch_model, edgecnn.AdoptOptions(labels=torch_model.parent / "labels.txt", preset="torchvision")
    )
    assert result.check.passed and result.output.name == "resnet.edgecnn.onnx"
    assert (
        edgecnn.load(result.output).predict(np.full((50, 60, 3), COLOURS["blue"], np.uint8)).label == "blue"
    )
    with pytest.raises(ModelFileError):
        edgecnn.adopt(
            torch_model.with_name("none.onnx"), edgecnn.AdoptOptions(labels=["a", "b", "c"], scale="0-1")
        )


def test_preprocessing_refuses_values_it_cannot_use():
    with pytest.raises(ConfigError, match="--scale"):
        Preprocessing(scale="0-2")
    with pytest.raises(ConfigError, match="--mean takes 1 or 3"):
        Preprocessing(mean=(1.0, 2.0))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_adopt_and_int8_of_the_adopted_file_need_no_tensorflow(torch_model, photos):
    """An inference-only install (no train extra) adopts a model and derives its int8 file."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'tf2onnx'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "from edgecnn.cli import app\n"
        "app(sys.argv[1:])\n"
    )
    labels = str(torch_model.parent / "labels.txt")
    adopted = str(torch_model.with_name("resnet.edgecnn.onnx"))
    for args in (
        ["adopt", str(torch_model), "--labels", labels, "--preset", "torchvision"],
        ["export", adopted, "--int8", "--calib", str(photos), "--eval", str(photos)],
    ):
        run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert torch_model.with_name("resnet.edgecnn.int8.onnx").is_file()


def test_the_model_given_where_images_go_or_a_keras_file_given_to_adopt_is_pointed_elsewhere(
    torch_model, photos
):
    classify = runner.invoke(app, ["classify", str(torch_model), str(photos)])
    assert (
        classify.exit_code == 2
        and f"is a model, not an image: pass it as --model {torch_model}" in classify.output
    )
    keras_file = torch_model.with_name("notebook.keras")
    keras_file.write_bytes(b"PK")
    adopt = adopt_cli(keras_file, "--preset", "raw")
    assert adopt.exit_code == 2 and "is a Keras model: convert it with `edgecnn export" in adopt.output


def _pool_gemm(path, input_name="x", output_name="y", hidden="h", batch=1, opset=18, width=8, extra=()):
    """x (N, 3, 8, W) -> global average pool -> flatten -> Gemm -> logits (N, 3), names chosen by the test."""
    rng = np.random.default_rng(1)
    return graph_model(
        path,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 8, width])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3])],
        [
            helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], [hidden], axis=1),
            helper.make_node("Gemm", [hidden, "w", "b"], [output_name], transB=1),
            *extra,
        ],
        [
            numpy_helper.from_array((4 * np.eye(3) + rng.normal(0, 0.3, (3, 3))).astype(np.float32), "w"),
            numpy_helper.from_array(np.zeros(3, np.float32), "b"),
        ],
        opset=opset,
    )


@pytest.mark.parametrize(
    ("names", "what"),
    [
        ({"input_name": "probabilities"}, "an input called probabilities"),
        ({"output_name": "image"}, "an output called image"),
        ({"hidden": "image"}, "an inner tensor called image"),
    ],
)
def test_tensors_named_like_edgecnns_own_are_renamed(tmp_path, names, what):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    model = _pool_gemm(tmp_path / "m.onnx", **names)
    result = adopt_cli(model, "--scale", "0-1", "--json")
    assert result.exit_code == 0, (what, result.output)
    graph = load_onnx(tmp_path / "m.edgecnn.onnx").graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["probabilities"]


def test_a_weight_reshaped_to_batch_one_is_left_alone(tmp_path):
    """Only Reshapes of per-image tensors carry the batch; Reshape(bias, [1, -1]) broadcasts over any batch."""
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    extra = [
        helper.make_node("Reshape", ["bias", "to_row"], ["bias_row"]),
        helper.make_node("Add", ["y0", "bias_row"], ["y"]),
    ]
    model = _pool_gemm(tmp_path / "m.onnx", output_name="y0", extra=extra)
    proto = onnx_load(model)
    proto.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "bias"),
            numpy_helper.from_array(np.array([1, -1], np.int64), "to_row"),
        ]
    )
    proto.graph.output[0].name = "y"
    onnx_save(proto, model)
    result = adopt_cli(model, "--scale", "0-1", "--json")
    assert result.exit_code == 0, result.output
    assert not any("Reshape" in note for note in json.loads(result.stdout)["notes"])


def test_an_old_opset_is_raised_to_13_so_per_channel_int8_works(tmp_path, photos):
    (tmp_path / "labels.txt").write_text(LABELS)
    model = _pool_gemm(tmp_path / "old.onnx", opset=12)
    assert adopt_cli(model, "--preset", "torchvision").exit_code == 0
    adopted = tmp_path / "old.edgecnn.onnx"
    assert opset_of(load_onnx(adopted)) == 13
    int8 = runner.invoke(
        app, ["export", str(adopted), "--int8", "--calib", str(photos), "--eval", str(photos)]
    )
    assert int8.exit_code == 0, int8.output


def test_size_may_fill_in_only_the_open_side(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    model = _pool_gemm(tmp_path / "m.onnx", width="W")
    assert adopt_cli(model, "--scale", "0-1", "--size", "8x12").exit_code == 0
    spec = read_contract(load_onnx(tmp_path / "m.edgecnn.onnx")).input
    assert (spec.height, spec.width) == (8, 12)
    clash = adopt_cli(model, "--scale", "0-1", "--size", "9x12", "--force")
    assert clash.exit_code == 2 and "disagrees with the graph's input size 8xNone" in clash.output


def test_resize_options_without_their_fit_and_nan_are_refused(torch_model):
    lone = adopt_cli(torch_model, "--scale", "0-1", "--crop-fraction", "0.5")
    assert lone.exit_code == 2 and "--crop-fraction goes with --fit crop" in lone.output
    pad = adopt_cli(torch_model, "--scale", "0-1", "--pad-value", "3")
    assert pad.exit_code == 2 and "--pad-value goes with --fit letterbox" in pad.output
    nan = adopt_cli(torch_model, "--scale", "0-1", "--fit", "crop", "--crop-fraction", "nan")
    assert (
        nan.exit_code == 2
        and "crop_fraction must be a number" in nan.output
        and "Traceback" not in nan.output
    )
