"""Fixtures for the hub tests: the hub stand-in with the HF environment pointing at it, a
model repository on it, and `modelyard registry serve --hf-proxy` on a free port."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.testing.hubstandin import HubStandIn
from modelyard.testing.peers import modelyard_registry

from .hubtools import MODEL_REPO, make_model


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HF variables for a clean, private cache; applied to this process too."""
    env = {
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    return env


@pytest.fixture
def hub(
    tmp_path: Path, hf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubStandIn]:
    with HubStandIn(tmp_path / "hub-state") as standin:
        monkeypatch.setenv("HF_ENDPOINT", standin.endpoint)
        hf_env["HF_ENDPOINT"] = standin.endpoint
        yield standin


@pytest.fixture
def tiny_repo(hub: HubStandIn, tmp_path: Path) -> str:
    """`Org/Tiny-Model` on the stand-in; returns its commit."""
    return hub.add_repo(MODEL_REPO, make_model(tmp_path / "src-0", seed=0))


@pytest.fixture
def proxy_registry(tmp_path: Path, hub: HubStandIn) -> Iterator[Callable[..., str]]:
    """Start `modelyard registry serve --hf-proxy`; returns its `host:port`."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(ttl: float = 300.0, token: str | None = None) -> str:
            env = {**os.environ}
            if token:
                env["HF_TOKEN"] = token
            root = tmp_path / f"registry-{next(numbers)}"
            args = ("--hf-proxy", "--hf-ttl", str(ttl))
            addr, _ = stack.enter_context(modelyard_registry(root, *args, env=env))
            return addr

        yield start
