"""The client against our registry over HTTPS with a CA made at test time: `--ca-cert`,
`$SSL_CERT_FILE`, a `certs.d` directory, `--insecure`, the token flow with an https realm,
and the errors for an untrusted or unusable certificate."""

from __future__ import annotations

import json
import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.client.tls import CA_ENV, connection, tls_settings
from modelyard.errors import TLSConfigError
from modelyard.oci.layout import Layout
from modelyard.testing.certs import CertAuthority, make_ca, modelyard_registry_tls
from modelyard.testing.peers import write_docker_config, write_htpasswd

from .clienttools import run_cli


@pytest.fixture(autouse=True)
def _no_ambient_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", CA_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, pki: CertAuthority) -> Iterator[str]:
    root = tmp_path_factory.mktemp("tls-registry") / "root"
    with modelyard_registry_tls(root, pki) as (addr, _):
        yield addr


def pushed_digest(out: str) -> str:
    return str(json.loads(out)["digest"])


def test_push_and_pull_with_ca_cert(tls_registry, pki, model_layout, tmp_path):
    ref = f"{tls_registry}/org/ca-flag:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--ca-cert", str(pki.ca_cert), "--json")
    assert rc == 0, err
    back = tmp_path / "back"
    rc, _, err = run_cli("pull", ref, "-o", str(back), "-q", "--ca-cert", str(pki.ca_cert))
    assert rc == 0, err
    assert Layout.open(back).resolve("v1").digest == pushed_digest(out)


def test_file_pull_with_ca_cert(tls_registry, pki, model_layout, tmp_path):
    """`pull REF PATH` goes through the lazy reader's own client: it trusts --ca-cert too."""
    ref = f"{tls_registry}/org/files:v1"
    rc, _, err = run_cli("push", str(model_layout), ref, "--ca-cert", str(pki.ca_cert), "-q")
    assert rc == 0, err
    out = tmp_path / "files"
    rc, _, err = run_cli("pull", ref, "config.json", "-o", str(out), "--ca-cert", str(pki.ca_cert))
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32


def test_an_untrusted_certificate_is_refused(tls_registry, model_layout):
    ref = f"{tls_registry}/org/untrusted:v1"
    rc, _, err = run_cli("push", str(model_layout), ref, "--https", "-q")
    assert rc == 1
    assert "CERTIFICATE_VERIFY_FAILED" in err, err
    assert f"/etc/docker/certs.d/{tls_registry}/ca.crt" in err and "--ca-cert" in err
    # Loopback without a CA still means plain HTTP, which a TLS port does not answer.
    rc, _, err = run_cli("push", str(model_layout), ref, "-q")
    assert rc == 1 and "error:" in err


def test_ssl_cert_file_is_the_trust_store(tls_registry, pki, model_layout, tmp_path):
    ref = f"{tls_registry}/org/env:v1"
    env = {**os.environ, "SSL_CERT_FILE": str(pki.ca_cert)}
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "modelyard", "push", str(model_layout), ref, "--https", "-q"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_certs_d_directory_is_used_without_flags(tls_registry, pki, model_layout, tmp_path):
    certs = tmp_path / "xdg-config" / "containers" / "certs.d" / tls_registry
    certs.mkdir(parents=True)
    shutil.copy(pki.ca_cert, certs / "ca.crt")
    ref = f"{tls_registry}/org/certs-d:v1"
    rc, out, err = run_cli("push", str(model_layout), ref, "--json")
    assert rc == 0, err
    rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "back"), "-q")
    assert rc == 0, err
    assert Layout.open(tmp_path / "back").resolve("v1").digest == pushed_digest(out)


def test_client_certificate_from_certs_d(pki, model_layout, tmp_path):
    """A registry that wants client certificates (mutual TLS) gets the certs.d pair."""
    args = ("--tls-client-ca", str(pki.ca_cert))
    with modelyard_registry_tls(tmp_path / "root", pki, *args) as (addr, _):
        ref = f"{addr}/org/mtls:v1"
        rc, _, err = run_cli("push", str(model_layout), ref, "--ca-cert", str(pki.ca_cert), "-q")
        assert rc == 1 and "error:" in err  # no client certificate: the handshake fails
        certs = tmp_path / "xdg-config" / "containers" / "certs.d" / addr
        certs.mkdir(parents=True)
        shutil.copy(pki.ca_cert, certs / "ca.crt")
        shutil.copy(pki.client_cert, certs / "client.cert")
        shutil.copy(pki.client_key, certs / "client.key")
        rc, out, err = run_cli("push", str(model_layout), ref, "--json")
        assert rc == 0, err
        rc, _, err = run_cli("pull", ref, "-o", str(tmp_path / "back"), "-q")
        assert rc == 0, err
        assert Layout.open(tmp_path / "back").resolve("v1").digest == pushed_digest(out)


def test_insecure_skips_verification(tls_registry, model_layout):
    ref = f"{tls_registry}/org/insecure:v1"
    rc, _, err = run_cli("push", str(model_layout), ref, "--https", "--insecure", "-q")
    assert rc == 0, err


def test_an_unusable_ca_file_is_a_clear_error(tls_registry, model_layout, tmp_path):
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    ref = f"{tls_registry}/org/garbage:v1"
    rc, _, err = run_cli("push", str(model_layout), ref, "--ca-cert", str(garbage), "-q")
    assert rc == 1 and "cannot load CA certificates" in err, err


def test_token_flow_over_https(tmp_path, pki, model_layout):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    with modelyard_registry_tls(tmp_path / "root", pki, "--htpasswd", str(htpasswd)) as (addr, _):
        ref = f"{addr}/org/model:v1"
        rc, _, err = run_cli("push", str(model_layout), ref, "--ca-cert", str(pki.ca_cert), "-q")
        assert rc == 4 and "no credentials" in err
        write_docker_config("bob", "hunter2", addr)
        rc, out, err = run_cli(
            "push", str(model_layout), ref, "--ca-cert", str(pki.ca_cert), "--json"
        )
        assert rc == 0, err
        rc, _, err = run_cli(
            "pull", ref, "-o", str(tmp_path / "back"), "-q", "--ca-cert", str(pki.ca_cert)
        )
        assert rc == 0, err
        assert Layout.open(tmp_path / "back").resolve("v1").digest == pushed_digest(out)


# The rules, without a server.


def test_scheme_and_trust_rules(tmp_path, pki, monkeypatch):
    assert connection("localhost:5000") == ("http://localhost:5000", True)
    assert connection("127.0.0.1:5000", insecure=True) == ("http://127.0.0.1:5000", True)
    assert connection("ghcr.io") == ("https://ghcr.io", True)
    assert connection("ghcr.io", insecure=True) == ("https://ghcr.io", False)
    assert connection("reg.example", plain_http=True) == ("http://reg.example", True)
    url, verify = connection("127.0.0.1:5000", ca_cert=pki.ca_cert)
    assert url == "https://127.0.0.1:5000" and isinstance(verify, ssl.SSLContext)
    assert connection("127.0.0.1:5000", plain_http=True, ca_cert=pki.ca_cert)[0].startswith(
        "http://"
    )
    monkeypatch.setenv(CA_ENV, str(pki.ca_cert))
    assert tls_settings("ghcr.io").ca_files == (pki.ca_cert,)
    with pytest.raises(TLSConfigError, match="does not exist"):
        tls_settings("ghcr.io", ca_cert=tmp_path / "missing.crt")


def test_certs_d_with_a_client_certificate(tmp_path, pki, monkeypatch):
    etc = tmp_path / "etc-docker-certs.d"
    directory = etc / "reg.example:5000"
    directory.mkdir(parents=True)
    shutil.copy(pki.ca_cert, directory / "ca.crt")
    shutil.copy(pki.client_cert, directory / "client.cert")
    shutil.copy(pki.client_key, directory / "client.key")
    monkeypatch.setattr("modelyard.client.tls.certs_d_roots", lambda: [etc])
    settings = tls_settings("reg.example:5000")
    assert settings.ca_files == (directory / "ca.crt",)
    assert settings.client_cert == (directory / "client.cert", directory / "client.key")
    assert isinstance(settings.verify(), ssl.SSLContext)
    assert tls_settings("other.example:5000").ca_files == ()


def test_a_refused_certificate_is_not_retried():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: self-signed")
        except ssl.SSLCertVerificationError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    from modelyard.client import RegistryClient
    from modelyard.errors import RegistryUnreachable

    with (
        RegistryClient(
            "reg.example", transport=httpx.MockTransport(handler), retries=3, backoff=0.0
        ) as client,
        pytest.raises(RegistryUnreachable, match="certificate verify failed"),
    ):
        client.ping()
    assert calls == ["/v2/"]
