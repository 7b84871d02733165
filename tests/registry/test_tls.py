"""The registry over HTTPS (`--tls-cert/--tls-key`) with a CA made at test time: curl, skopeo
in and out with its cert dirs, the token flow with an https realm, and bad TLS files."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from modelyard.testing.certs import CertAuthority, make_ca, modelyard_registry_tls
from modelyard.testing.peers import require, run, write_htpasswd


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return make_ca(tmp_path / "pki")


def cert_dir(ca: CertAuthority, where: Path) -> Path:
    """A directory as skopeo's --*-cert-dir and /etc/docker/certs.d/HOST:PORT/ expect."""
    where.mkdir(parents=True)
    shutil.copy(ca.ca_cert, where / "ca.crt")
    return where


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_skopeo_and_curl_over_https(
    tmp_path: Path, ca: CertAuthority, model_layout: Path, server: str
) -> None:
    certs = cert_dir(ca, tmp_path / "certs")
    with modelyard_registry_tls(tmp_path / "root", ca, "--server", server) as (addr, _):
        out = run(["curl", "-sS", "--cacert", str(ca.ca_cert), f"https://{addr}/v2/"]).stdout
        assert out == "{}"
        untrusted = subprocess.run(
            ["curl", "-sS", f"https://{addr}/v2/"], capture_output=True, text=True, timeout=30
        )
        assert untrusted.returncode == 60, untrusted.stderr  # peer certificate not trusted
        plain = subprocess.run(
            ["curl", "-sS", f"http://{addr}/v2/"], capture_output=True, text=True, timeout=30
        )
        assert plain.returncode != 0 or plain.stdout != "{}"

        ref = f"docker://{addr}/org/model:v1"
        skopeo = require("skopeo")
        refused = subprocess.run(
            [skopeo, "copy", "--all", f"oci:{model_layout}:v1", ref],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0
        assert "certificate" in refused.stderr, refused.stderr
        run([skopeo, "copy", "--all", "--preserve-digests", "--dest-cert-dir", str(certs),
             f"oci:{model_layout}:v1", ref])  # fmt: skip
        back = tmp_path / "back"
        run([skopeo, "copy", "--all", "--src-cert-dir", str(certs), ref, f"oci:{back}:v1"])
        want = json.loads((model_layout / "index.json").read_text())["manifests"][0]["digest"]
        got = json.loads((back / "index.json").read_text())["manifests"][0]["digest"]
        assert got == want
        inspect = run([skopeo, "inspect", "--cert-dir", str(certs), "--raw", ref]).stdout
        assert json.loads(inspect)["schemaVersion"] == 2


def test_token_realm_is_https_and_skopeo_signs_in(
    tmp_path: Path, ca: CertAuthority, model_layout: Path
) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "alice-pw")
    certs = cert_dir(ca, tmp_path / "certs")
    with modelyard_registry_tls(tmp_path / "root", ca, "--htpasswd", str(htpasswd)) as (addr, _):
        r = httpx.get(f"https://{addr}/v2/", verify=ssl.create_default_context(cafile=ca.ca_cert))
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith(
            f'Bearer realm="https://{addr}/token",service="modelyard"'
        )
        ref = f"docker://{addr}/org/model:v1"
        run([require("skopeo"), "copy", "--all", "--dest-cert-dir", str(certs),
             "--dest-creds", "alice:alice-pw", f"oci:{model_layout}:v1", ref])  # fmt: skip
        out = run([require("skopeo"), "inspect", "--cert-dir", str(certs),
                   "--creds", "alice:alice-pw", "--raw", ref]).stdout  # fmt: skip
        assert "manifests" in out


def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "registry", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unusable_tls_files_fail_before_serving(tmp_path: Path, ca: CertAuthority) -> None:
    root = str(tmp_path / "root")
    mismatched = serve_cli("--root", root, "--tls-cert", str(ca.ca_cert),
                           "--tls-key", str(ca.server_key))  # fmt: skip
    assert mismatched.returncode == 1
    assert "KEY_VALUES_MISMATCH" in mismatched.stderr or "match" in mismatched.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    bad = serve_cli("--root", root, "--tls-cert", str(garbage), "--tls-key", str(ca.server_key))
    assert bad.returncode == 1 and "cannot use TLS certificate" in bad.stderr
    half = serve_cli("--root", root, "--tls-cert", str(ca.server_cert))
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        serialization.load_pem_private_key(ca.server_key.read_bytes(), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"x"),
        )
    )
    enc = serve_cli("--root", root, "--tls-cert", str(ca.server_cert),
                    "--tls-key", str(encrypted))  # fmt: skip
    assert enc.returncode == 1 and "encrypted" in enc.stderr
    assert not Path(root).exists()


def test_auth_over_plain_http_off_loopback_warns(
    tmp_path: Path, ca: CertAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision only: `run` is replaced, nothing binds 0.0.0.0."""
    import modelyard.registry.server as server_module
    from modelyard.cli.registry import registry

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(server_module, "run", lambda *a, **kw: calls.append(kw))
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    root = str(tmp_path / "root")
    runner = CliRunner()
    base = ["serve", "--root", root, "--htpasswd", str(htpasswd)]

    clear = runner.invoke(registry, [*base, "--addr", "0.0.0.0:5000"])
    assert clear.exit_code == 0, clear.output
    assert "clear text" in clear.stderr and "--tls-cert" in clear.stderr

    tls = ["--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key)]
    secure = runner.invoke(registry, [*base, "--addr", "0.0.0.0:5000", *tls])
    assert secure.exit_code == 0, secure.output
    assert "clear text" not in secure.stderr
    assert "on https://0.0.0.0:5000" in secure.stderr
    assert calls[-1]["tls_cert"] == str(ca.server_cert)

    loopback = runner.invoke(registry, [*base, "--addr", "127.0.0.1:5000"])
    assert "clear text" not in loopback.stderr


def test_realm_behind_a_tls_terminating_proxy(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from modelyard.registry.app import create_app

    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    app = create_app(tmp_path / "root", htpasswd=htpasswd)
    with TestClient(app, base_url="http://internal:5000") as c:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "reg.example"}
        r = c.get("/v2/", headers=proxied)
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://reg.example/token"')
        # A header that would break the challenge's syntax is ignored.
        r = c.get("/v2/", headers={"X-Forwarded-Host": 'evil" x="', "X-Forwarded-Proto": "ftp"})
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="http://internal:5000/token"')
    fixed = create_app(tmp_path / "root", htpasswd=htpasswd, realm="https://auth.example/token")
    with TestClient(fixed, base_url="http://internal:5000") as c:
        r = c.get("/v2/org/m/tags/list")
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://auth.example/token"')


def test_token_realm_option(tmp_path: Path) -> None:
    from modelyard.testing.peers import modelyard_registry

    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    realm = "https://auth.example/token"
    args = ("--htpasswd", str(htpasswd), "--token-realm", realm)
    with modelyard_registry(tmp_path / "root", *args) as (addr, _):
        r = httpx.get(f"http://{addr}/v2/")
        assert r.headers["WWW-Authenticate"].startswith(f'Bearer realm="{realm}"')
    bad = serve_cli("--root", str(tmp_path / "r2"), "--token-realm", "auth.example/token")
    assert bad.returncode == 2 and "--token-realm" in bad.stderr


def test_buildah_pull_and_push_over_https(
    tmp_path: Path, ca: CertAuthority, model_layout: Path
) -> None:
    from modelyard.testing.peers import buildah_env

    certs = cert_dir(ca, tmp_path / "certs")
    buildah = buildah_env(tmp_path / "buildah")
    with modelyard_registry_tls(tmp_path / "root", ca) as (addr, _):
        run([require("skopeo"), "copy", "--all", "--dest-cert-dir", str(certs),
             f"oci:{model_layout}:v1", f"docker://{addr}/org/model:v1"])  # fmt: skip
        run([*buildah, "pull", "--cert-dir", str(certs), f"docker://{addr}/org/model:v1"])
        run([*buildah, "push", "--cert-dir", str(certs), f"{addr}/org/model:v1",
             f"docker://{addr}/org/copy:v1"])  # fmt: skip
        r = httpx.get(
            f"https://{addr}/v2/org/copy/tags/list",
            verify=ssl.create_default_context(cafile=ca.ca_cert),
        )
        assert r.json()["tags"] == ["v1"]


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_mutual_tls(tmp_path: Path, ca: CertAuthority, model_layout: Path, server: str) -> None:
    """--tls-client-ca: only clients with a certificate of that CA get through the handshake."""
    certs = cert_dir(ca, tmp_path / "certs")
    with_client = cert_dir(ca, tmp_path / "certs-client")
    shutil.copy(ca.client_cert, with_client / "client.cert")
    shutil.copy(ca.client_key, with_client / "client.key")
    args = ("--tls-client-ca", str(ca.ca_cert), "--server", server)
    with modelyard_registry_tls(tmp_path / "root", ca, *args) as (addr, _):
        url = f"https://{addr}/v2/"
        curl = ["curl", "-sS", "--cacert", str(ca.ca_cert)]
        refused = subprocess.run([*curl, url], capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and refused.stdout != "{}"
        out = run([*curl, "--cert", str(ca.client_cert), "--key", str(ca.client_key), url])
        assert out.stdout == "{}"
        ref = f"docker://{addr}/org/model:v1"
        skopeo = require("skopeo")
        denied = subprocess.run(
            [skopeo, "copy", "--all", "--dest-cert-dir", str(certs),
             f"oci:{model_layout}:v1", ref],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert denied.returncode != 0
        run([skopeo, "copy", "--all", "--dest-cert-dir", str(with_client),
             f"oci:{model_layout}:v1", ref])  # fmt: skip
    half = serve_cli("--root", str(tmp_path / "r2"), "--tls-client-ca", str(ca.ca_cert))
    assert half.returncode == 2 and "--tls-client-ca needs --tls-cert" in half.stderr
