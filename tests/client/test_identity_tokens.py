"""Identity tokens (OAuth2 refresh tokens in `~/.docker/config.json` or from a credential
helper): the client trades them at the realm with Docker's `grant_type=refresh_token` POST,
against a stand-in realm in process and against our registry's own token endpoint."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from modelyard.client import RegistryClient
from modelyard.client.auth import Credentials, find_credentials
from modelyard.errors import AuthenticationError
from modelyard.oci.layout import Layout
from modelyard.testing.peers import modelyard_registry, write_htpasswd

from .clienttools import run_cli


def docker_config() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


def write_identity_token(registry: str, token: str, user: str = "bob") -> None:
    """What `docker login` writes when the realm hands out a refresh token."""
    auth = base64.b64encode(f"{user}:".encode()).decode()
    docker_config().write_text(
        json.dumps({"auths": {registry: {"auth": auth, "identitytoken": token}}})
    )


def install_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    """`docker-credential-tok`, answering as helpers do for an identity token."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / "docker-credential-tok"
    answer = json.dumps({"ServerURL": "x", "Username": "<token>", "Secret": secret})
    helper.write_text(f"#!/bin/sh\nread server\necho '{answer}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_identity_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_identity_token("acr.example", "refresh-1")
    creds = find_credentials("acr.example")
    assert creds == Credentials("bob", "", "refresh-1")
    assert "refresh-1" not in repr(creds)
    install_helper(tmp_path, monkeypatch, "refresh-2")
    docker_config().write_text(json.dumps({"credHelpers": {"acr.example": "tok"}}))
    assert find_credentials("acr.example") == Credentials("<token>", "", "refresh-2")


class StandInRealm:
    """A stand-in for a registry whose realm only takes refresh tokens, and rotates them."""

    def __init__(self) -> None:
        self.forms: list[dict[str, list[str]]] = []
        self.valid_refresh = {"refresh-1"}
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            assert request.method == "POST"
            form = parse_qs(request.content.decode())
            self.forms.append(form)
            if form.get("grant_type") != ["refresh_token"]:
                return httpx.Response(400, json={"error": "unsupported_grant_type"})
            if form["refresh_token"][0] not in self.valid_refresh:
                return httpx.Response(401, json={"error": "invalid_grant"})
            self.issued += 1
            rotated = f"refresh-{self.issued + 1}"
            self.valid_refresh = {rotated}
            access = f"access:{form['scope'][0]}"
            return httpx.Response(
                200,
                json={"access_token": access, "refresh_token": rotated, "expires_in": 300},
            )
        auth = request.headers.get("authorization", "")
        name = request.url.path.split("/")[3]  # /v2/org/NAME/tags/list
        if auth != f"Bearer access:repository:org/{name}:pull":
            challenge = (
                'Bearer realm="https://acr.example/oauth2/token",service="acr.example",'
                f'scope="repository:org/{name}:pull"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"name": f"org/{name}", "tags": ["v1"]})


def test_refresh_grant_against_a_stand_in_realm() -> None:
    realm = StandInRealm()
    creds = Credentials("<token>", "", "refresh-1")
    with RegistryClient(
        "acr.example", transport=httpx.MockTransport(realm), credentials=creds, retries=0
    ) as client:
        assert client.list_tags("org/one") == ["v1"]
        assert client.list_tags("org/two") == ["v1"]  # a new scope: the rotated token is used
    assert [f["refresh_token"] for f in realm.forms] == [["refresh-1"], ["refresh-2"]]
    first = realm.forms[0]
    assert first["grant_type"] == ["refresh_token"]
    assert first["service"] == ["acr.example"]
    assert first["scope"] == ["repository:org/one:pull"]
    assert first["client_id"] == ["modelyard"]

    stale = Credentials("<token>", "", "revoked")
    with (
        RegistryClient(
            "acr.example", transport=httpx.MockTransport(StandInRealm()), credentials=stale
        ) as client,
        pytest.raises(AuthenticationError, match="identity token were refused"),
    ):
        client.list_tags("org/one")


# Against our registry: `/token` hands out refresh tokens (access_type=offline) and takes them.


@pytest.fixture
def our_registry(tmp_path: Path) -> Iterator[str]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    with modelyard_registry(tmp_path / "root", "--htpasswd", str(htpasswd)) as (addr, _):
        yield addr


def offline_token(addr: str) -> str:
    form = {"grant_type": "password", "username": "bob", "password": "hunter2",
            "access_type": "offline", "client_id": "test", "service": "modelyard"}  # fmt: skip
    r = httpx.post(f"http://{addr}/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["refresh_token"])


def test_push_and_pull_with_an_identity_token(
    our_registry: str,
    model_layout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_identity_token(our_registry, offline_token(our_registry))
    ref = f"{our_registry}/org/model:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--json")
    assert rc == 0, err  # the stored password is empty: only the refresh grant can succeed
    digest = json.loads(out)["digest"]

    install_helper(tmp_path, monkeypatch, offline_token(our_registry))
    docker_config().write_text(json.dumps({"credHelpers": {our_registry: "tok"}}))
    rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "back"), "-q")
    assert rc == 0, err
    assert Layout.open(tmp_path / "back").resolve("v1").digest == digest


def test_a_bad_identity_token_exits_4(our_registry: str, model_layout: Path) -> None:
    write_identity_token(our_registry, "not-a-token")
    rc, _, err = run_cli("push", str(model_layout), f"{our_registry}/org/model:v1", "-q")
    assert rc == 4
    assert "identity token were refused" in err
