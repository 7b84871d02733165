"""Client pieces without a server: challenges, credential files, URLs, and odd registry
answers played by an httpx MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from modelyard.client import RegistryClient
from modelyard.client.auth import find_credentials, parse_challenge
from modelyard.client.transport import base_url, is_local
from modelyard.errors import (
    AuthenticationError,
    DigestMismatch,
    RegistryUnreachable,
    RemoteNotFound,
)
from modelyard.oci.digest import digest_bytes
from modelyard.registry.errcodes import RegistryError
from modelyard.testing.peers import write_docker_config

DATA = bytes(range(256)) * 1000
DIGEST = digest_bytes(DATA)


def test_parse_bearer_challenge():
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:org/m:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.realm == "https://auth.example/token"
    assert c.params["service"] == "registry.example"
    assert c.params["scope"] == "repository:org/m:pull,push"
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic" and basic.realm == "Registry Realm"
    assert parse_challenge("") is None


def test_credentials_sources_and_key_forms(tmp_path, monkeypatch):
    assert find_credentials("r.example:5000") is None
    write_docker_config("u", "p:with:colons", "https://r.example:5000/v1/")
    creds = find_credentials("r.example:5000")
    assert creds is not None and (creds.username, creds.password) == ("u", "p:with:colons")
    assert find_credentials("other.example") is None
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"r.example:5000": {"username": "podman", "password": "x"}}})
    )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    creds = find_credentials("r.example:5000")
    assert creds is not None and creds.username == "podman"


def test_undecodable_auth_entry_is_a_clear_error(tmp_path):
    import os

    path = tmp_path / "docker-config" / "config.json"
    assert os.environ["DOCKER_CONFIG"] == str(path.parent)
    bad = base64.b64encode(b"no-colon-here").decode()
    path.write_text(json.dumps({"auths": {"r.example": {"auth": bad}}}))
    with pytest.raises(AuthenticationError, match="user:password"):
        find_credentials("r.example")


def test_plain_http_only_for_loopback():
    assert is_local("localhost:5000") and is_local("127.0.0.1:5000") and is_local("[::1]:5000")
    assert not is_local("registry.example:5000")
    assert base_url("localhost:5000") == "http://localhost:5000"
    assert base_url("ghcr.io") == "https://ghcr.io"
    assert base_url("ghcr.io", plain_http=True) == "http://ghcr.io"


def client_for(handler) -> RegistryClient:
    return RegistryClient(
        "registry.example", transport=httpx.MockTransport(handler), backoff=0.0, retries=2
    )


def test_range_when_the_registry_ignores_range():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=1000-1999"
        return httpx.Response(200, content=DATA)

    with client_for(handler) as client:
        assert client.get_blob_range("org/m", DIGEST, 1000, 2000) == DATA[1000:2000]
        assert client.get_blob_range("org/m", DIGEST, 7, 7) == b""
        with pytest.raises(ValueError):
            client.get_blob_range("org/m", DIGEST, 10, 5)


def test_range_with_a_wrong_content_range_is_refused():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(206, content=DATA[:10], headers={"Content-Range": "bytes 0-9/256000"})

    with client_for(handler) as client, pytest.raises(RegistryError, match="RANGE_INVALID"):
        client.get_blob_range("org/m", DIGEST, 100, 110)


class Truncated(httpx.SyncByteStream):
    """Sends `cut` bytes of the body, then fails like a dropped connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.cut]
        raise httpx.ReadError("connection reset")


@pytest.mark.parametrize("honours_range", [True, False])
def test_blob_stream_resumes_after_a_drop(honours_range: bool) -> None:
    """After a dropped connection the stream asks for the rest with Range; a registry that
    ignores Range sends the whole blob again, and the part already read is skipped (in small
    pieces: whole pieces, then part of one)."""
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        if len(ranges) == 1:
            return httpx.Response(200, stream=Truncated(DATA, 100_000))
        if not honours_range:
            return httpx.Response(200, content=DATA)
        start = int(request.headers["range"].split("=")[1].rstrip("-"))
        return httpx.Response(206, content=DATA[start:])

    with client_for(handler) as client:
        assert b"".join(client.get_blob_stream("org/m", DIGEST, read_size=30_000)) == DATA
    assert ranges == [None, "bytes=100000-"]


def test_blob_stream_detects_corruption():
    bad = bytearray(DATA)
    bad[5] ^= 1

    with (
        client_for(lambda r: httpx.Response(200, content=bytes(bad))) as client,
        pytest.raises(DigestMismatch),
    ):
        b"".join(client.get_blob_stream("org/m", DIGEST))


def test_manifest_digest_is_verified_against_the_reference():
    body = b'{"schemaVersion":2}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )

    with client_for(handler) as client:
        data, _, digest = client.get_manifest("org/m", digest_bytes(body))
        assert data == body and digest == digest_bytes(body)
        with pytest.raises(DigestMismatch):
            client.get_manifest("org/m", digest_bytes(b"something else"))


def test_error_bodies_become_typed_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        if "missing" in request.url.path:
            body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no such tag"}]}
            return httpx.Response(404, json=body)
        if "denied" in request.url.path:
            return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "nope"}]})
        return httpx.Response(400, json={"errors": [{"code": "NAME_INVALID", "message": "bad"}]})

    with client_for(handler) as client:
        with pytest.raises(RemoteNotFound, match="no such tag"):
            client.get_manifest("org/missing", "v1")
        with pytest.raises(AuthenticationError, match="nope"):
            client.get_manifest("org/denied", "v1")
        with pytest.raises(RegistryError) as info:
            client.get_manifest("org/other", "v1")
        assert info.value.code.value == "NAME_INVALID"


def test_transient_failures_are_retried_then_reported():
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503)
        return httpx.Response(200, headers={"Content-Length": "42"})

    with client_for(flaky) as client:
        assert client.head_blob("org/m", DIGEST) == 42
    assert len(calls) == 3

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with client_for(down) as client, pytest.raises(RegistryUnreachable, match="refused"):
        client.ping()


def test_tag_list_follows_link_pagination():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("last") == "b":
            return httpx.Response(200, json={"name": "org/m", "tags": ["c"]})
        return httpx.Response(
            200,
            json={"name": "org/m", "tags": ["a", "b"]},
            headers={"Link": '</v2/org/m/tags/list?n=2&last=b>; rel="next"'},
        )

    with client_for(handler) as client:
        assert client.list_tags("org/m", page_size=2) == ["a", "b", "c"]


def test_credential_helpers(tmp_path, monkeypatch):
    import os
    import stat

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    # A helper as Docker defines them: server URL on stdin, JSON on stdout.
    helper.write_text(
        "#!/bin/sh\n"
        "read server\n"
        'if [ "$server" = "helped.example" ]; then\n'
        '  echo \'{"ServerURL":"helped.example","Username":"hu","Secret":"hs"}\'\n'
        "else\n"
        "  echo 'credentials not found in native keychain'; exit 1\n"
        "fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "docker-config" / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {"stored.example": {}},
                "credHelpers": {"helped.example": "fake"},
                "credsStore": "fake",
            }
        )
    )
    creds = find_credentials("helped.example")
    assert creds is not None and (creds.username, creds.password) == ("hu", "hs")
    assert find_credentials("stored.example") is None  # the store has nothing for it
    config.write_text(json.dumps({"credHelpers": {"x.example": "missing"}}))
    with pytest.raises(AuthenticationError, match="docker-credential-missing"):
        find_credentials("x.example")
