"""``serve --ray`` (serving.ray_serve): the application on Ray Serve, checked with Triton's own client, and a
replica killed under load while the other keeps serving.

Ray listens on the loopback interface only (a local Ray of two CPUs, as in tests/test_cluster.py). The Ray
tests need Ray Serve (``pip install "edgecnn[ray]"``) and are skipped with that hint without it; ``-m ray``
selects them. The throughput of two replicas against one is measured in benchmarks/serve_ray.py, not asserted.
"""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
from conftest import REPO

import edgecnn
from edgecnn.core.errors import ConfigError, DependencyError
from edgecnn.serving.config import ServeConfig, parse_model
from edgecnn.serving.errors import Overloaded
from edgecnn.serving.ray_serve import (
    APP_NAME,
    DEPLOYMENT,
    INSTALL_HINT,
    RayServeOptions,
    ReplicaRunner,
    import_serve,
    parse_autoscale,
)

pytestmark = pytest.mark.ray
MODEL = REPO / "models" / "shapes-cnn.int8.onnx"
NAME = "shapes"
try:
    from ray import serve
except ImportError:
    serve = None
needs_ray = pytest.mark.skipif(serve is None, reason=INSTALL_HINT)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def server():
    """Two replicas of the shapes model on a local Ray of two CPUs, Ray Serve's proxy on 127.0.0.1."""
    from edgecnn.serving.ray_serve import RayServer

    config = ServeConfig(models=(parse_model(f"{NAME}={MODEL}"),), port=0, max_batch=8, max_delay_ms=2)
    ray_server = RayServer(config, RayServeOptions(address="local", replicas=2, num_cpus=2))
    ray_server.start()
    try:
        yield ray_server
    finally:
        ray_server.stop()


@pytest.fixture(scope="module")
def model():
    with edgecnn.load(MODEL, provider="cpu") as loaded:
        yield loaded


def photos(model, count: int, seed: int = 3) -> np.ndarray:
    spec = model.contract.input
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, spec.height, spec.width, spec.channels)).astype(np.float32)


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@needs_ray
def test_triton_client_health_metadata_and_infer_equal_in_process_predict(server, model):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_model_metadata(NAME)
    spec = model.contract.input
    assert meta["inputs"][0]["name"] == spec.name
    assert meta["parameters"]["labels"] == list(model.labels)
    images = photos(model, 5)
    expected = model.predictor.predict_batch(images)
    for binary in (False, True):
        tensor = triton.InferInput(spec.name, list(images.shape), "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        asked = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer(NAME, [tensor], outputs=asked)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
    # Encoded images (BYTES), decoded on the replica with the contract's preprocessing.
    blobs = np.array([png(image) for image in images[:3]], dtype=object)
    tensor = triton.InferInput(spec.name, [3], "BYTES")
    tensor.set_data_from_numpy(blobs)
    result = client.infer(NAME, [tensor])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[:3], atol=1e-6)
    labels = [bytes(label).decode() for label in result.as_numpy("labels")[:, 0]]
    assert labels == [model.labels[i] for i in expected[:3].argmax(axis=1)]
    # The same errors as the in-process server: a JSON 4xx naming the fault, and the next request served.
    status, body = post(server.port, f"/v2/models/{NAME}/infer", b"{not json")
    assert status == 400 and b"not valid JSON" in body
    status, body = post(server.port, "/v2/models/nope/infer", b"{}")
    assert status == 404 and b"'nope' is not served here" in body
    assert post(server.port, f"/v2/models/{NAME}/classify", png(images[0]))[0] == 200
    status, body = get(server.port, "/metrics")
    assert status == 200 and b"edgecnn_batch_size_bucket" in body and b"edgecnn_requests_total" in body
    assert f'edgecnn_queue_depth{{model="{NAME}"}} 0.0'.encode() in body  # every request answered


def post(port: int, path: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def replica_actors() -> list[str]:
    import ray

    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in actor["name"] and f"{APP_NAME}#{DEPLOYMENT}" in actor["name"]
    )


def running_replicas() -> int:
    status = serve.status().applications[APP_NAME]
    deployment = status.deployments[DEPLOYMENT]
    return deployment.replica_states.get("RUNNING", 0) if status.status == "RUNNING" else 0


@needs_ray
def test_a_replica_killed_under_load_the_requests_after_it_are_served(server, model):
    import ray

    actors = replica_actors()
    assert len(actors) == 2
    body = png(photos(model, 1)[0])
    path = f"/v2/models/{NAME}/classify"
    done: list[tuple[float, float, int | str]] = []  # (sent, answered, status) of every request
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status: int | str = post(server.port, path, body, timeout=20)[0]
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
            done.append((sent, time.monotonic(), status))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(actors[0], namespace="serve"), no_restart=True)
        time.sleep(4)  # the load goes on while Ray Serve notices and starts a replacement
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    deadline = time.monotonic() + 90
    while running_replicas() < 2 or replica_actors() == actors:
        assert time.monotonic() < deadline, f"no replacement replica: {serve.status()}"
        time.sleep(0.5)
    before = Counter(status for _, answered, status in done if answered < killed_at)
    in_flight = Counter(status for sent, answered, status in done if sent < killed_at <= answered)
    after = Counter(status for sent, _, status in done if sent >= killed_at)
    recovered = Counter(post(server.port, path, body)[0] for _ in range(40))
    print(f"\nreplica killed under load: before {dict(before)}, in flight {dict(in_flight)}, "
          f"sent after {dict(after)}, once replaced {dict(recovered)}")  # fmt: skip
    assert before[200] > 0 and set(before) == {200}
    # Requests sent after the kill are served by the replica left; only those Ray Serve routed to the dead
    # replica before it noticed may fail, and none once the replacement runs.
    assert after[200] > 0.9 * sum(after.values()), dict(after)
    assert recovered == Counter({200: 40})
    assert actors[0] not in replica_actors()


def test_autoscale_and_replica_options_are_checked():
    assert parse_autoscale("1-4") == (1, 4) and parse_autoscale(" 2 - 2 ") == (2, 2)
    for bad in ("4", "0-2", "3-1", "a-b", "1-2-3"):
        with pytest.raises(ConfigError, match="autoscale"):
            parse_autoscale(bad)
    with pytest.raises(ConfigError, match="either replicas or autoscale"):
        RayServeOptions(replicas=2, autoscale=(1, 3))
    with pytest.raises(ConfigError, match="replicas must be at least 1, got 0"):
        RayServeOptions(replicas=0)
    assert RayServeOptions(autoscale=(1, 3)).scaling() == {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3}
    }
    assert RayServeOptions(replicas=2).scaling() == {"num_replicas": 2}
    assert RayServeOptions().scaling() == {"num_replicas": 1}


def test_a_replica_holds_at_most_queue_size_requests_then_answers_503():
    async def predict(job):
        return job[1]

    depths: list[int] = []
    runner = ReplicaRunner("m", predict, max_batch=4, queue_size=2, on_depth=depths.append)
    first, second = runner.admit(), runner.admit()
    with pytest.raises(Overloaded, match="at capacity \\(2 requests queued\\)"):
        runner.admit()
    first.release()
    first.release()  # a slot is released once
    with runner.admit():
        with pytest.raises(Overloaded):
            runner.admit()
    second.release()
    assert depths == [1, 2, 1, 2, 1, 0]  # the replica's edgecnn_queue_depth
    runner.close()
    with pytest.raises(Overloaded, match="stopping"):
        runner.admit()


def test_without_ray_serve_the_option_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(DependencyError, match=r'pip install "edgecnn\[ray\]"'):
        import_serve()


def test_serving_without_ray_never_imports_ray():
    code = (
        "import sys, edgecnn.serving.server, edgecnn.serving.app, edgecnn.api, edgecnn.cli\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_a_port_in_use_is_refused_before_ray_starts(monkeypatch):
    import socket

    from edgecnn.serving import ray_serve

    monkeypatch.setattr(ray_serve, "import_serve", lambda: object())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = ServeConfig(models=(parse_model(f"{NAME}={MODEL}"),), port=port)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            ray_serve.RayServer(config, RayServeOptions())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--replicas", "2"], "--replicas and --autoscale go with --ray"),
        (["--autoscale", "1-2"], "--replicas and --autoscale go with --ray"),
        (["--ray", "local", "--autoscale", "3-1"], "the minimum must be at least 1 and at most the maximum"),
        (["--ray", "local", "--autoscale", "two"], "autoscale must be MIN-MAX"),
        (["--ray", "local", "--replicas", "2", "--autoscale", "1-2"], "either replicas or autoscale"),
        (["--ray", "local", "--replicas", "0"], "replicas must be at least 1, got 0"),
    ],
)
def test_the_command_refuses_ray_options_that_cannot_work_before_anything_starts(args, message, monkeypatch):
    from typer.testing import CliRunner

    from edgecnn.cli import app
    from edgecnn.serving import ray_serve, server

    def started(*args, **kwargs):
        raise AssertionError("a server was created")

    monkeypatch.setattr(ray_serve.RayServer, "__init__", started)
    monkeypatch.setattr(server.Server, "__init__", started)
    result = CliRunner().invoke(app, ["serve", str(MODEL), "--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@needs_ray
def test_the_command_serves_on_ray_until_sigterm_then_exits_0(tmp_path):
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-c",
        "import sys; from edgecnn.cli import app; sys.exit(app())",
        "serve",
        f"{NAME}={MODEL}",
        "--ray",
        "local",
        "--port",
        str(port),
    ]
    log = (tmp_path / "serve.log").open("w")
    child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                if get(port, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert get(port, f"/v2/models/{NAME}")[0] == 200
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    assert "through Ray Serve (1 replica" in (tmp_path / "serve.log").read_text()
