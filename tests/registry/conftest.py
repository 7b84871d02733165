"""Fixtures for the registry: the app in process, the real server as a subprocess on a free
port, and small images to push."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.registry.app import create_app
from modelyard.testing.peers import start_modelyard_registry, stop


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
    extra: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _wait_port_closed(self.addr)

    def restart(self) -> None:
        """Start again on the same root and address."""
        _, self.proc = start_modelyard_registry(self.root, *self.extra, addr=self.addr)


def _wait_port_closed(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{addr} still accepts connections after the server was killed")


@contextlib.contextmanager
def serving(root: Path, *extra: str) -> Iterator[Server]:
    """The real `python -m modelyard registry serve --root ROOT EXTRA` on a free port."""
    addr, proc = start_modelyard_registry(root, *extra)
    srv = Server(addr, root, proc, extra)
    try:
        yield srv
    finally:
        stop(srv.proc)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The real `python -m modelyard registry serve` on a free port."""
    with serving(tmp_path / "root") as srv:
        yield srv


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
