"""Loading, residency and shutdown of a real runner process: run_once, readiness, eviction,
preloading from traffic history, overload and SIGTERM draining."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

MB = 1024 * 1024


def _sample(name: str, cls: str, **entry: Any) -> dict[str, Any]:
    """A model entry of a custom pipeline of sample_pipelines."""
    return {"name": name, "ref": None, "pipeline": f"sample_pipelines:{cls}", **entry}


def _blob(name: str, mb: int = 48) -> dict[str, Any]:
    return _sample(name, "Blob", options={"mb": mb})


def _states(runner: Any) -> dict[str, str]:
    return {n: m["state"] for n, m in runner.health()["models"].items()}


def test_run_once_runs_once_under_50_concurrent_first_requests(
    start_runner: Any, tmp_path: Path
) -> None:
    counter = tmp_path / "calls.txt"
    loads = tmp_path / "loads.txt"
    runner = start_runner(
        {
            "models": [
                _sample(
                    "once",
                    "OnceCounter",
                    options={"counter_file": str(counter), "loads_file": str(loads)},
                    batching={"concurrency": 8, "max_batch_size": 4},
                )
            ]
        }
    )
    barrier = threading.Barrier(50)

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=runner.url, timeout=60) as client:
            barrier.wait()
            return client.post("/v1/models/once/predict", json={})

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(call, range(50)))
    assert [r.status_code for r in responses] == [200] * 50, responses[0].text
    assert {r.json()["run_once_calls"] for r in responses} == {1}
    assert counter.read_text() == "called\n"
    runner.client.post("/v1/models/once/predict", json={})
    assert counter.read_text() == "called\n"
    # The 50 concurrent first requests triggered one load.
    assert loads.read_text() == "loaded\n"
    assert (
        'modelyard_model_load_seconds_count{model="once"} 1' in runner.client.get("/metrics").text
    )


def test_ready_is_503_while_a_slow_on_startup_runs(start_runner: Any) -> None:
    runner = start_runner(
        {
            "models": [
                _sample("slow", "SlowStartup", options={"seconds": 3}, preload=True),
                _sample("echo", "Echo"),
            ]
        }
    )
    # The server listens at once: live, not ready, and says what is loading.
    assert runner.client.get("/v2/health/live").status_code == 200
    ready = runner.client.get("/v2/health/ready")
    assert ready.status_code == 503 and ready.json() == {"ready": False}
    health = runner.health()
    assert health["status"] == "starting"
    assert health["models"]["slow"]["state"] == "LOADING"
    assert runner.client.get("/v2/models/slow/ready").status_code == 503
    # Another model is served meanwhile.
    echo = runner.client.post("/v1/models/echo/predict", json={"text": "hi"})
    assert echo.status_code == 200
    runner.wait_ready(timeout=30)
    assert runner.health()["models"]["slow"]["state"] == "READY"
    answer = runner.client.post("/v1/models/slow/predict", json={}).json()
    assert answer == {"started": True}


def test_lru_eviction_within_a_budget_that_fits_two_of_three(start_runner: Any) -> None:
    runner = start_runner(
        {
            "server": {"memory_budget": 130 * MB},
            "models": [_blob("a"), _blob("b"), _blob("c")],
        }
    )
    call = runner.client.post
    assert call("/v1/models/a/predict", json={}).status_code == 200
    assert call("/v1/models/b/predict", json={}).status_code == 200
    assert _states(runner) == {"a": "READY", "b": "READY", "c": "IDLE"}
    sizes = {n: m["resident_bytes"] for n, m in runner.health()["models"].items()}
    assert sizes["a"] >= 48 * MB and sizes["b"] >= 48 * MB
    call("/v1/models/a/predict", json={})  # a is now more recent than b
    assert call("/v1/models/c/predict", json={}).json()["model"] == "c"
    assert _states(runner) == {"a": "READY", "b": "IDLE", "c": "READY"}
    assert call("/v1/models/b/predict", json={}).status_code == 200
    assert _states(runner) == {"a": "IDLE", "b": "READY", "c": "READY"}
    health = runner.health()
    assert health["resident_bytes"] <= health["memory_budget"]
    metrics = runner.client.get("/metrics").text
    assert 'modelyard_model_evictions_total{model="a"} 1' in metrics
    assert 'modelyard_model_evictions_total{model="b"} 1' in metrics


def test_pinned_model_is_never_evicted(start_runner: Any) -> None:
    runner = start_runner(
        {
            "server": {"memory_budget": 130 * MB},
            "models": [{**_blob("a"), "pinned": True}, _blob("b"), _blob("c")],
        }
    )
    for name in ("a", "b", "c", "b"):
        assert runner.client.post(f"/v1/models/{name}/predict", json={}).status_code == 200
    assert _states(runner) == {"a": "READY", "b": "READY", "c": "IDLE"}


def test_restart_preloads_the_hottest_models_of_recorded_traffic(
    start_runner: Any, tmp_path: Path
) -> None:
    state = tmp_path / "shared-state"
    config = {
        "server": {"memory_budget": 130 * MB, "history_window": "1h"},
        "models": [_blob("a"), _blob("b"), _blob("c")],
    }
    first = start_runner(config, state)
    for name, times in (("a", 1), ("b", 4), ("c", 3)):
        for _ in range(times):
            assert first.client.post(f"/v1/models/{name}/predict", json={}).status_code == 200
    assert first.stop() in (0, -signal.SIGTERM)  # flushes the history

    second = start_runner(config, state)
    second.wait_ready()
    # b and c were hottest and both fit; a did not fit next to them and stays unloaded.
    assert _states(second) == {"a": "IDLE", "b": "READY", "c": "READY"}


def test_full_queue_answers_429_with_retry_after(start_runner: Any) -> None:
    runner = start_runner(
        {
            "models": [
                _sample(
                    "slow",
                    "Slow",
                    options={"seconds": 0.5},
                    preload=True,
                    batching={"max_queue": 2, "sequential": True},
                )
            ]
        }
    )
    runner.wait_ready()

    def call(i: int) -> httpx.Response:
        with httpx.Client(base_url=runner.url, timeout=60) as client:
            return client.post("/v1/models/slow/predict", json={"text": str(i)})

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(call, range(10)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes and set(codes) == {200, 429}, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "queue is full" in refused.json()["error"]
    ok = [r for r in responses if r.status_code == 200]
    assert all(r.json()["text"] == str(i) for i, r in enumerate(responses) if r in ok)
    assert 'modelyard_overloaded_total{model="slow"}' in runner.client.get("/metrics").text


def test_request_timeout_is_504(start_runner: Any) -> None:
    runner = start_runner(
        {"models": [_sample("slow", "Slow", options={"seconds": 2}, batching={"timeout_s": 0.5})]}
    )
    r = runner.client.post("/v1/models/slow/predict", json={"text": "x"})
    assert r.status_code == 504 and "did not answer" in r.json()["error"]


def test_sigterm_drains_in_flight_requests(start_runner: Any, tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    runner = start_runner(
        {
            "models": [
                _sample(
                    "slow",
                    "Slow",
                    options={"seconds": 1.5, "closed_file": str(closed)},
                    preload=True,
                    batching={"concurrency": 2},
                )
            ]
        }
    )
    runner.wait_ready()

    def call(i: int) -> httpx.Response:
        with httpx.Client(base_url=runner.url, timeout=60) as client:
            return client.post("/v1/models/slow/predict", json={"text": f"in flight {i}"})

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(call, i) for i in range(2)]
        time.sleep(0.5)  # both requests are being served
        runner.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json()["text"] for r in responses] == ["in flight 0", "in flight 1"]
    assert runner.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in runner.log()
    assert closed.read_text() == "closed"  # the model's close() ran, after the drain


def test_a_slow_model_does_not_hold_up_another(start_runner: Any) -> None:
    runner = start_runner(
        {
            "models": [
                _sample("slow", "Slow", options={"seconds": 3}, preload=True),
                _sample("echo", "Echo", preload=True),
            ]
        }
    )
    runner.wait_ready()
    finished: list[str] = []

    def call(name: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=runner.url, timeout=60) as client:
            assert client.post(f"/v1/models/{name}/predict", json=body).status_code == 200
        finished.append(name)

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(call, "slow", {"text": "x"})
        time.sleep(0.3)  # the slow request is running
        pool.submit(call, "echo", {"text": "y"}).result()
        assert finished == ["echo"]  # answered while the slow model is still busy
        slow.result()
    assert finished == ["echo", "slow"]
