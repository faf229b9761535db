"""GPU session options, IO binding, CUDA-graph padding, TensorRT caches and honest messages, on the CPU.

A simulated ONNX Runtime (the real one underneath, running on the CPU) stands in for a GPU: it records the
providers and options a session is opened with, refuses option names that ONNX Runtime's providers do not
document (as the real ones do), reports the requested provider as running when told to, and keeps "cuda"
buffers as device values that NumPy cannot see into, so the GPU code paths run here end to end and a missing
host-device copy fails.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from typer.testing import CliRunner

import edgecnn.runtime.predictor as rt
from edgecnn.cli import app
from edgecnn.core.errors import ConfigError, ProviderError
from edgecnn.runtime.cuda import (
    KEPT_SHAPES,
    BoundRunner,
    CudaOptions,
    padded_chunks,
    parse_nvidia_smi,
    read_proc_driver,
)
from edgecnn.runtime.predictor import Predictor
from edgecnn.runtime.tensorrt import (
    CACHE_SUFFIX,
    TensorrtOptions,
    cache_fields,
    cache_key,
    engine_cache,
    missing_tensorrt_hint,
    pip_requirement,
    preload_tensorrt_libraries,
)

FP32, INT8 = REPO / "models" / "shapes-cnn.onnx", REPO / "models" / "shapes-cnn.int8.onnx"
runner = CliRunner()


def batch(n: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 3)).astype(np.float32)


def plain(model: Path, x: np.ndarray) -> np.ndarray:
    with Predictor(model, provider="cpu") as p:
        return p.predict_batch(x)


# Option names from ONNX Runtime's provider documentation (CUDA-ExecutionProvider, TensorRT-ExecutionProvider),
# written out here: a name the code misspells is refused, as a real session refuses it.
CUDA_OPTION_NAMES = {
    "device_id",
    "cudnn_conv_algo_search",
    "cudnn_conv_use_max_workspace",
    "cudnn_conv1d_pad_to_nc1d",
    "prefer_nhwc",
    "enable_cuda_graph",
    "use_tf32",
    "gpu_mem_limit",
    "arena_extend_strategy",
    "do_copy_in_default_stream",
    "tunable_op_enable",
    "tunable_op_tuning_enable",
    "enable_skip_layer_norm_strict_mode",
    "use_ep_level_unified_stream",
}
TENSORRT_OPTION_NAMES = {
    "device_id",
    "trt_fp16_enable",
    "trt_int8_enable",
    "trt_builder_optimization_level",
    "trt_profile_min_shapes",
    "trt_profile_opt_shapes",
    "trt_profile_max_shapes",
    "trt_engine_cache_enable",
    "trt_engine_cache_path",
    "trt_timing_cache_enable",
    "trt_timing_cache_path",
    "trt_max_workspace_size",
    "trt_max_partition_iterations",
    "trt_min_subgraph_size",
    "trt_dla_enable",
    "trt_cuda_graph_enable",
}
DOCUMENTED = {"CUDAExecutionProvider": CUDA_OPTION_NAMES, "TensorrtExecutionProvider": TENSORRT_OPTION_NAMES}


class DeviceValue:
    """A buffer in simulated GPU memory: filled and read only through copies, never as a NumPy view."""

    def __init__(self, real) -> None:
        self.real = real

    def update_inplace(self, data) -> None:  # a host-to-device copy, from an array or a host OrtValue
        self.real.update_inplace(data if isinstance(data, np.ndarray) else data.numpy())

    def numpy(self):  # the device-to-host copy: a fresh array each time
        return self.real.numpy().copy()

    def __getattr__(self, name):
        return getattr(self.real, name)


class Simulated:
    """A stand-in for the onnxruntime module: real CPU sessions that claim to run on ``starts``."""

    def __init__(self, starts: tuple[str, ...] = (), log: bytes = b"", pinned: bool = False) -> None:
        self.real = rt.import_onnxruntime()
        self.starts, self.log, self.pinned = starts, log, pinned
        self.calls: list[list] = []
        self.devices: list[str] = []  # where buffers were asked for: cuda, cpu, or pinned host memory
        outer = self

        class OrtValue:
            @staticmethod
            def ortvalue_from_shape_and_type(shape, dtype, device="cpu", device_id=0, memory_info=None):
                outer.devices.append(memory_info or device)
                value = outer.real.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cpu", 0)
                return DeviceValue(value) if device == "cuda" else value

        class PinnedDevice:  # the CUDA provider's device entry, with host-accessible (pinned) memory
            ep_name = "CUDAExecutionProvider"

            def memory_info(self, kind):
                return "pinned" if kind == outer.real.OrtDeviceMemoryType.HOST_ACCESSIBLE else None

        self.OrtValue = OrtValue
        self.get_ep_devices = lambda: [PinnedDevice()] if pinned else []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_available_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def InferenceSession(self, path, sess_options=None, providers=None):
        self.calls.append(list(providers))
        for entry in providers:
            if isinstance(entry, tuple) and entry[0] in DOCUMENTED:
                unknown = set(entry[1]) - DOCUMENTED[entry[0]]
                if unknown:
                    raise self.real.capi.onnxruntime_pybind11_state.InvalidArgument(
                        f"[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : unknown {entry[0]} option {sorted(unknown)}"
                    )
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        session = self.real.InferenceSession(
            path, sess_options=sess_options, providers=["CPUExecutionProvider"]
        )
        if names[0] in self.starts:
            session.get_providers = lambda: names  # a CPU session that says it runs on them
        elif names[0] != "CPUExecutionProvider":
            os.write(2, self.log)
        return session


@pytest.fixture()
def simulate(monkeypatch):
    def install(*starts: str, log: bytes = b"", pinned: bool = False) -> Simulated:
        fake = Simulated(starts, log, pinned)
        monkeypatch.setattr(rt, "import_onnxruntime", lambda: fake)
        monkeypatch.setattr(rt, "has_nvidia_device", lambda: True)
        return fake

    return install


def test_cuda_options_defaults_and_checks():
    assert CudaOptions().provider_options() == {
        "device_id": "0",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "prefer_nhwc": "0",
        "enable_cuda_graph": "0",
        "use_tf32": "1",
    }
    assert CudaOptions(prefer_nhwc=True, device_id=1).provider_options()["prefer_nhwc"] == "1"
    with pytest.raises(ConfigError, match="choose from EXHAUSTIVE, HEURISTIC, DEFAULT"):
        CudaOptions(cudnn_conv_algo_search="FAST")
    with pytest.raises(ConfigError, match="device_id"):
        CudaOptions(device_id=-1)


def test_io_binding_equals_plain_run_on_the_cpu():
    x = batch()
    with Predictor(FP32, provider="cpu", io_binding=True) as bound:
        assert bound.runner is not None and "IO binding on cpu" in bound.info.describe()
        first = bound.predict_batch(x)
        kept = first.copy()
        bound.predict_batch(batch(seed=1))  # the same buffers again: earlier results must not change
        assert np.array_equal(first, kept)
        assert np.array_equal(first, plain(FP32, x))
        assert bound.predict_batch(x[:0]).shape == (0, 3)
    with Predictor(FP32, provider="cpu") as unbound:
        assert unbound.runner is None and "IO binding" not in unbound.info.describe()


def test_bound_runner_staging_and_kept_buffers():
    ort = rt.import_onnxruntime()
    x = batch(6)
    with Predictor(FP32, provider="cpu") as p:
        staged = []

        def host(shape):
            staged.append(shape)
            return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, "cpu", 0)

        bound = BoundRunner(ort, p.session, "image", "probabilities", 3, staging=host, staging_name="test")
        assert np.array_equal(bound.run(x), p.predict_batch(x))
        for n in range(1, KEPT_SHAPES + 3):
            bound.run(x[:n])
        assert len(bound._buffers) == KEPT_SHAPES and staged[0] == (6, 48, 48, 3)


def test_padded_batches_equal_the_plain_path():
    x = batch(11)
    assert [(c.shape[0], real) for c, real in padded_chunks(x, 4)] == [(4, 4), (4, 4), (4, 3)]
    with Predictor(FP32, provider="cpu", io_binding=True, pad_batch=4) as padded:
        assert padded.fixed_batch == 4
        assert np.allclose(padded.predict_batch(x), plain(FP32, x), atol=1e-6)
    with pytest.raises(ConfigError, match="pad_batch must be at least 1"):
        Predictor(FP32, provider="cpu", pad_batch=0)


def test_cuda_session_gets_its_options_and_io_binding(simulate):
    fake = simulate("CUDAExecutionProvider", pinned=True)
    x = batch()
    with Predictor(FP32, provider="cuda", cuda=CudaOptions(prefer_nhwc=True)) as p:
        assert p.provider == "cuda"
        first = fake.calls[-1][0]
        # The names and values ONNX Runtime's CUDA provider documents (CUDA-ExecutionProvider.html), written out
        # here rather than asked of the function that makes them.
        assert first == (
            "CUDAExecutionProvider",
            {
                "device_id": "0",
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "cudnn_conv_use_max_workspace": "1",
                "prefer_nhwc": "1",
                "enable_cuda_graph": "0",
                "use_tf32": "1",
            },
        )
        assert p.info.options["cuda"]["prefer_nhwc"] is True
        assert "IO binding on cuda, host staging pinned host buffer" in p.info.describe()
        assert np.allclose(p.predict_batch(x), plain(FP32, x), atol=1e-6)
        assert fake.devices == ["cuda", "cuda", "pinned"]  # input and output on the GPU, staging pinned


def test_cuda_graphs_need_a_fixed_batch(simulate):
    fake = simulate("CUDAExecutionProvider")
    graph = CudaOptions(enable_cuda_graph=True)
    with pytest.raises(ConfigError, match="pass pad_batch=N"):
        Predictor(FP32, provider="cuda", cuda=graph)
    with pytest.raises(ConfigError, match="leave io_binding on"):
        Predictor(FP32, provider="cuda", cuda=graph, pad_batch=4, io_binding=False)
    x = batch(10)
    with Predictor(FP32, provider="cuda", cuda=graph, pad_batch=4) as p:
        assert p.info.options["cuda"]["enable_cuda_graph"] is True and p.fixed_batch == 4
        assert "host staging pageable" in p.info.describe()
        assert np.allclose(p.predict_batch(x), plain(FP32, x), atol=1e-6)
        assert fake.devices == ["cuda", "cuda"]  # one fixed shape: one input and one output buffer


def test_int8_on_cuda_says_what_it_costs(simulate, log_lines):
    simulate("CUDAExecutionProvider")
    with Predictor(INT8, provider="auto") as p:
        assert p.provider == "cuda"
        assert "int8 QDQ model on the CUDA provider" in p.info.advice
        assert str(FP32) in p.info.advice and "--provider tensorrt" in p.info.advice
    assert any("usually slower there" in line for line in log_lines)
    with Predictor(FP32, provider="auto") as p:
        assert p.info.advice is None


def test_classify_prints_the_int8_advice(simulate, tmp_path):
    simulate("CUDAExecutionProvider")
    image = REPO / "samples" / "circle-1.jpg"
    result = runner.invoke(app, ["classify", str(image), "--model", str(INT8), "--provider", "auto"])
    assert result.exit_code == 0, result.output
    assert "int8 QDQ model on the CUDA provider" in result.stderr and "provider cuda" in result.stderr


def test_tensorrt_that_cannot_start_names_the_pip_package(simulate, tmp_path):
    model = Path(shutil.copy(INT8, tmp_path / "m.int8.onnx"))
    log = b"Failed to load library libonnxruntime_providers_tensorrt.so with error: libnvinfer.so.10: cannot open shared object file\n"
    simulate(log=log)
    with pytest.raises(ProviderError) as info:
        Predictor(model, provider="tensorrt")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("tensorrt cannot start: missing libraries libnvinfer.so.10")
    assert 'pip install "tensorrt-cu' in message and "--fallback" in message
    assert not (tmp_path / ("m.int8.onnx" + CACHE_SUFFIX)).exists()  # nothing left beside the model
    fallback = Predictor(model, provider="tensorrt", fallback=True)
    assert fallback.provider == "cpu" and "libnvinfer.so.10" in fallback.info.note


def test_tensorrt_session_options_cache_and_build_time(simulate, tmp_path, log_lines, monkeypatch):
    import edgecnn.runtime.cuda as cuda

    monkeypatch.setattr(cuda, "_run_nvidia_smi", lambda device_id: "NVIDIA Test GPU, 555.42, 9.0, 81559\n")
    model = Path(shutil.copy(INT8, tmp_path / "m.int8.onnx"))
    fake = simulate("TensorrtExecutionProvider")
    with Predictor(model, provider="tensorrt") as p:
        name, options = fake.calls[-1][0]
        assert name == "TensorrtExecutionProvider" and fake.calls[-1][1][0] == "CUDAExecutionProvider"
        assert options["trt_int8_enable"] == options["trt_fp16_enable"] == "1"
        assert options["trt_profile_opt_shapes"] == "image:32x48x48x3"
        assert options["trt_profile_min_shapes"] == "image:1x48x48x3"
        cache = Path(options["trt_engine_cache_path"])
        assert cache.parent == tmp_path / ("m.int8.onnx" + CACHE_SUFFIX)
        assert "-nvidia-test-gpu-" in cache.name and options["trt_timing_cache_path"] == str(cache)
        key = json.loads((cache / "key.json").read_text())
        assert key["gpu"] == "NVIDIA Test GPU" and key["int8"] is True and key["onnxruntime"]
        stated = p.info.options["tensorrt"]
        assert stated["cache_hit"] is False and stated["first_run_s"] > 0
        assert np.allclose(p.predict_batch(batch(3)), plain(INT8, batch(3)), atol=1e-6)
    assert any("TensorRT engine for m.int8.onnx built in" in line for line in log_lines)
    (cache / "TensorrtExecutionProvider_TRTKernel_test.engine").write_bytes(b"engine")
    with Predictor(model, provider="tensorrt") as again:
        assert again.info.options["tensorrt"]["cache_hit"] is True
        assert Path(again.info.options["tensorrt"]["cache"]) == cache
    assert any("loaded from its cache" in line for line in log_lines)
    fp32 = Path(shutil.copy(FP32, tmp_path / "m.onnx"))
    with Predictor(fp32, provider="tensorrt", tensorrt=TensorrtOptions(cache=False)):
        options = fake.calls[-1][0][1]
        assert options["trt_fp16_enable"] == "0" and "trt_engine_cache_path" not in options


FIELDS = cache_fields("a" * 64, "NVIDIA H100 80GB HBM3", "1.31.1", "10.13.3", TensorrtOptions())


def test_cache_key_is_stable():
    again = cache_fields("a" * 64, "NVIDIA H100 80GB HBM3", "1.31.1", "10.13.3", TensorrtOptions())
    assert cache_key(FIELDS) == cache_key(again) == cache_key(dict(reversed(list(FIELDS.items()))))
    assert cache_key(FIELDS).startswith("aaaaaaaaaaaa-nvidia-h100-80gb-hbm3-")


@pytest.mark.parametrize(
    "change",
    [
        {"model_sha256": "b" * 64},
        {"gpu": "NVIDIA L4"},
        {"onnxruntime": "1.32.0"},
        {"tensorrt": "10.14.1"},
        {"fp16": True},
        {"int8": True},
        {"batch_profile": [1, 8, 64]},
        {"builder_optimization_level": 5},
    ],
)
def test_cache_key_changes_with_each_input(change):
    assert cache_key({**FIELDS, **change}) != cache_key(FIELDS)


def test_engine_cache_falls_back_to_the_user_cache(tmp_path):
    model = tmp_path / "m.onnx"
    beside = engine_cache(model, FIELDS, user_cache=tmp_path / "user")
    assert beside.path.parent == tmp_path / ("m.onnx" + CACHE_SUFFIX) and not beside.has_engine()
    blocked = tmp_path / "b.onnx"
    blocked.with_name("b.onnx" + CACHE_SUFFIX).write_text("a file where the folder would go")
    elsewhere = engine_cache(blocked, FIELDS, user_cache=tmp_path / "user")
    assert elsewhere.path == tmp_path / "user" / cache_key(FIELDS)
    (tmp_path / "nowhere").write_text("")
    with pytest.raises(ConfigError, match="no writable folder for the TensorRT engine cache"):
        engine_cache(blocked, FIELDS, user_cache=tmp_path / "nowhere")


def test_tensorrt_options():
    assert TensorrtOptions.for_precision("fp32") == TensorrtOptions()
    assert TensorrtOptions.for_precision("int8").fp16 and TensorrtOptions.for_precision("int8").int8
    assert TensorrtOptions.for_precision("fp16").fp16 and not TensorrtOptions.for_precision("fp16").int8
    with pytest.raises(ConfigError, match="min_batch <= opt_batch <= max_batch"):
        TensorrtOptions(opt_batch=512)
    with pytest.raises(ConfigError, match="0 to 5"):
        TensorrtOptions(builder_optimization_level=7)


def test_missing_tensorrt_libraries_name_the_wheel(tmp_path, monkeypatch):
    library = tmp_path / "libonnxruntime_providers_tensorrt.so"
    library.write_bytes(b"\x7fELF...libnvinfer.so.10\x00libcudart.so.12\x00libnvonnxparser.so.10\x00")

    def absent(name, **kw):
        raise OSError(f"{name}: cannot open shared object file")

    hint = missing_tensorrt_hint(library, "12.8", loader=absent)
    assert hint == (
        "TensorRT 10 libraries not found (libnvinfer.so.10, libnvonnxparser.so.10): "
        'pip install "tensorrt-cu12-libs>=10,<11"'
    )
    assert missing_tensorrt_hint(library, "12.8", loader=lambda name, **kw: None) is None
    assert pip_requirement("libnvinfer.so.11", None) == "tensorrt-libs>=11,<12"
    wheel = tmp_path / "site" / "tensorrt_libs"
    wheel.mkdir(parents=True)
    (wheel / "libnvinfer.so.10").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    loaded = []
    paths = preload_tensorrt_libraries(
        ["libnvinfer.so.10", "libnvonnxparser.so.10"], loader=lambda p, mode: loaded.append((p, mode))
    )
    assert paths == [str(wheel / "libnvinfer.so.10")] and loaded[0][0] == paths[0]
    # found in the wheel now: only the parser is missing
    assert missing_tensorrt_hint(library, "13.0", loader=absent) == (
        'TensorRT 10 libraries not found (libnvonnxparser.so.10): pip install "tensorrt-cu13-libs>=10,<11"'
    )


def test_gpu_facts_from_nvidia_smi_and_the_driver(tmp_path):
    assert parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15, 9.0, 81559\n") == {
        "name": "NVIDIA H100 80GB HBM3",
        "driver": "550.54.15",
        "compute_capability": "9.0",
        "memory_mib": 81559,
    }
    assert parse_nvidia_smi("\n") is None
    assert read_proc_driver(tmp_path / "none")["name"] == "no-gpu"
    root = tmp_path / "nvidia"
    (root / "gpus" / "0000:01:00.0").mkdir(parents=True)
    (root / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5\n")
    (root / "gpus" / "0000:01:00.0" / "information").write_text("Model: \t NVIDIA L4\nIRQ: 42\n")
    facts = read_proc_driver(root)
    assert (facts["name"], facts["driver"]) == ("NVIDIA L4", "550.54.15")


def test_benchmark_names_precision_and_the_gpu(simulate, monkeypatch, tmp_path):
    from edgecnn.tools import bench
    from edgecnn.tools.bench import format_table, run_benchmark

    simulate("CUDAExecutionProvider")
    monkeypatch.setattr(bench, "_unavailable_providers", lambda providers: {})
    monkeypatch.setattr(
        bench, "gpu_info", lambda ort: {"name": "Simulated GPU", "driver": "1.2", "tensorrt": None}
    )
    report = run_benchmark([FP32, INT8], ["cpu", "cuda"], [2], runs=1, warmup=0, peak_seconds=0)
    assert [m["precision"] for m in report["models"]] == ["fp32", "int8"]
    assert report["machine"]["gpu"]["name"] == "Simulated GPU"
    assert all(r["status"] == "ok" for r in report["rows"])
    cuda_rows = [r for r in report["rows"] if r["provider"] == "cuda"]
    assert all("IO binding on cuda" in r["session"] for r in cuda_rows)
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(format_table(report))
    text = console.export_text()
    assert "GPU Simulated GPU, driver 1.2" in text and "int8" in text and "precision" in text
    cpu_only = run_benchmark([FP32], ["cpu"], [1], runs=1, warmup=0, peak_seconds=0)
    assert cpu_only["machine"]["gpu"] is None


def test_doctor_names_the_tensorrt_wheel():
    from edgecnn.tools.doctor_gpu import tensorrt_libraries

    libraries = [
        {"name": "libcublas.so.13", "found": True},
        {"name": "libnvinfer.so.10", "found": False},
        {"name": "libnvonnxparser.so.10", "found": True},
    ]
    block = tensorrt_libraries(libraries, "13.0")
    assert block["needed"] == ["libnvinfer.so.10", "libnvonnxparser.so.10"]
    assert block["missing"] == ["libnvinfer.so.10"]
    assert block["pip"] == 'pip install "tensorrt-cu13-libs>=10,<11"'
    assert tensorrt_libraries(libraries[:1], "13.0")["pip"] is None


def test_the_simulation_refuses_an_option_name_the_provider_does_not_document(simulate, monkeypatch):
    """The option checks above can fail: a misspelt name never reaches a running CUDA session."""
    import edgecnn.runtime.cuda as cuda

    simulate("CUDAExecutionProvider")
    real = cuda.CudaOptions.provider_options
    monkeypatch.setattr(cuda.CudaOptions, "provider_options", lambda self: {**real(self), "use_tf_32": "1"})
    try:
        with Predictor(FP32, provider="cuda") as p:
            started = p.provider
    except Exception as exc:  # the session was refused; how the predictor words it is tested elsewhere
        started = f"refused: {exc}"
    assert started != "cuda", started


def test_simulated_device_buffers_are_read_through_a_copy(simulate):
    """Results read back from a "cuda" buffer are copies: a later batch never changes an earlier result."""
    simulate("CUDAExecutionProvider")
    with Predictor(FP32, provider="cuda") as p:
        assert p.runner is not None and p.runner.device == "cuda"
        first = p.predict_batch(batch())
        kept = first.copy()
        p.predict_batch(batch(seed=1))
        assert np.array_equal(first, kept) and np.allclose(first, plain(FP32, batch()), atol=1e-6)
