"""Fixtures for the registry client tests (helpers live in clienttools.py)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.testing import peers

from .clienttools import CountingProxy, pack_model, write_model


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
def docker_registry_factory(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start Debian's docker-registry (with an htpasswd file if given); returns `host:port`."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(htpasswd: Path | None = None) -> str:
            root = tmp_path / f"registry-{next(numbers)}"
            return stack.enter_context(peers.docker_registry(root, htpasswd))

        yield start


@pytest.fixture
def docker_registry(docker_registry_factory: Callable[..., str]) -> str:
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
