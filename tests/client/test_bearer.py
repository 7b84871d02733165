"""Docker's bearer token flow against modelyard's own registry (`registry serve --htpasswd`):
over real sockets with the CLI, and in process through the ASGI app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from clienttools import free_port, make_htpasswd, run_cli, wait_http, write_docker_config

from modelyard.client import RegistryClient, pull, push_layout
from modelyard.client.auth import Credentials
from modelyard.client.transport import ASGIAppTransport
from modelyard.errors import AuthenticationError
from modelyard.oci.layout import Layout


@pytest.fixture
def our_registry(tmp_path: Path):
    htpasswd = make_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "modelyard", "registry", "serve",
            "--root", str(tmp_path / "root"),
            "--addr", f"127.0.0.1:{port}",
            "--htpasswd", str(htpasswd),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bearer_push_pull_over_sockets(our_registry, model_layout, tmp_path):
    # The challenge really is a bearer one with a realm (not basic auth).
    challenge = httpx.get(f"http://{our_registry}/v2/").headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "realm=" in challenge

    write_docker_config("bob", "hunter2", our_registry)
    ref = f"{our_registry}/org/model:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--json")
    assert rc == 0, err
    digest = json.loads(out)["digest"]
    rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "back"), "-q")
    assert rc == 0, err
    assert Layout.open(tmp_path / "back").resolve("v1").digest == digest


def test_bearer_wrong_password_exits_4(our_registry, model_layout):
    write_docker_config("bob", "nope", our_registry)
    rc, _, err = run_cli("push", str(model_layout), f"{our_registry}/org/model:v1", "-q")
    assert rc == 4
    assert "bob" in err and "refused" in err


def test_bearer_without_credentials_exits_4(our_registry, model_layout):
    rc, _, err = run_cli("push", str(model_layout), f"{our_registry}/org/model:v1", "-q")
    assert rc == 4
    assert "no credentials" in err


class CountingTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return self.inner.handle_request(request)


def test_in_process_app_tokens_cached_per_scope(model_layout, tmp_path):
    from modelyard.registry.app import create_app

    htpasswd = make_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    app = create_app(tmp_path / "root", htpasswd=htpasswd)
    transport = CountingTransport(ASGIAppTransport(app))
    creds = Credentials("bob", "hunter2")
    with RegistryClient("localhost", transport=transport, credentials=creds) as client:
        result = push_layout(model_layout, "v1", "localhost/org/model:v1", client=client)
        assert result.blobs_uploaded == 4
        token_calls = sum(1 for p in transport.paths if p.endswith("/token"))
        # One token for pull (the HEADs), one for pull,push (uploads, manifests): not per request.
        assert token_calls == 2
        out = pull("localhost/org/model:v1", tmp_path / "back", client=client)
        assert out.digest == result.digest
        assert sum(1 for p in transport.paths if p.endswith("/token")) == token_calls

    with (
        RegistryClient(
            "localhost", transport=ASGIAppTransport(app), credentials=Credentials("bob", "x")
        ) as bad,
        pytest.raises(AuthenticationError, match="refused"),
    ):
        bad.head_blob("org/model", result.digest)
