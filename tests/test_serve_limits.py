"""``edgecnn serve`` under load and at its edges: dynamic batching, backpressure, the API key, readiness, a
graceful stop under SIGTERM, and the command's option errors."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_serve import FP32, PHOTOS, ROOT, TIMEOUT, classify_ok, running
from typer.testing import CliRunner

from edgecnn.cli import app
from edgecnn.runtime.predictor import Predictor

IMAGE = PHOTOS[0].read_bytes()


def classify(server, timeout: float = TIMEOUT, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/v2/models/shapes/classify", data=IMAGE, timeout=timeout, **kwargs)


def metrics(server) -> str:
    return requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text


def batch_sizes(server) -> dict[str, float]:
    """The batch-size histogram of /metrics: its buckets by upper bound, its count and sum."""
    text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "edgecnn_batch_size")
    return {s.labels.get("le", s.name.rsplit("_", 1)[-1]): s.value for s in family.samples}


def test_concurrent_requests_run_together_up_to_max_batch():
    with running(max_batch=4, max_delay_ms=300) as server:
        with ThreadPoolExecutor(10) as pool:
            codes = [r.status_code for r in pool.map(lambda _: classify(server), range(10))]
        sizes = batch_sizes(server)
    assert codes == [200] * 10
    assert sizes["sum"] == 10  # the ten images, each run once (the warm-up batch is not a request)
    assert sizes["count"] < 10  # some runs held more than one request
    assert sizes["4.0"] == sizes["count"]  # no run held more than --max-batch


def test_a_full_queue_answers_503_with_retry_after_at_once_and_recovers(monkeypatch):
    with running(max_batch=1, max_delay_ms=0, queue_size=2) as server:
        predictor = server.registry.models["shapes"].model.predictor
        real = predictor.predict_batch

        def slow(batch):
            time.sleep(1.0)
            return real(batch)

        monkeypatch.setattr(predictor, "predict_batch", slow)
        answers: list[tuple[int, float, str | None]] = []

        def send(_):
            started = time.monotonic()
            r = classify(server)
            answers.append((r.status_code, time.monotonic() - started, r.headers.get("Retry-After")))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(8)))
        refused = [a for a in answers if a[0] == 503]
        served = [a for a in answers if a[0] == 200]
        assert len(answers) == 8 and len(refused) + len(served) == 8
        assert refused and served
        assert all(retry == "1" and seconds < 0.9 for _, seconds, retry in refused)  # before one model run
        monkeypatch.setattr(predictor, "predict_batch", real)
        classify_ok(server)
        text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
        assert f'edgecnn_errors_total{{kind="overloaded"}} {len(refused)}.0' in text
        assert 'edgecnn_queue_depth{model="shapes"} 0.0' in text


def stalled_upload(server, declared: int = 1_000_000) -> socket.socket:
    """A connection that declares a large body, sends a little of it and stops."""
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    head = f"POST /v2/models/shapes/classify HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
    conn.sendall(head.encode() + b"\0" * 1000)
    return conn


def test_uploads_in_progress_hold_queue_slots_so_memory_stays_bounded():
    """A request takes its slot before its body is read: stalled uploads fill the queue and the next request
    is refused at once, instead of every upload being buffered."""
    with running(queue_size=2) as server:
        stalled = [stalled_upload(server) for _ in range(2)]
        try:
            assert wait_for(
                lambda: 'edgecnn_queue_depth{model="shapes"} 2.0' in metrics(server), seconds=TIMEOUT
            )
            refused = classify(server)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        finally:
            for conn in stalled:
                conn.close()
        # the server learns of the closed uploads when it next reads them: their slots come back soon after
        assert wait_for(lambda: 'edgecnn_queue_depth{model="shapes"} 0.0' in metrics(server), seconds=TIMEOUT)
        classify_ok(server)


def test_a_stalled_upload_is_refused_after_the_body_timeout(monkeypatch):
    import edgecnn.serving.app as serving_app

    monkeypatch.setattr(serving_app, "BODY_TIMEOUT_S", 0.5)
    with running() as server:
        conn = stalled_upload(server)
        try:
            conn.settimeout(TIMEOUT)
            answer = conn.recv(4096).decode("latin-1")
        finally:
            conn.close()
        assert answer.startswith("HTTP/1.1 408") and "not received within" in answer
        classify_ok(server)


def test_the_api_key_guards_every_route_but_health():
    with running(api_key="s3cret-token") as server:
        routes = [
            ("GET", "/v2"),
            ("GET", "/v2/models/shapes"),
            ("GET", "/v2/models/shapes/ready"),
            ("POST", "/v2/models/shapes/infer"),
            ("POST", "/v2/models/shapes/classify"),
            ("GET", "/metrics"),
        ]
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
                r = requests.request(method, server.url + path, headers=headers, data=IMAGE, timeout=TIMEOUT)
                assert r.status_code == 401, (method, path, headers)
                assert "API key" in r.json()["error"] and r.headers["WWW-Authenticate"] == "Bearer"
        for path in ("/v2/health/live", "/v2/health/ready"):
            assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 200
        good = {"Authorization": "Bearer s3cret-token"}
        assert classify(server, headers=good).status_code == 200
        assert requests.get(f"{server.url}/metrics", headers=good, timeout=TIMEOUT).status_code == 200


def test_not_ready_until_every_model_has_run_its_warm_up(monkeypatch):
    release = threading.Event()
    real = Predictor.warm_up

    def gated(self, *args, **kwargs):
        assert release.wait(TIMEOUT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "warm_up", gated)
    with running(ready=False) as server:
        live = requests.get(f"{server.url}/v2/health/live", timeout=TIMEOUT)
        ready = requests.get(f"{server.url}/v2/health/ready", timeout=TIMEOUT)
        model = requests.get(f"{server.url}/v2/models/shapes/ready", timeout=TIMEOUT)
        early = classify(server)
        assert live.status_code == 200 and ready.status_code == 503 and model.status_code == 503
        assert early.status_code == 503 and "still loading" in early.json()["error"]
        release.set()
        assert server.registry.all_ready.wait(TIMEOUT)
        assert requests.get(f"{server.url}/v2/health/ready", timeout=TIMEOUT).status_code == 200
        classify_ok(server)


def test_listening_beyond_loopback_without_a_key_is_warned_about(caplog):
    caplog.set_level(logging.INFO, logger="edgecnn")
    with running(host="0.0.0.0"):
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"serving shapes=.* on http://0\.0\.0\.0:\d+ ", line) for line in lines)
    assert any("with no API key" in line for line in lines)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_under_load_finishes_in_flight_requests_and_exits_0(tmp_path, stop_signal):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "edgecnn", "serve", f"shapes={FP32}", "--port", "0", "--provider", "cpu"]
    command += ["--threads", "1", "--max-delay-ms", "20", "--queue-size", "8"]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stderr=sink, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "warmed up" not in log.read_text():
            time.sleep(0.1)
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())[1]
        stopped_at = [float("inf")]
        outcomes: list[str] = []

        def client():
            while True:  # one connection per request: after the stop, a new one is refused
                try:
                    r = requests.post(f"{url}/v2/models/shapes/classify", data=IMAGE, timeout=TIMEOUT)
                    outcomes.append(str(r.status_code))
                except requests.ConnectionError as exc:
                    # Refused: the listening socket is closed. A connection the kernel had queued but the
                    # server never took is reset as the socket closes: after the stop only, and the server's
                    # own count (below) shows that every request it took was answered.
                    refused = "Connection refused" in str(exc)
                    after = time.monotonic() > stopped_at[0]
                    outcomes.append("refused" if refused else "not taken" if after else f"lost: {exc}")
                    if refused:
                        return
                except requests.Timeout:
                    outcomes.append("hung")
                    return
                if len(outcomes) > 5000:  # bounded, whatever happens
                    outcomes.append("never refused")
                    return

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        stopped_at[0] = time.monotonic()
        process.send_signal(stop_signal)
        code = process.wait(TIMEOUT)
        for t in threads:
            t.join(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    assert code == 0, log.read_text()
    assert not any(t.is_alive() for t in threads)
    assert set(counts) <= {"200", "503", "refused", "not taken"}, counts  # nothing hung, nothing lost
    assert counts.get("200", 0) > 8 and counts["refused"] == 8  # each client saw the stop
    text = log.read_text()
    answered = dict(re.findall(r"(\d{3}): (\d+)", re.search(r"requests answered by status: (.*)", text)[1]))
    assert answered == {code: str(n) for code, n in counts.items() if code.isdigit()}  # every answer arrived
    assert "Traceback" not in text


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch", "0"], "max-batch must be 1-4096, got 0"),
        (["--queue-size", "0"], "queue-size must be at least 1"),
        (["--port", "70000"], "port must be 0-65535"),
        (["--provider", "cpu", "missing.onnx"], "model file not found: missing.onnx"),
        ([f"a={FP32}", f"a={FP32}"], "model name 'a' is given twice"),
        (["bad name=x.onnx"], "cannot be a URL path segment"),
        (["--api-key", " ", str(FP32)], "api-key is empty"),
    ],
)
def test_option_errors_are_one_line_and_exit_2(args, message):
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_busy_port_is_an_option_error(tmp_path):
    with running() as server:
        result = runner.invoke(app, ["serve", str(FP32), "--port", str(server.port), "--provider", "cpu"])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{server.port}" in result.output


def test_the_api_key_comes_from_the_environment(monkeypatch):
    import edgecnn.api.serving as serving_api

    seen = []
    monkeypatch.setenv("EDGECNN_API_KEY", "from-env")
    monkeypatch.setattr(
        "edgecnn.serving.server.Server.__init__", lambda self, config: seen.append(config) or None
    )
    monkeypatch.setattr("edgecnn.serving.server.Server.run", lambda self: None)
    serving_api.serve([Path(FP32)], port=0)
    serving_api.serve([Path(FP32)], port=0, api_key="given")
    assert [c.api_key for c in seen] == ["from-env", "given"]
