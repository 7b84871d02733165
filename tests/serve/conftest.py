"""Fixtures for the runner: tiny exported models and a real `modelyard serve` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.testing import peers

HERE = Path(__file__).parent
REPO = HERE.parents[1]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BERT/XLM-R models (random weights), exported to ONNX by `modelyard optimize`'s code.

    cls: a classification bundle (modelyard.json); emb: an embedding bundle (mean pooling,
    normalised); plain: an XLM-R classifier as a plain dir (model.onnx + tokenizer.json +
    config.json, no modelyard.json); emb_src: the torch model behind `emb`.
    """
    from modelyard.optimize.export import export_onnx, load_torch_model
    from modelyard.optimize.pipeline import export_bundle
    from modelyard.optimize.source import read_source
    from modelyard.testing.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    make_tiny_model(root / "cls_src", "bert", "text-classification", num_labels=3, seed=1)
    export_bundle(root / "cls_src", root / "cls", "text-classification")
    make_tiny_model(root / "emb_src", "bert", "feature-extraction", seed=2)
    export_bundle(root / "emb_src", root / "emb", "feature-extraction")
    plain = make_tiny_model(root / "plain", "xlm-roberta", "text-classification", num_labels=4)
    source = read_source(plain, "text-classification")
    export_onnx(source, load_torch_model(source), plain / "model.onnx")
    return {
        "cls": root / "cls",
        "emb": root / "emb",
        "plain": plain,
        "emb_src": root / "emb_src",
        "cls_src": root / "cls_src",
    }


class RunnerProcess:
    """`python -m modelyard serve CONFIG` on a free port; stopped with SIGTERM."""

    def __init__(self, config: dict[str, Any], workdir: Path, state_dir: Path | None = None):
        self.port = peers.free_port()
        self.workdir = workdir
        self.state_dir = state_dir or workdir / "state"
        self.config_path = workdir / f"runner-{self.port}.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = workdir / f"runner-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard",
                "serve",
                str(self.config_path),
                "--port",
                str(self.port),
                "--state-dir",
                str(self.state_dir),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_live(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runner exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.client.get("/v2/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"runner not live after {timeout} s:\n{self.log()}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_live(timeout)
        deadline = time.monotonic() + timeout
        while self.client.get("/v2/health/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"runner not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/health").json()
        return body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        peers.stop(self.proc, timeout)
        self.client.close()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Any]:
    started: list[RunnerProcess] = []

    def start(config: dict[str, Any], state_dir: Path | None = None) -> RunnerProcess:
        runner = RunnerProcess(config, tmp_path, state_dir)
        started.append(runner)
        runner.wait_live()
        return runner

    yield start
    for runner in started:
        runner.stop()
