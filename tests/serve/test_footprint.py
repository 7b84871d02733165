"""`pip install .[runner]` into a fresh venv: no torch, no transformers, and it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from modelyard.testing.peers import free_port, stop

from .conftest import REPO


def test_runner_extra_is_slim_and_serves(tiny: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{REPO}[runner]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    probe = (
        "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None"
        " for m in ['torch', 'transformers', 'onnxruntime', 'tokenizers', 'numpy', 'starlette',"
        " 'uvicorn', 'fastapi']}))"
    )
    found = json.loads(subprocess.check_output([str(py), "-c", probe], text=True))
    assert found == {
        "torch": False,
        "transformers": False,
        "fastapi": False,
        "onnxruntime": True,
        "tokenizers": True,
        "numpy": True,
        "starlette": True,
        "uvicorn": True,
    }

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "modelyard"),
            "serve",
            "--model",
            f"emb={tiny['emb']}",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/v1/embeddings",
                    json={"model": "emb", "input": "hello"},
                    timeout=30,
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert len(r.json()["data"][0]["embedding"]) == 32
    finally:
        stop(proc, 30)
