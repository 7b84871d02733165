"""Blob uploads by sendfile (`modelyard.client.rawhttp`): against our registry and Debian's
docker-registry, with Basic and bearer auth, digest mismatches, early answers, failures the
client must resume from, and the cases that must stay on httpx."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client import RegistryClient, rawhttp
from modelyard.client.auth import Credentials
from modelyard.client.registry import push_scope
from modelyard.errors import AuthenticationError
from modelyard.oci.digest import digest_bytes
from modelyard.registry.errcodes import RegistryError
from modelyard.testing.peers import modelyard_registry, write_htpasswd

from .clienttools import Rule, port_of


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every request sent by sendfile: (method, offset, length)."""
    calls: list[tuple[str, int, int]] = []
    real = rawhttp.send

    def spy(request: httpx.Request, body: rawhttp.FileBody, *args: object) -> httpx.Response:
        calls.append((request.method, body.offset, body.length))
        return real(request, body, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(rawhttp, "send", spy)
    return calls


@pytest.fixture
def our_registry(tmp_path: Path) -> Iterator[str]:
    with modelyard_registry(tmp_path / "ours") as (addr, _):
        yield addr


CREDENTIALS = {
    "our_locked_registry": Credentials("bob", "hunter2"),
    "docker_locked": Credentials("alice", "s3cret"),
}


@pytest.fixture
def docker_locked(docker_registry_factory: Callable[..., str], tmp_path: Path) -> str:
    return docker_registry_factory(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))


@pytest.fixture
def our_locked_registry(tmp_path: Path) -> Iterator[str]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    with modelyard_registry(tmp_path / "locked", "--htpasswd", str(htpasswd)) as (addr, _):
        yield addr


def _blob(tmp_path: Path, size: int, seed: int = 0) -> tuple[Path, bytes, str]:
    data = random.Random(seed).randbytes(size)
    path = tmp_path / f"blob-{seed}"
    path.write_bytes(data)
    return path, data, digest_bytes(data)


@pytest.mark.parametrize("registry", ["our_registry", "docker_registry"])
@pytest.mark.parametrize("chunk_size", [1 << 20, 64 << 20], ids=["chunked", "monolithic"])
def test_file_uploads_go_by_sendfile_and_land_intact(
    registry: str, chunk_size: int, request, sendfile_calls, tmp_path
):
    addr = request.getfixturevalue(registry)
    path, data, digest = _blob(tmp_path, 3 * (1 << 20) + 7)
    seen: list[int] = []
    with RegistryClient(addr, chunk_size=chunk_size) as client:
        client.upload_blob("org/sf", path, digest, len(data), progress=seen.append)
        assert client.head_blob("org/sf", digest) == len(data)
        assert b"".join(client.get_blob_stream("org/sf", digest)) == data
    assert sum(seen) == len(data)
    if chunk_size < len(data):
        assert [c[0] for c in sendfile_calls] == ["PATCH"] * 4
        assert [c[1] for c in sendfile_calls] == [0, 1 << 20, 2 << 20, 3 << 20]
    else:
        assert sendfile_calls == [("PUT", 0, len(data))]


@pytest.mark.parametrize("registry", ["our_registry", "docker_registry"])
def test_digest_mismatch_through_sendfile_stores_nothing(
    registry: str, request, sendfile_calls, tmp_path
):
    addr = request.getfixturevalue(registry)
    path, data, _ = _blob(tmp_path, (1 << 20) + 3)
    wrong = digest_bytes(data + b"x")
    with RegistryClient(addr) as client:
        with pytest.raises(RegistryError) as info:
            client.upload_blob("org/bad", path, wrong, len(data))
        assert info.value.code.value == "DIGEST_INVALID"
        assert client.head_blob("org/bad", wrong) is None
    assert sendfile_calls


def test_bearer_auth_over_sendfile(our_locked_registry, sendfile_calls, tmp_path):
    path, data, digest = _blob(tmp_path, (2 << 20) + 1)
    creds = CREDENTIALS["our_locked_registry"]
    with RegistryClient(our_locked_registry, credentials=creds, chunk_size=1 << 20) as client:
        client.upload_blob("org/auth", path, digest, len(data))
        assert b"".join(client.get_blob_stream("org/auth", digest)) == data
    assert len(sendfile_calls) == 3


def test_basic_auth_over_sendfile(docker_locked, sendfile_calls, tmp_path):
    path, data, digest = _blob(tmp_path, (1 << 20) + 9)
    with RegistryClient(docker_locked, credentials=CREDENTIALS["docker_locked"]) as client:
        client.upload_blob("org/auth", path, digest, len(data))
        assert client.head_blob("org/auth", digest) == len(data)
    assert sendfile_calls == [("PUT", 0, len(data))]


@pytest.mark.parametrize("registry", ["docker_locked", "our_locked_registry"])
def test_a_401_to_a_sendfile_request_authenticates_and_sends_again(
    registry: str, request, sendfile_calls, tmp_path
):
    # A client that has not met the registry's challenge yet sends its first request, a
    # blob PUT by sendfile, without credentials: the 401 (Basic from docker-registry, Bearer
    # from ours) comes back before the body was read; the client logs in and sends again.
    addr, creds = request.getfixturevalue(registry), CREDENTIALS[registry]
    path, data, digest = _blob(tmp_path, (4 << 20) + 5)
    with RegistryClient(addr, credentials=creds) as first:
        _, location = first._start_upload("org/again")
    assert location is not None
    with RegistryClient(addr, credentials=creds) as client:
        resp = client._send(
            "PUT",
            location.copy_merge_params({"digest": digest}),
            push_scope("org/again"),
            headers={"Content-Type": "application/octet-stream"},
            content=lambda: rawhttp.FileBody(str(path), 0, len(data)),
            retry=False,
        )
        assert resp.status_code == 201
        assert b"".join(client.get_blob_stream("org/again", digest)) == data
    assert [c[0] for c in sendfile_calls] == ["PUT", "PUT"]


def test_credentials_refused_on_a_sendfile_request_are_an_auth_error(
    docker_locked, proxy_factory, tmp_path
):
    proxy = proxy_factory(port_of(docker_locked))
    refused = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="test"\r\n'
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    proxy.rules.append(Rule("PUT", "/blobs/uploads/", "respond", response=refused))
    path, data, digest = _blob(tmp_path, (1 << 20) + 5)
    with RegistryClient(proxy.addr, credentials=CREDENTIALS["docker_locked"]) as client:
        with pytest.raises(AuthenticationError):
            client.upload_blob("org/refused", path, digest, len(data))
        assert client.head_blob("org/refused", digest) is None


def test_an_early_answer_is_read_even_if_the_body_was_not(our_locked_registry, tmp_path):
    # The registry refuses an unauthenticated PATCH without reading its 4 MiB body.
    path, data, _ = _blob(tmp_path, 4 << 20)
    url = httpx.URL(f"http://{our_locked_registry}/v2/org/x/blobs/uploads/{'0' * 32}")
    request = httpx.Request("PATCH", url, headers={"Content-Type": "application/octet-stream"})
    resp = rawhttp.send(request, rawhttp.FileBody(str(path), 0, len(data)), timeout=30)
    assert resp.status_code == 401
    assert "www-authenticate" in resp.headers
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_a_connection_cut_mid_chunk_resumes(our_registry, proxy_factory, sendfile_calls, tmp_path):
    proxy = proxy_factory(port_of(our_registry))
    path, data, digest = _blob(tmp_path, 3 * (1 << 20) + 7)
    proxy.rules.append(Rule("PATCH", "/blobs/uploads/", "cut", nth=2, after=300_000))
    seen: list[int] = []
    with RegistryClient(proxy.addr, chunk_size=1 << 20, backoff=0.01) as client:
        client.upload_blob("org/cut", path, digest, len(data), progress=seen.append)
        assert b"".join(client.get_blob_stream("org/cut", digest)) == data
    assert proxy.rules[0].fired == 1
    assert sum(1 for r in proxy.requests if r.method == "POST") == 1  # resumed, same session
    assert proxy.body_bytes("PATCH") == len(data) + 300_000
    assert sum(seen) == len(data)
    # The cut chunk went again by sendfile, from the offset the registry reported.
    assert [c[1] for c in sendfile_calls].count(1 << 20) == 2


def test_a_file_shorter_than_announced_is_an_error_not_a_retry_loop(our_registry, tmp_path):
    path, _, digest = _blob(tmp_path, 1000)
    with RegistryClient(our_registry, backoff=0.01) as client, pytest.raises(OSError):
        client.upload_blob("org/short", path, digest, 5000)


def test_https_proxies_and_in_process_transports_stay_on_httpx(monkeypatch):
    assert rawhttp.can_sendfile(httpx.URL("http://127.0.0.1:5000/v2/"))
    assert not rawhttp.can_sendfile(httpx.URL("https://registry.example/v2/"))
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert not rawhttp.can_sendfile(httpx.URL("http://registry.example:5000/v2/"))
    assert rawhttp.can_sendfile(httpx.URL("http://localhost:5000/v2/"))
