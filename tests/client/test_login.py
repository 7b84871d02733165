"""`modelyard login` / `logout` against docker-registry (Basic auth) and our registry (bearer
tokens); the file they write is read by our push/pull and by skopeo. A credential helper is a
stand-in script on PATH speaking the docker-credential protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.client.login import DOCKER_HUB_KEY, registry_of, server_key
from modelyard.testing.peers import modelyard_registry, run, write_htpasswd

from .clienttools import run_cli


def login(server: str, user: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "login",
            server,
            "-u",
            user,
            "--password-stdin",
            *extra,
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


def docker_config() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


@pytest.fixture
def locked_registry(docker_registry_factory, tmp_path):
    return docker_registry_factory(write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret"))


def test_server_keys_are_dockers() -> None:
    for name in (None, "", "docker.io", "index.docker.io", "https://index.docker.io/v1/"):
        assert server_key(name) == DOCKER_HUB_KEY
    assert registry_of(DOCKER_HUB_KEY) == "docker.io"
    assert server_key("localhost:5000") == "localhost:5000"
    assert server_key("https://reg.example:8443/v2/") == "reg.example:8443"


def test_login_push_skopeo_logout_against_docker_registry(
    locked_registry: str, model_layout: Path, tmp_path: Path
) -> None:
    config = docker_config()
    other = {"auth": "b3RoZXI6cHc="}
    config.write_text(json.dumps({"auths": {"other.example": other}, "psFormat": "table"}))
    ref = f"{locked_registry}/org/model:v1"

    # Wrong password: exit 4, the file is untouched.
    before = config.read_bytes()
    bad = login(locked_registry, "alice", "wrong")
    assert bad.returncode == 4, bad.stderr
    assert "refused" in bad.stderr and "Traceback" not in bad.stderr
    assert config.read_bytes() == before

    ok = login(locked_registry, "alice", "s3cret")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "Login Succeeded"
    doc = json.loads(config.read_text())
    assert doc["psFormat"] == "table" and doc["auths"]["other.example"] == other
    assert doc["auths"][locked_registry] == {"auth": "YWxpY2U6czNjcmV0"}  # alice:s3cret
    assert config.stat().st_mode & 0o777 == 0o600

    rc, _, err = run_cli("push", str(model_layout), ref, "-q")
    assert rc == 0, err
    # skopeo reads the same file.
    out = run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile", str(config),
               f"docker://{ref}"]).stdout  # fmt: skip
    assert json.loads(out)["schemaVersion"] == 2

    out = run_cli("logout", locked_registry)
    assert out[0] == 0 and "Removing" in out[1]
    assert locked_registry not in json.loads(config.read_text())["auths"]
    rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "o"), "-q")
    assert rc == 4 and "no credentials" in err
    again = run_cli("logout", locked_registry)
    assert again[0] == 0 and "Not logged in" in again[1]


def test_login_to_our_registry_through_its_token_service(
    tmp_path: Path, model_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    auth_file = tmp_path / "containers-auth.json"  # podman's file: wins when set
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    with modelyard_registry(tmp_path / "root", "--htpasswd", str(htpasswd)) as (addr, _):
        assert login(addr, "bob", "nope").returncode == 4
        assert not auth_file.exists()
        ok = login(addr, "bob", "hunter2")
        assert ok.returncode == 0, ok.stderr
        assert addr in json.loads(auth_file.read_text())["auths"]
        assert not docker_config().exists()
        rc, _, err = run_cli("push", str(model_layout), f"{addr}/org/model:v1", "-q")
        assert rc == 0, err


HELPER = """#!{python}
import json, sys
from pathlib import Path
store = Path({store!r})
data = json.loads(store.read_text()) if store.exists() else {{}}
action = sys.argv[1]
payload = sys.stdin.read()
with open(str(store) + ".log", "a") as log:
    log.write(action + "\\n")
if action == "store":
    entry = json.loads(payload)
    data[entry["ServerURL"]] = entry
elif action == "get":
    if payload.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(data[payload.strip()]))
elif action == "erase":
    if data.pop(payload.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
store.write_text(json.dumps(data))
"""


def test_login_stores_through_the_credential_helper(
    locked_registry: str, model_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "keychain.json"
    helper = bin_dir / "docker-credential-test"
    helper.write_text(HELPER.format(python=sys.executable, store=str(store)))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    docker_config().write_text(json.dumps({"credsStore": "test"}))

    ok = login(locked_registry, "alice", "s3cret")
    assert ok.returncode == 0, ok.stderr
    kept = json.loads(store.read_text())[locked_registry]
    assert kept == {"ServerURL": locked_registry, "Username": "alice", "Secret": "s3cret"}
    doc = json.loads(docker_config().read_text())
    assert doc["credsStore"] == "test" and doc["auths"][locked_registry] == {}  # no secret here
    rc, _, err = run_cli("push", str(model_layout), f"{locked_registry}/org/model:v1", "-q")
    assert rc == 0, err  # read back through `get`

    assert run_cli("logout", locked_registry)[0] == 0
    assert locked_registry not in json.loads(store.read_text())
    assert "erase" in Path(str(store) + ".log").read_text().split()
