"""The client against modelyard's own registry (`registry serve`): Docker's bearer token flow
over real sockets with the CLI and in process through the ASGI app, and a true resume of a
chunked upload cut in the middle of a chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client import RegistryClient, pull, push_layout
from modelyard.client.auth import Credentials
from modelyard.client.transport import ASGIAppTransport
from modelyard.errors import AuthenticationError
from modelyard.oci.layout import Layout
from modelyard.testing.peers import modelyard_registry, write_docker_config, write_htpasswd

from .clienttools import run_cli


@pytest.fixture
def our_registry(tmp_path: Path) -> Iterator[str]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    with modelyard_registry(tmp_path / "root", "--htpasswd", str(htpasswd)) as (addr, _):
        yield addr


@pytest.fixture
def open_registry(tmp_path: Path) -> Iterator[str]:
    with modelyard_registry(tmp_path / "root") as (addr, _):
        yield addr


def test_upload_cut_mid_chunk_resumes_in_the_same_session(open_registry, proxy_factory):
    import random

    from modelyard.oci.digest import digest_bytes

    from .clienttools import Rule, port_of

    proxy = proxy_factory(port_of(open_registry))
    data = random.Random(4).randbytes(3 * (1 << 20) + 7)
    digest = digest_bytes(data)
    proxy.rules.append(Rule("PATCH", "/blobs/uploads/", "cut", nth=2, after=300_000))
    with RegistryClient(proxy.addr, chunk_size=1 << 20, backoff=0.01) as client:
        client.upload_blob("org/cut", data, digest, len(data))
        assert b"".join(client.get_blob_stream("org/cut", digest)) == data
    assert proxy.rules[0].fired == 1
    # One session only: the client asked the registry what it kept and went on from there.
    assert sum(1 for r in proxy.requests if r.method == "POST") == 1
    assert any(r.method == "GET" and "/blobs/uploads/" in r.path for r in proxy.requests)
    assert proxy.body_bytes("PATCH") == len(data) + 300_000


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

    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
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
