"""htpasswd users, bearer tokens from the registry's own `/token`, anonymous pull, and the
per-repository policy; plus skopeo through the token flow on the real server."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.registry.app import create_app
from modelyard.registry.auth import AuthConfigError
from modelyard.testing.peers import require, run

from .conftest import serving
from .regtools import files_under, push_image, sha256


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    # What `htpasswd -B` writes ($2y$), plus a {SHA} entry.
    alice = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    bob_sha = base64.b64encode(hashlib.sha1(b"bob-pw").digest()).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{alice}\nbob:{{SHA}}{bob_sha}\n")
    return path


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[allow]]\nusers = ["alice"]\nrepositories = ["org/*"]\nactions = ["*"]\n\n'
        '[[allow]]\nusers = ["*"]\nrepositories = ["org/*", "public/*"]\nactions = ["pull"]\n'
    )
    return path


def make(tmp_path: Path, **kwargs: object) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path / "root", **kwargs), base_url="http://reg") as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def locked(tmp_path: Path, htpasswd: Path) -> Iterator[TestClient]:
    yield from make(tmp_path, htpasswd=htpasswd)


def code(r: httpx.Response) -> str:
    return r.json()["errors"][0]["code"]


def test_unauthenticated_requests_get_a_challenge(locked: TestClient, tmp_path: Path) -> None:
    r = locked.get("/v2/")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="http://reg/token",service="modelyard"')
    r = locked.post("/v2/org/m/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    assert 'scope="repository:org/m:pull,push"' in r.headers["WWW-Authenticate"]
    r = locked.get("/v2/org/m/manifests/v1")
    assert r.status_code == 401
    assert 'scope="repository:org/m:pull"' in r.headers["WWW-Authenticate"]
    assert not files_under(tmp_path / "root")


def test_basic_auth(locked: TestClient) -> None:
    assert locked.get("/v2/", headers=basic("alice", "wrong")).status_code == 401
    assert locked.get("/v2/", headers=basic("nobody", "x")).status_code == 401
    assert locked.get("/v2/", headers=basic("alice", "alice-pw")).status_code == 200
    assert locked.get("/v2/", headers=basic("bob", "bob-pw")).status_code == 200
    locked.headers.update(basic("alice", "alice-pw"))
    digest = push_image(locked, "org/m", "v1")
    assert locked.get(f"/v2/org/m/manifests/{digest}").status_code == 200
    assert locked.get("/v2/_catalog").json() == {"repositories": ["org/m"]}


def test_token_flow_and_scopes(locked: TestClient) -> None:
    r = locked.get(
        "/token",
        params={"service": "modelyard", "scope": "repository:org/m:pull,push"},
        headers=basic("alice", "alice-pw"),
    )
    assert r.status_code == 200
    token = r.json()["token"]
    assert r.json()["access_token"] == token
    locked.headers["Authorization"] = f"Bearer {token}"
    push_image(locked, "org/m", "v1")
    # The token covers org/m only.
    r = locked.get("/v2/org/other/tags/list")
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    pull_only = locked.get(
        "/token", params={"scope": "repository:org/m:pull"}, headers=basic("alice", "alice-pw")
    ).json()["token"]
    locked.headers["Authorization"] = f"Bearer {pull_only}"
    assert locked.get("/v2/org/m/manifests/v1").status_code == 200
    r = locked.post("/v2/org/m/blobs/uploads/")
    assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
    locked.headers["Authorization"] = "Bearer forged." + token.split(".")[1]
    assert locked.get("/v2/org/m/manifests/v1").status_code == 401
    r = locked.get(
        "/token", params={"scope": "repository:org/m:pull"}, headers=basic("alice", "bad")
    )
    assert r.status_code == 401
    catalog = locked.get(
        "/token", params={"scope": "registry:catalog:*"}, headers=basic("alice", "alice-pw")
    ).json()["token"]
    locked.headers["Authorization"] = f"Bearer {catalog}"
    assert locked.get("/v2/_catalog").json() == {"repositories": ["org/m"]}
    anonymous = locked.get("/token", params={"scope": "registry:catalog:*"}).json()["token"]
    locked.headers["Authorization"] = f"Bearer {anonymous}"
    assert locked.get("/v2/_catalog").status_code == 401


def test_anonymous_pull(tmp_path: Path, htpasswd: Path) -> None:
    for c in make(tmp_path, htpasswd=htpasswd, anonymous_pull=True):
        c.headers.update(basic("alice", "alice-pw"))
        push_image(c, "org/m", "v1")
        del c.headers["Authorization"]
        assert c.get("/v2/org/m/manifests/v1").status_code == 200
        r = c.post("/v2/org/m/blobs/uploads/")
        assert r.status_code == 401 and code(r) == "UNAUTHORIZED"
        # An anonymous token carries pull only.
        token = c.get("/token", params={"scope": "repository:org/m:pull,push"}).json()["token"]
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.get("/v2/org/m/tags/list").status_code == 200
        assert c.post("/v2/org/m/blobs/uploads/").status_code == 401


def test_policy(tmp_path: Path, htpasswd: Path, policy: Path) -> None:
    for c in make(tmp_path, htpasswd=htpasswd, policy=policy):
        alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
        c.headers.update(alice)
        push_image(c, "org/m", "v1")
        r = c.post("/v2/private/x/blobs/uploads/")
        assert r.status_code == 403 and code(r) == "DENIED"
        c.headers.update(bob)
        assert c.get("/v2/org/m/manifests/v1").status_code == 200
        r = c.post("/v2/org/m/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x")
        assert r.status_code == 403 and code(r) == "DENIED"
        r = c.delete("/v2/org/m/manifests/v1")
        assert r.status_code == 403
        token = c.get("/token", params={"scope": "repository:org/m:pull,push,delete"}).json()
        c.headers["Authorization"] = f"Bearer {token['token']}"
        r = c.post("/v2/org/m/blobs/uploads/")
        assert r.status_code == 403 and code(r) == "DENIED"
        assert c.get("/v2/org/m/manifests/v1").status_code == 200
        # Mounting needs pull on the source: bob cannot mount from a repository he cannot read.
        c.headers.update(alice)
        assert c.get("/v2/org/m/tags/list").status_code == 200


def test_mount_needs_pull_on_source(tmp_path: Path, htpasswd: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[[allow]]\nusers = ["alice"]\nrepositories = ["*"]\nactions = ["*"]\n\n'
        '[[allow]]\nusers = ["bob"]\nrepositories = ["bob/*"]\nactions = ["pull", "push"]\n'
    )
    for c in make(tmp_path, htpasswd=htpasswd, policy=policy):
        c.headers.update(basic("alice", "alice-pw"))
        data = b"alice's private layer"
        c.post("/v2/alice/secret/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        c.headers.update(basic("bob", "bob-pw"))
        r = c.post(
            "/v2/bob/x/blobs/uploads/", params={"mount": sha256(data), "from": "alice/secret"}
        )
        assert r.status_code == 202  # a fresh upload session, not a mount
        assert c.get(f"/v2/bob/x/blobs/{sha256(data)}").status_code == 404


def test_bad_config_files(tmp_path: Path) -> None:
    bad = tmp_path / "htpasswd"
    bad.write_text("carol:$apr1$abc$def\n")
    with pytest.raises(AuthConfigError, match="bcrypt"):
        create_app(tmp_path / "root", htpasswd=bad)
    policy = tmp_path / "p.toml"
    policy.write_text('[[allow]]\nusers = ["a"]\nrepositories = ["*"]\nactions = ["fly"]\n')
    good = tmp_path / "ok"
    good.write_text("a:{SHA}x\n")
    with pytest.raises(AuthConfigError, match="actions"):
        create_app(tmp_path / "root", htpasswd=good, policy=policy)


def test_skopeo_through_the_token_flow(tmp_path: Path, htpasswd: Path, model_layout: Path) -> None:
    with serving(tmp_path / "srv", "--htpasswd", str(htpasswd), "--anonymous-pull") as srv:
        ref = f"docker://{srv.addr}/org/model:v1"
        skopeo = require("skopeo")
        denied = subprocess.run(
            [skopeo, "copy", "--all", "--dest-tls-verify=false", f"oci:{model_layout}:v1", ref],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert denied.returncode != 0
        assert "unauthorized" in denied.stderr.lower() or "401" in denied.stderr
        run(
            [
                skopeo,
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:alice-pw",
                f"oci:{model_layout}:v1",
                ref,
            ],
            timeout=120,
        )
        # Anonymous pull through an anonymous token.
        out = run([skopeo, "inspect", "--tls-verify=false", "--raw", ref], timeout=60).stdout
        assert "manifests" in out


def test_oauth2_password_grant(locked: TestClient) -> None:
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "alice-pw",
        "scope": "repository:org/m:pull,push",
        "service": "modelyard",
    }
    r = locked.post("/token", data=form)
    assert r.status_code == 200
    locked.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    push_image(locked, "org/m", "v1")
    del locked.headers["Authorization"]
    assert locked.post("/token", data={**form, "password": "wrong"}).status_code == 401
    r = locked.post("/token", data={**form, "grant_type": "client_credentials"})
    assert r.status_code == 400 and code(r) == "UNSUPPORTED"
