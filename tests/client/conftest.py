"""Fixtures for the registry client tests (helpers live in clienttools.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .clienttools import (
    CountingProxy,
    DockerRegistry,
    pack_model,
    start_docker_registry,
    write_model,
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's logins or writes the user's blob-location cache."""
    docker = tmp_path / "docker-config"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


@pytest.fixture
def docker_registry_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., DockerRegistry]]:
    started: list[DockerRegistry] = []

    def start(htpasswd: Path | None = None) -> DockerRegistry:
        reg = start_docker_registry(tmp_path / f"registry-{len(started)}", htpasswd)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.proc.terminate()
        try:
            reg.proc.wait(5)
        except subprocess.TimeoutExpired:
            reg.proc.kill()
            reg.proc.wait()


@pytest.fixture
def docker_registry(docker_registry_factory: Callable[..., DockerRegistry]) -> DockerRegistry:
    return docker_registry_factory()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], CountingProxy]]:
    proxies: list[CountingProxy] = []

    def make(upstream_port: int) -> CountingProxy:
        p = CountingProxy(upstream_port)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()


@pytest.fixture
def model_layout(tmp_path: Path) -> Path:
    return pack_model(write_model(tmp_path / "model"), tmp_path / "layout")
