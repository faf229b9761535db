"""Safety: no code from model files, no pickle, models that contradict themselves are refused, --sort-into
stays inside its folder, and nothing on the inference path opens a network connection unless asked to."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxmodels import mean_colour_model, solid
from PIL import Image
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.core.contract import METADATA_KEY, InputSpec, ModelContract
from edgecnn.core.errors import ContractError, ModelFileError
from edgecnn.core.onnxfile import set_contract
from edgecnn.runtime.predictor import Predictor

runner = CliRunner()
PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"
COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


# --- no code from files -------------------------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


#: The one module that reads pickles: PyTorch weights files, through an Unpickler whose find_class allows three
#: globals (tests/test_pretrained.py shows a file naming os.system refused with nothing run).
RESTRICTED_READER = PACKAGE / "training" / "torchfile.py"
UNRESTRICTED_PICKLE = {"pickle.load", "pickle.loads", "pickle.Unpickler.load"}


def test_the_only_unpickler_is_restricted():
    tree = ast.parse(RESTRICTED_READER.read_text(encoding="utf-8"))
    unpicklers = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "pickle.Unpickler" for b in node.bases)
    ]
    assert [c.name for c in unpicklers] == ["_Unpickler"]
    methods = {f.name for f in unpicklers[0].body if isinstance(f, ast.FunctionDef)}
    assert {"find_class", "persistent_load"} <= methods
    # Every Unpickler made in the module is the restricted one.
    made = [
        ast.unparse(n.func)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("Unpickler")
    ]
    assert made and set(made) == {"_Unpickler"}


def test_no_pickle_or_eval_anywhere_in_the_package():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offences += [
                f"{path.name}:{node.lineno} imports {n}"
                for n in names
                if n.split(".")[0] in UNSAFE_MODULES and not (path == RESTRICTED_READER and n == "pickle")
            ]
            if isinstance(node, ast.Attribute) and ast.unparse(node) in UNRESTRICTED_PICKLE:
                offences.append(f"{path.name}:{node.lineno} uses {ast.unparse(node)}")
            if isinstance(node, ast.Call):
                func = node.func
                name = (
                    func.id
                    if isinstance(func, ast.Name)
                    else func.attr
                    if isinstance(func, ast.Attribute)
                    else ""
                )
                if name in ("eval", "exec", "__import__"):
                    offences.append(f"{path.name}:{node.lineno} calls {name}")
                for kw in node.keywords:
                    if kw.arg in ("allow_pickle", "safe_mode") and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is (kw.arg == "safe_mode")
                    ):
                        offences.append(f"{path.name}:{node.lineno} passes {kw.arg}={ast.unparse(kw.value)}")
    assert not offences, offences


def test_keras_model_with_a_lambda_layer_is_refused(tmp_path):
    from edgecnn.training.keras_io import load_keras_model
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(outputs)
    outputs = keras.layers.Dense(2, activation="softmax")(outputs)
    path = tmp_path / "model.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelFileError, match="cannot load Keras model.*`Lambda` layer.*arbitrary code"):
        load_keras_model(path)
    contract = ModelContract(labels=("a", "b"), input=InputSpec.square(8))
    (tmp_path / "report.json").write_text(json.dumps({"contract": contract.to_dict()}))
    data = tmp_path / "data"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        Image.fromarray(solid((10, 200, 10), 8)).save(data / label / "x.png")
    result = runner.invoke(app, ["evaluate", str(path), str(data)])
    assert result.exit_code == 2, result.output
    assert "cannot load Keras model" in result.stderr and "Traceback" not in result.output


MARKER_VARIABLE = "EDGECNN_TEST_LAMBDA_MARKER"


def test_foreign_h5_with_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path, monkeypatch, photos_rgb):
    from edgecnn.training.keras_io import load_keras_model
    from edgecnn.training.models import import_keras

    keras, _ = import_keras()
    marker = tmp_path / "lambda-ran"
    monkeypatch.setenv(MARKER_VARIABLE, str(marker))
    inputs = keras.Input((8, 8, 3))
    # Self-contained (no globals, closure or defaults): the .h5 holds its bytecode, which leaves a file behind
    # whenever it runs.
    outputs = keras.layers.Lambda(
        lambda x: (
            __import__("pathlib").Path(__import__("os").environ["EDGECNN_TEST_LAMBDA_MARKER"]).touch(),
            x,
        )[1]
    )(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(outputs)
    outputs = keras.layers.Dense(3, activation="softmax")(outputs)
    source = tmp_path / "keras_model.h5"
    keras.Model(inputs, outputs).save(source)
    assert marker.exists()  # building the model ran the Lambda: the marker works
    marker.unlink()
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")

    with pytest.raises(
        ModelFileError, match=r"cannot load Keras model.*`Lambda` layer.*safe mode only"
    ) as info:
        load_keras_model(source)
    assert "safe_mode=False" not in str(info.value)  # no advice to switch the check off
    export = ["export", str(source), "--labels", str(tmp_path / "labels.txt"), "--preset", "keras-tf"]
    commands = {
        "export": [*export, "--eval", str(photos_rgb), "-o", str(tmp_path / "out.onnx")],
        "export --int8": [*export, "--eval", str(photos_rgb), "--int8", "--calib", str(photos_rgb)],
        "adopt": ["adopt", str(source), "--labels", str(tmp_path / "labels.txt"), "--scale", "0-1"],
        "evaluate": ["evaluate", str(source), str(photos_rgb)],
    }
    for name, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, name
        assert not marker.exists(), f"{name} ran the Lambda's code"
    assert "`Lambda` layer" in runner.invoke(app, commands["export"]).stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras_model.h5", "labels.txt"]  # nothing written

    # Control: without safe mode the same file does run its code, so the checks above can fail.
    keras.saving.load_model(str(source), compile=False, safe_mode=False)
    assert marker.exists()


@pytest.fixture()
def photos_rgb(tmp_path_factory):
    """Two solid-colour PNGs per class (red, green, blue), 8 px."""
    root = tmp_path_factory.mktemp("photos_rgb")
    for label, colour in (("red", (230, 20, 20)), ("green", (20, 230, 20)), ("blue", (20, 20, 230))):
        (root / label).mkdir()
        for i in range(2):
            Image.fromarray(solid(colour, 8)).save(root / label / f"{i}.png")
    return root


# --- models that contradict themselves ---------------------------------------------------------------------


def with_contract(tmp_path: Path, name: str, **changes) -> Path:
    """The mean-colour model (16x16x3 -> 3 labels) with its contract changed; written without checks."""
    path = mean_colour_model(tmp_path / f"{name}.onnx")
    model = onnx.load(str(path))
    base = ModelContract(labels=("red", "green", "blue"), input=InputSpec.square(16), arch="test")
    set_contract(model, base.with_updates(**changes))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ("red", "green", "blue", "white")}, "lists 4 labels, the graph outputs 3"),
        ({"labels": ("red", "green")}, "lists 2 labels, the graph outputs 3"),
        ({"input": InputSpec(height=16, width=20)}, "input width 20, the graph takes 16"),
        ({"input": InputSpec.square(16, channels=1)}, "input channels 1, the graph takes 3"),
        ({"input": InputSpec(height=16, width=16, name="pixels")}, "names input 'pixels'"),
        ({"output_name": "scores"}, "names output 'scores'"),
    ],
)
def test_contract_that_disagrees_with_its_graph_is_refused(tmp_path, changes, message):
    path = with_contract(tmp_path, "bad", **changes)
    with pytest.raises(ContractError, match=message):
        Predictor(path, provider="cpu")
    image = tmp_path / "x.png"
    Image.fromarray(solid(COLOURS["red"])).save(image)
    result = runner.invoke(app, ["classify", str(image), "--model", str(path)])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_label_that_is_not_unicode_text_is_refused(tmp_path):
    """A lone surrogate in a label would break every result file and folder name later: refused at once."""
    path = mean_colour_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    text = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    text.value = text.value.replace('"red"', '"\\ud800"')
    onnx.save(model, str(path))
    with pytest.raises(ContractError, match="not valid Unicode"):
        Predictor(path, provider="cpu")


# --- --sort-into never escapes ------------------------------------------------------------------------------

HOSTILE_LABELS = [
    ("../../escape", "/abs/path", ".."),
    (".", "a/../../b", "C:\\Windows\\x"),
    (".hidden", "~", "sub/dir"),
    ("$HOME", "x" * 200, "..\\..\\up"),
]


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("labels", HOSTILE_LABELS, ids=range(len(HOSTILE_LABELS)))
def test_sort_into_stays_inside_its_folder_whatever_the_labels(tmp_path, labels):
    work = tmp_path / "work"
    photos = work / "deep" / "photos"
    photos.mkdir(parents=True)
    for name, colour in COLOURS.items():
        Image.fromarray(solid(colour)).save(photos / f"{name}.png")
    model = mean_colour_model(tmp_path / "hostile.onnx", labels=labels)
    target = work / "deep" / "sorted"
    before = tree(tmp_path)
    result = runner.invoke(
        app, ["classify", str(photos), "--model", str(model), "--sort-into", str(target), "-q", "--json"]
    )
    assert result.exit_code == 0, result.output
    new = tree(tmp_path) - before
    outside = [p for p in new if not p.resolve().is_relative_to(target.resolve())]
    assert not outside, outside
    placed = [p for p in new if p.is_file()]
    assert len(placed) == 3 and all(p.parent.parent == target for p in placed)
    assert all(not p.parent.name.startswith(".") and p.parent.name not in ("", ".", "..") for p in placed)


# --- no network unless a stream was asked for ---------------------------------------------------------------


@pytest.fixture()
def no_network(monkeypatch):
    """Every attempt to reach the network (DNS included) fails and is recorded; local sockets still work."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(what):
        attempts.append(str(what))
        raise OSError(101, f"network access blocked by the test: {what}")

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        refuse(address)

    def connect_ex(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect_ex(self, address)
        refuse(address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(address))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: refuse(host))
    monkeypatch.setattr(socket, "gethostbyname", lambda host: refuse(host))
    return attempts


def test_inference_commands_work_without_network(no_network, tmp_path):
    from edgecnn.training.synthetic import write_video

    model = mean_colour_model(tmp_path / "m.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in COLOURS.items():
        Image.fromarray(solid(colour)).save(photos / f"{name}.png")
    video = tmp_path / "clip.mp4"
    write_video(video, seconds_per_class=0.5, fps=10, width=160, height=120)
    commands = [
        ["classify", str(photos), "--model", str(model), "-o", str(tmp_path / "r.csv")],
        ["webcam", "--model", str(model), "--source", str(video), "--no-display", "--max-frames", "10"],
        ["info", str(model)],
    ]
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)
    assert no_network == []


def test_the_network_guard_works_a_stream_url_is_refused(no_network, tmp_path):
    model = mean_colour_model(tmp_path / "m.onnx")
    result = runner.invoke(app, ["webcam", "--model", str(model), "--source", "rtsp://192.0.2.1/stream"])
    assert result.exit_code == 2 and "cannot reach" in result.stderr, result.output
    assert no_network, "a stream URL should have tried to connect"


def test_predictor_output_is_finite_for_extreme_inputs(tmp_path):
    predictor = Predictor(mean_colour_model(tmp_path / "m.onnx"), provider="cpu")
    batch = np.stack([np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0)]).astype(np.float32)
    probs = predictor.predict_batch(batch)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
