"""The web bundle without a browser or a network: the page's imaging rules (preprocess.mjs, run by node)
against edgecnn's own (core/resizing.py), the contract the page reads from the model file against Python's,
and the bundler's plan: what it writes, what it refuses, and that a refusal leaves the disk as it was."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError, DependencyError, ModelFileError, OutputError
from edgecnn.core.onnxfile import load_onnx, read_contract, save_onnx, set_contract
from edgecnn.core.resizing import resize
from edgecnn.tools.deploy import web

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "models" / "shapes-cnn.onnx"
PREPROCESS = web.assets_dir() / "preprocess.mjs"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

RUNNER = """
import { readFileSync } from "node:fs";
const mod = await import(process.argv[1]);
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const raw = readFileSync(process.argv[3]);
const out = [];
let offset = 0;
for (const c of cases) {
  const n = c.w * c.h * c.cn;
  const image = mod.makeImage(c.w, c.h, c.cn, new Uint8Array(raw.buffer, raw.byteOffset + offset, n));
  offset += n;
  out.push(Buffer.from(mod.fitImage(image, mod.inputSpec({ input: c.input })).data).toString("base64"));
}
console.log(JSON.stringify(out));
"""

# (source width, height, channels) -> (input width, height, resize, fit): shrinking by whole and fractional
# factors, enlarging, one axis each way, the three fits, the three interpolations.
CASES = [
    ((160, 160, 3), (48, 48, "area", "stretch")),
    ((80, 80, 3), (40, 40, "area", "stretch")),
    ((96, 96, 3), (48, 48, "area", "stretch")),
    ((640, 480, 3), (48, 48, "area", "stretch")),
    ((30, 20, 3), (48, 48, "area", "stretch")),
    ((100, 30, 1), (48, 48, "area", "stretch")),
    ((640, 480, 3), (224, 224, "cubic", "crop")),
    ((100, 70, 3), (64, 64, "linear", "stretch")),
    ((100, 70, 3), (64, 64, "cubic", "stretch")),
    ((300, 200, 3), (64, 64, "linear", "letterbox")),
    ((30, 50, 3), (64, 64, "area", "letterbox")),
    ((50, 400, 3), (32, 48, "area", "crop")),
    ((161, 97, 3), (23, 31, "area", "stretch")),
    ((1000, 750, 3), (224, 224, "area", "stretch")),
    ((2500, 3, 3), (1700, 2, "area", "stretch")),  # wider than 1000: OpenCV drops slivers, both sides do not
]


def run_node(script: str, *args: str) -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_node
def test_page_resize_matches_opencv(tmp_path):
    rng = np.random.default_rng(0)
    images, cases, specs = [], [], []
    for (w, h, cn), (ow, oh, method, fit) in CASES:
        noise = rng.integers(0, 128, (h, w, cn), dtype=np.uint8)
        gradient = noise + np.linspace(0, 127, w, dtype=np.uint8)[None, :, None]  # edges and gradients
        flat = (noise // 64 * 85).astype(np.uint8)  # four levels: many area means end in exactly a half
        for image in (gradient, flat):
            block = {"height": oh, "width": ow, "channels": cn, "resize": method, "fit": fit}
            block["color_order"] = "RGB" if cn == 3 else "GRAY"
            images.append(image)
            cases.append({"w": w, "h": h, "cn": cn, "input": block})
            specs.append(InputSpec(**block))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "raw.bin").write_bytes(b"".join(i.tobytes() for i in images))
    out = json.loads(
        run_node(RUNNER, PREPROCESS.as_uri(), str(tmp_path / "cases.json"), str(tmp_path / "raw.bin"))
    )
    for case, image, spec, encoded in zip(cases, images, specs, out, strict=True):
        expected = resize(image, spec)
        page = np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(expected.shape)
        diff = np.abs(expected.astype(int) - page)
        if (
            spec.resize == "area"
            and spec.fit == "stretch"
            and case["w"] >= spec.width
            and case["h"] >= spec.height
        ):
            assert diff.max() == 0, case  # shrinking by area is exact on both sides
        else:
            # OpenCV's vector code rounds a few values differently; never by more than one level.
            assert diff.max() <= 1, case
            assert (diff > 0).mean() < (0.05 if spec.resize == "cubic" else 0.002), case


@needs_node
@pytest.mark.parametrize("name", ["shapes-cnn.onnx", "shapes-cnn.int8.onnx", "imagenet-lite0.int8.onnx"])
def test_page_reads_the_contract_from_the_file(name):
    script = (
        "import { readFileSync } from 'node:fs';"
        "const m = await import(process.argv[1]);"
        "const c = m.readContract(readFileSync(process.argv[2]));"
        "console.log(JSON.stringify({labels: c.labels, spec: m.inputSpec(c)}));"
    )
    got = json.loads(run_node(script, PREPROCESS.as_uri(), str(REPO / "models" / name)))
    contract = read_contract(load_onnx(REPO / "models" / name))
    assert got["labels"] == list(contract.labels)
    spec = got["spec"]
    assert (spec["height"], spec["width"], spec["channels"]) == contract.input.shape
    assert (spec["resize"], spec["fit"]) == (contract.input.resize, contract.input.fit)
    assert spec["cropFraction"] == contract.input.crop_fraction


@needs_node
def test_page_refuses_a_model_without_a_contract(tmp_path):
    model = load_onnx(SHAPES)
    del model.metadata_props[:]
    save_onnx(model, tmp_path / "bare.onnx")
    script = (
        "import { readFileSync } from 'node:fs';"
        "const m = await import(process.argv[1]);"
        "try { m.readContract(readFileSync(process.argv[2])); console.log('read'); }"
        "catch (e) { console.log(e.message); }"
    )
    assert "not an edgecnn model" in run_node(script, PREPROCESS.as_uri(), str(tmp_path / "bare.onnx"))


def fake_package(root: Path, version: str = web.ORT_WEB_VERSION) -> Path:
    """An unpacked onnxruntime-web package folder with stand-in files (the bundler copies, never runs them)."""
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": version}))
    for name in web.ORT_WEB_FILES:
        if name != "package.json":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(f"stand-in for {name}".encode())
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bundle_from_a_local_package(tmp_path):
    package = fake_package(tmp_path / "ort")
    bundle = web.build_web_bundle(SHAPES, tmp_path / "site", ort_web=package)
    expected = {*web.ASSETS, "model.onnx", "bundle.json"} | {f"ort/{Path(n).name}" for n in web.ORT_WEB_FILES}
    assert set(bundle.files) == expected == set(snapshot(tmp_path / "site"))
    assert (tmp_path / "site" / "model.onnx").read_bytes() == SHAPES.read_bytes()
    assert bundle.bytes == sum(len(v) for v in snapshot(tmp_path / "site").values())
    manifest = json.loads((tmp_path / "site" / "bundle.json").read_text())
    assert manifest["onnxruntime_web"] == web.ORT_WEB_VERSION and manifest["labels"] == 3
    assert bundle["path"] == tmp_path / "site"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    # --force replaces an earlier bundle with the new one, whole
    web.build_web_bundle(
        REPO / "models" / "shapes-cnn.int8.onnx", tmp_path / "site", force=True, ort_web=package
    )
    assert (tmp_path / "site" / "model.onnx").read_bytes() == (
        REPO / "models" / "shapes-cnn.int8.onnx"
    ).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refusals_leave_the_disk_as_it_was(tmp_path, monkeypatch):
    package = fake_package(tmp_path / "ort")
    web.build_web_bundle(SHAPES, tmp_path / "site", ort_web=package)
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match="exists; pass --force"):
        web.build_web_bundle(SHAPES, tmp_path / "site", ort_web=package)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"mine")
    with pytest.raises(OutputError, match="not a web bundle"):
        web.build_web_bundle(SHAPES, other, force=True, ort_web=package)
    with pytest.raises(DependencyError, match="needs onnxruntime-web"):
        web.build_web_bundle(SHAPES, tmp_path / "new", ort_web=fake_package(tmp_path / "old-ort", "1.17.0"))
    tarball = tmp_path / "ort.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(package, arcname="package")
    with pytest.raises(DependencyError, match="integrity differs"):
        web.build_web_bundle(SHAPES, tmp_path / "new", ort_web=tarball)
    monkeypatch.setenv(web.ORT_WEB_ENV, str(tarball))  # the variable is read the same way
    with pytest.raises(DependencyError, match="integrity differs"):
        web.build_web_bundle(SHAPES, tmp_path / "new")
    with pytest.raises(ModelFileError):
        web.build_web_bundle(tmp_path / "missing.onnx", tmp_path / "new", ort_web=package)
    after = snapshot(tmp_path)
    after.pop("old-ort/package.json"), after.pop("ort.tgz")
    assert {k: v for k, v in after.items() if not k.startswith("old-ort/")} == {
        **before,
        "photos/keep.jpg": b"mine",
    }
    assert not (tmp_path / "new").exists()


def test_a_resize_the_page_does_not_reproduce_is_refused(tmp_path):
    model = load_onnx(SHAPES)
    contract = read_contract(model)
    set_contract(
        model, dataclasses.replace(contract, input=dataclasses.replace(contract.input, resize="pil-bilinear"))
    )
    save_onnx(model, tmp_path / "pil.onnx")
    with pytest.raises(ConfigError, match="pil-bilinear"):
        web.build_web_bundle(tmp_path / "pil.onnx", tmp_path / "site", ort_web=fake_package(tmp_path / "ort"))
    assert not (tmp_path / "site").exists()


def test_the_registry_tarball_is_checked_before_it_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(web.ORT_WEB_ENV, raising=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(fake_package(tmp_path / "ort"), arcname="package")
    monkeypatch.setattr(web, "_download", lambda: buffer.getvalue())  # a tampered download
    with pytest.raises(DependencyError, match="integrity differs"):
        web.build_web_bundle(SHAPES, tmp_path / "site")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "site").exists()
