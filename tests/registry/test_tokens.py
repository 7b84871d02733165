"""Bearer tokens outlive the process that issued them (the signing key persists under the
root), foreign tokens are refused with the spec's error, and refresh (identity) tokens."""

from __future__ import annotations

import base64
import json
import multiprocessing
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.registry.app import create_app
from modelyard.registry.auth import AuthConfigError, Authorizer, load_signing_key
from modelyard.registry.errcodes import RegistryError

from .conftest import serving
from .regtools import files_under, push_image

SCOPE = "repository:org/m:pull,push"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_users(path: Path, **users: str) -> Path:
    lines = [
        f"{u}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for u, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return write_users(tmp_path / "htpasswd", alice="alice-pw")


@pytest.fixture
def locked(tmp_path: Path, htpasswd: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path / "root", htpasswd=htpasswd), base_url="http://reg") as c:
        yield c


def assert_unauthorized(r: httpx.Response) -> None:
    """401 with the distribution spec's error body and a challenge to follow."""
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert isinstance(body["errors"][0]["message"], str)
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="')


def test_a_token_survives_a_restart(tmp_path: Path, htpasswd: Path) -> None:
    with serving(tmp_path / "root", "--htpasswd", str(htpasswd)) as srv:
        alice = basic("alice", "alice-pw")
        r = httpx.get(f"{srv.url}/token", params={"scope": SCOPE}, headers=alice)
        token = r.json()["token"]
        with httpx.Client(base_url=srv.url, headers=bearer(token)) as c:
            push_image(c, "org/m", "v1")
        srv.kill()
        srv.restart()
        with httpx.Client(base_url=srv.url, headers=bearer(token)) as c:
            assert c.get("/v2/").status_code == 200
            assert c.get("/v2/org/m/manifests/v1").status_code == 200
            push_image(c, "org/m", "v2", payload=b"second layer")
            assert_unauthorized(c.get("/v2/org/other/manifests/v1"))  # not in its scope
    key = tmp_path / "root" / "auth" / "token.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32


def test_a_token_signed_with_another_key_is_refused(tmp_path: Path, htpasswd: Path) -> None:
    other = Authorizer(htpasswd, key_file=tmp_path / "elsewhere" / "token.key")
    foreign = other.issue_token("Basic " + base64.b64encode(b"alice:alice-pw").decode(), [SCOPE])
    with TestClient(create_app(tmp_path / "root", htpasswd=htpasswd), base_url="http://reg") as c:
        r = c.get("/v2/org/m/manifests/v1", headers=bearer(str(foreign["token"])))
        assert_unauthorized(r)
        assert "invalid token" in r.json()["errors"][0]["message"]
        r = c.post("/v2/org/m/blobs/uploads/", headers=bearer(str(foreign["token"])))
        assert_unauthorized(r)
        assert not (tmp_path / "root" / "repositories").exists()
        # Tampering with the payload of a genuine token breaks its signature.
        good = c.get("/token", params={"scope": SCOPE}, headers=basic("alice", "alice-pw"))
        body, _, sig = good.json()["token"].partition(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["access"][0]["name"] = "org/other"
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        assert_unauthorized(c.get("/v2/org/other/tags/list", headers=bearer(f"{forged}.{sig}")))
        assert_unauthorized(c.get("/v2/", headers=bearer("garbage")))


def test_deleting_the_key_revokes_tokens(tmp_path: Path, htpasswd: Path) -> None:
    first = Authorizer(htpasswd, key_file=tmp_path / "token.key")
    token = str(first.issue_token(None, [])["token"])
    assert Authorizer(htpasswd, key_file=tmp_path / "token.key").identify(f"Bearer {token}")
    (tmp_path / "token.key").unlink()
    with pytest.raises(RegistryError, match="invalid token"):
        Authorizer(htpasswd, key_file=tmp_path / "token.key").identify(f"Bearer {token}")


def test_an_open_registry_writes_no_key(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "root"), base_url="http://reg") as c:
        push_image(c, "org/m", "v1")
    assert not any(f.startswith("auth/") for f in files_under(tmp_path / "root"))


def _load(path: str) -> bytes:
    return load_signing_key(Path(path))


def test_concurrent_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "token.key"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_load, [str(path)] * 16)
    assert len(set(keys)) == 1 and keys[0] == path.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.key"]  # no temp left


def test_a_broken_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_bytes(b"short")
    with pytest.raises(AuthConfigError, match="delete it"):
        load_signing_key(path)


# Refresh tokens (what Docker stores as `identitytoken`).


def _offline(c: TestClient) -> str:
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw",
            "access_type": "offline", "scope": SCOPE, "service": "modelyard",
            "client_id": "test"}  # fmt: skip
    r = c.post("/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["refresh_token"])


def test_refresh_token_grant(locked: TestClient) -> None:
    refresh = _offline(locked)
    r = locked.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh, "scope": SCOPE}
    )
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()
    push_image(_with(locked, r.json()["access_token"]), "org/m", "v1")
    # GET with offline_token=true (docker login's form) also hands one out.
    r = locked.get("/token", params={"offline_token": "true"}, headers=basic("alice", "alice-pw"))
    assert r.json()["refresh_token"]
    # Without offline access, no refresh token.
    r = locked.get("/token", params={"scope": SCOPE}, headers=basic("alice", "alice-pw"))
    assert "refresh_token" not in r.json()


def _with(c: TestClient, token: str) -> TestClient:
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def test_refresh_tokens_and_access_tokens_are_not_interchangeable(locked: TestClient) -> None:
    refresh = _offline(locked)
    assert_unauthorized(locked.get("/v2/", headers=bearer(refresh)))
    access = locked.get("/token", params={"scope": SCOPE}, headers=basic("alice", "alice-pw"))
    r = locked.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": access.json()["token"]},
    )
    assert_unauthorized(r)
    r = locked.post("/token", data={"grant_type": "refresh_token", "refresh_token": "nope"})
    assert_unauthorized(r)


def test_a_password_change_revokes_refresh_tokens(tmp_path: Path, htpasswd: Path) -> None:
    with TestClient(create_app(tmp_path / "root", htpasswd=htpasswd), base_url="http://r") as c:
        refresh = _offline(c)
    write_users(htpasswd, alice="new-pw")
    with TestClient(create_app(tmp_path / "root", htpasswd=htpasswd), base_url="http://r") as c:
        r = c.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert_unauthorized(r)
    write_users(htpasswd, bob="bob-pw")
    with TestClient(create_app(tmp_path / "root", htpasswd=htpasswd), base_url="http://r") as c:
        r = c.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert_unauthorized(r)


def test_skopeo_signs_in_with_an_identity_token(
    tmp_path: Path, htpasswd: Path, model_layout: Path
) -> None:
    """containers/image trades `identitytoken` with the refresh-token grant, as Docker does."""
    from modelyard.testing.peers import require, run

    with serving(tmp_path / "root", "--htpasswd", str(htpasswd)) as srv:
        form = {"grant_type": "password", "username": "alice", "password": "alice-pw",
                "access_type": "offline", "client_id": "test"}  # fmt: skip
        refresh = httpx.post(f"{srv.url}/token", data=form).json()["refresh_token"]
        auth_file = tmp_path / "identity-auth.json"
        entry = {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": refresh}
        auth_file.write_text(json.dumps({"auths": {srv.addr: entry}}))
        ref = f"docker://{srv.addr}/org/m:v1"
        run([require("skopeo"), "copy", "--all", "--dest-tls-verify=false",
             "--dest-authfile", str(auth_file), f"oci:{model_layout}:v1", ref])  # fmt: skip
        raw = run([require("skopeo"), "inspect", "--tls-verify=false", "--authfile",
                   str(auth_file), "--raw", ref]).stdout  # fmt: skip
        assert json.loads(raw)["schemaVersion"] == 2
        entry["identitytoken"] = "forged"
        auth_file.write_text(json.dumps({"auths": {srv.addr: entry}}))
        refused = subprocess.run(
            [require("skopeo"), "inspect", "--tls-verify=false", "--authfile", str(auth_file),
             "--raw", ref],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0
