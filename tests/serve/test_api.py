"""The HTTP API of one runner serving built-in and custom models, over a real port."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import REPO, RunnerProcess

SENTENCES = ["the cat is very good", "a dog", "hello world today the weather is bad"]


@pytest.fixture(scope="module")
def runner(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = {
        "models": [
            {"name": "cls", "ref": str(tiny["cls"]), "preload": True, "max_inputs": 8},
            {"name": "emb", "ref": str(tiny["emb"]), "pipeline": "feature-extraction"},
            {"name": "plain", "ref": str(tiny["plain"])},
            {"name": "echo", "ref": None, "pipeline": "sample_pipelines:Echo"},
            {"name": "broken", "ref": None, "pipeline": "sample_pipelines:Broken"},
            {"name": "missing", "ref": str(tiny["cls"].parent / "nope")},
        ],
        "server": {"max_body_bytes": 65536},
    }
    proc = RunnerProcess(config, tmp_path_factory.mktemp("runner"))
    proc.wait_ready()
    yield proc
    assert proc.stop() in (0, -signal.SIGTERM), proc.log()
    assert "Application shutdown complete" in proc.log()


def test_v2_server_endpoints(runner: Any) -> None:
    c = runner.client
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").status_code == 200
    assert c.get("/v2").json()["extensions"] == ["model_repository"]
    meta = c.get("/v2/models/cls").json()
    assert meta["name"] == "cls"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert c.get("/v2/models/cls/ready").status_code == 200


def test_v2_infer_classification(runner: Any, tiny: dict[str, Path]) -> None:
    body = {
        "id": "req-1",
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": SENTENCES}],
        "parameters": {"top_k": 2},
    }
    r = runner.client.post("/v2/models/cls/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "cls" and out["id"] == "req-1"
    labels, scores = out["outputs"]
    assert labels["name"] == "label" and labels["datatype"] == "BYTES"
    assert labels["shape"] == [3, 2] and scores["shape"] == [3, 2]
    assert set(labels["data"]) <= {"label0", "label1", "label2"}
    rows = np.array(scores["data"]).reshape(3, 2)
    assert (rows[:, 0] >= rows[:, 1]).all() and (rows.sum(axis=1) <= 1 + 1e-6).all()

    # Same scores as the torch model the bundle was exported from.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["cls_src"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny["cls_src"]).eval()
    with torch.no_grad():
        logits = model(**tok(SENTENCES, padding=True, return_tensors="pt")).logits
    probs = torch.softmax(logits, dim=-1).numpy()
    top = np.sort(probs, axis=1)[:, ::-1][:, :2]
    np.testing.assert_allclose(rows, top, atol=1e-5)
    assert labels["data"][0] == model.config.id2label[int(probs[0].argmax())]


def test_embeddings_match_torch_and_batching(runner: Any, tiny: dict[str, Path]) -> None:
    r = runner.client.post("/v1/embeddings", json={"model": "emb", "input": SENTENCES})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "emb"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    assert body["usage"]["prompt_tokens"] > len(SENTENCES)
    vectors = np.array([d["embedding"] for d in body["data"]])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["emb_src"])
    model = AutoModel.from_pretrained(tiny["emb_src"]).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, ref, atol=1e-5)

    # A short text alone (no padding) gives the same vector as inside a padded batch.
    alone = runner.client.post("/v1/embeddings", json={"model": "emb", "input": "a dog"}).json()
    np.testing.assert_allclose(alone["data"][0]["embedding"], vectors[1], atol=1e-5)

    # A batch of very different lengths runs as several onnxruntime runs (split_by_length):
    # each answer is still the one of its own text, in order.
    long = " ".join(["the weather is very good today"] * 12)
    mixed = [long, "a dog", SENTENCES[0], long + " again"]
    r = runner.client.post("/v1/embeddings", json={"model": "emb", "input": mixed})
    got = np.array([d["embedding"] for d in r.json()["data"]])
    for text, vector in zip(mixed, got, strict=True):
        one = runner.client.post("/v1/embeddings", json={"model": "emb", "input": text}).json()
        np.testing.assert_allclose(one["data"][0]["embedding"], vector, atol=1e-5)

    v2 = runner.client.post(
        "/v2/models/emb/infer",
        json={
            "inputs": [{"name": "text", "shape": [1, 3], "datatype": "BYTES", "data": [SENTENCES]}]
        },
    ).json()
    (emb,) = v2["outputs"]
    assert emb["name"] == "embedding" and emb["datatype"] == "FP32"
    assert emb["shape"] == [3, vectors.shape[1]]
    np.testing.assert_allclose(np.array(emb["data"]).reshape(3, -1), vectors, atol=1e-6)


def test_plain_directory_infers_task_and_labels(runner: Any) -> None:
    r = runner.client.post(
        "/v1/models/plain/predict",
        json={"inputs": ["le chat est bon", "el perro"], "parameters": {"top_k": 4}},
    )
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert len(outputs) == 2
    assert sorted(s["label"] for s in outputs[0]) == ["label0", "label1", "label2", "label3"]
    assert abs(sum(s["score"] for s in outputs[0]) - 1) < 1e-5


def test_custom_typed_pipeline(runner: Any) -> None:
    r = runner.client.post(
        "/v1/models/echo/predict", json={"text": "ab", "repeat": 2, "style": "upper"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "ABAB", "length": 4, "tags": ["echo"]}
    bad = runner.client.post("/v1/models/echo/predict", json={"text": 3})
    assert bad.status_code == 422 and "body.text" in bad.json()["error"]
    refused = runner.client.post("/v1/models/echo/predict", json={"text": "a", "repeat": 10**10})
    assert refused.status_code == 422 and "0..100" in refused.json()["error"]
    missing = runner.client.post("/v1/models/echo/predict", json={"repeat": 2})
    assert missing.status_code == 422 and "text" in missing.json()["error"]
    spec = runner.client.get("/openapi.json").json()
    op = spec["paths"]["/v1/models/echo/predict"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Question"
    }
    question = spec["components"]["schemas"]["Question"]
    assert question["required"] == ["text"]
    assert question["properties"]["style"] == {"enum": ["plain", "upper"]}
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]["properties"][
        "tags"
    ] == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/nope/predict", {"inputs": "x"}, 404, "unknown model"),
        ("/v2/models/nope/infer", {"inputs": []}, 404, "unknown model"),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "unknown model"),
        ("/v1/models/cls/predict", {"inputs": []}, 400, "empty"),
        ("/v1/models/cls/predict", {"inputs": [1, 2]}, 422, "strings"),
        ("/v1/models/cls/predict", {"inputs": ["x"] * 9}, 413, "limit is 8"),
        ("/v1/models/cls/predict", {"inputs": "x", "parameters": {"top_k": 0}}, 422, "top_k"),
        ("/v1/embeddings", {"model": "emb", "input": 5}, 422, "strings"),
        ("/v1/embeddings", {"model": "emb"}, 422, "input is missing"),
        ("/v1/embeddings", {"model": "cls", "input": "x"}, 400, "not a feature-extraction"),
        ("/v2/models/cls/infer", {"inputs": []}, 400, "empty"),
        (
            "/v2/models/cls/infer",
            {"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            422,
            "BYTES",
        ),
        (
            "/v2/models/cls/infer",
            {"inputs": [{"name": "t", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
            422,
            "shape",
        ),
        ("/v1/models/cls/predict", {"inputs": "x" * 70000}, 413, "limit"),
    ],
)
def test_bad_input(runner: Any, path: str, body: Any, status: int, words: str) -> None:
    r = runner.client.post(path, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_non_json_and_empty_body(runner: Any) -> None:
    r = runner.client.post("/v1/models/cls/predict", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = runner.client.post("/v1/models/cls/predict", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v1/embeddings", "/v2/models/emb/infer", "/v1/models/emb/predict"]
)
def test_inference_routes_edges(runner: Any, path: str) -> None:
    """The inference routes skip starlette's stack: check what it did for them still holds."""
    c = runner.client
    assert c.get(path).status_code == 405
    assert c.put(path, json={}).status_code == 405

    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies as bytes arrive
        for _ in range(20):
            yield b" " * 4096

    r = c.post(path, content=chunks())
    assert r.status_code == 413 and "over 65536 bytes" in r.json()["error"]
    # A declared size over the limit is refused before the body is read.
    with socket.create_connection(("127.0.0.1", runner.port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 70000\r\n\r\n".encode())
        answer = b""
        while b"bytes" not in answer:  # the head and the body may come in two reads
            data = sock.recv(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 413") and b"70000 bytes" in answer
    # A client that promises a body and leaves halfway: no answer owed, nothing breaks.
    with socket.create_connection(("127.0.0.1", runner.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{{".encode())
    body = {"model": "emb", "input": "after"} if path == "/v1/embeddings" else {"inputs": "after"}
    if path.startswith("/v2"):
        body = {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["after"]}]}
    assert c.post(path, json=body).status_code == 200


def test_failed_model_is_error_and_runner_stays_up(runner: Any) -> None:
    r = runner.client.post("/v1/models/broken/predict", json={"text": "x"})
    assert r.status_code == 503
    assert "weights are corrupt" in r.json()["error"]
    r = runner.client.post("/v1/models/missing/predict", json={"inputs": "x"})
    assert r.status_code == 503 and "does not exist" in r.json()["error"]
    health = runner.health()["models"]
    assert health["broken"]["state"] == "ERROR"
    assert "checksum mismatch in layer 3" in health["broken"]["error"]
    assert health["missing"]["state"] == "ERROR"
    assert runner.client.get("/v2/models/broken/ready").status_code == 503
    ok = runner.client.post("/v1/models/cls/predict", json={"inputs": "still serving"})
    assert ok.status_code == 200


def test_repository_load_unload(runner: Any) -> None:
    c = runner.client
    assert c.post("/v2/repository/models/plain/load").json()["state"] == "READY"
    assert c.post("/v2/repository/models/plain/unload").json()["state"] == "IDLE"
    assert runner.health()["models"]["plain"]["state"] == "IDLE"
    assert c.get("/v2/models/plain/ready").status_code == 503
    assert c.post("/v1/models/plain/predict", json={"inputs": "back"}).status_code == 200
    assert runner.health()["models"]["plain"]["state"] == "READY"
    assert c.post("/v2/repository/models/broken/load").status_code == 503
    assert c.post("/v2/repository/models/nope/load").status_code == 404


def test_metrics_exposition(runner: Any) -> None:
    runner.client.post("/v1/models/cls/predict", json={"inputs": ["a", "b"]})
    text = runner.client.get("/metrics").text
    for name in (
        "modelyard_request_duration_seconds_bucket",
        "modelyard_queue_wait_seconds_count",
        "modelyard_batch_size_sum",
        "modelyard_tokens_total",
        "modelyard_model_load_seconds_count",
        "modelyard_model_resident_bytes",
    ):
        assert f"{name}{{" in text, name
    assert 'modelyard_requests_total{code="200",model="cls"}' in text
    assert 'modelyard_requests_total{code="413",model="cls"}' in text


def test_health_lists_every_model(runner: Any) -> None:
    health = runner.health()
    assert health["status"] == "ok"
    assert set(health["models"]) == {"cls", "emb", "plain", "echo", "broken", "missing"}
    assert health["models"]["cls"]["state"] == "READY"
    assert health["models"]["cls"]["resident_bytes"] > 0


def test_schemathesis_finds_no_server_error(
    start_runner: Any, tiny: dict[str, Path], tmp_path: Path
) -> None:
    """Generated requests against every operation of /openapi.json never get a 5xx answer.

    The runner serves healthy models only: a model that failed to load answers 503 by design.
    """
    import shutil
    import subprocess
    import sys

    runner = start_runner(
        {
            "models": [
                {"name": "cls", "ref": str(tiny["cls"]), "pipeline": "text-classification"},
                {"name": "emb", "ref": str(tiny["emb"]), "pipeline": "feature-extraction"},
                {"name": "echo", "ref": None, "pipeline": "sample_pipelines:Echo"},
            ]
        }
    )

    exe = shutil.which("schemathesis") or shutil.which("st")
    cmd = [exe] if exe else [sys.executable, "-m", "schemathesis.cli"]
    result = subprocess.run(
        [
            *cmd,
            "run",
            f"{runner.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_committed_openapi_is_what_an_empty_runner_serves(start_runner: Any) -> None:
    runner = start_runner({"models": []})
    served = runner.client.get("/openapi.json").json()
    committed = json.loads((REPO / "src/modelyard/serve/openapi.json").read_text())
    assert served == committed, "regenerate: python -m modelyard.serve.openapi > ...openapi.json"
