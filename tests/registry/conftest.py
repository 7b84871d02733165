"""Fixtures for the registry: the app in process, the real server as a subprocess on a free
port, and small images to push."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.registry.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run scripts/test (it installs it)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's registry logins or containers config."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    (tmp_path / "auth.json").write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The registry app in process over a fresh root (fast; no socket)."""
    with TestClient(create_app(tmp_path / "root"), base_url="http://reg") as c:
        yield c


@dataclass
class Server:
    addr: str
    root: Path
    proc: subprocess.Popen[bytes]
    args: list[str]

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _wait_port_closed(self.addr)

    def restart(self) -> None:
        self.proc = _spawn(self.args, self.url)


def _spawn(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "registry", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            httpx.get(url + "/v2/", timeout=1.0)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("registry did not start within 30 s")


def _wait_port_closed(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{addr} still accepts connections after the server was killed")


def start_server(root: Path, *extra: str) -> Server:
    addr = f"127.0.0.1:{free_port()}"
    args = ["--root", str(root), "--addr", addr, *extra]
    return Server(addr, root, _spawn(args, f"http://{addr}"), args)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The real `python -m modelyard registry serve` on a free port."""
    srv = start_server(tmp_path / "root")
    yield srv
    if srv.proc.poll() is None:
        srv.proc.terminate()
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()


@pytest.fixture
def model_layout(tmp_path: Path) -> Path:
    """A small model packed into an OCI layout by `modelyard.pack` (tag `v1`)."""
    from modelyard.pack import PackOptions, pack

    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"hidden_size": 32, "layers": 2}))
    (src / "tokenizer.json").write_text(json.dumps({"vocab": ["a", "b"]}))
    (src / "model.safetensors").write_bytes(os.urandom(3 << 20))
    layout = tmp_path / "layout"
    pack(src, "v1", layout, PackOptions(threshold=1 << 20, mtime=0))
    return layout
