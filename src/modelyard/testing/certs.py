"""A throwaway certificate authority and server certificates for TLS tests, and our registry
served over HTTPS with them.

Made at test time with `cryptography` (EC P-256 keys, valid for a day), so that no key is
ever committed. The server certificate names `127.0.0.1`, `::1` and `localhost`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelyard.testing.peers import free_port, stop


@dataclass(frozen=True)
class CertAuthority:
    """PEM files: `ca_cert` signs `server_cert` and `client_cert`; keys are unencrypted."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    #: For mutual TLS, named as Docker's certs.d wants them (`client.cert`, `client.key`).
    client_cert: Path
    client_key: Path


def make_ca(directory: Path, name: str = "modelyard test CA") -> CertAuthority:
    """Write `ca.crt`, `server.crt` (leaf then CA: a full chain), `server.key`, and a client
    certificate `client/client.cert` with `client/client.key`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client, client_key = leaf("modelyard test client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    pem = serialization.Encoding.PEM

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
        path.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        path.chmod(0o600)
        return path

    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    cert_path = directory / "server.crt"
    cert_path.write_bytes(server.public_bytes(pem) + ca_cert.public_bytes(pem))
    (directory / "client").mkdir(exist_ok=True)
    client_path = directory / "client" / "client.cert"
    client_path.write_bytes(client.public_bytes(pem))
    return CertAuthority(
        ca_path,
        cert_path,
        write_key(directory / "server.key", server_key),
        client_path,
        write_key(directory / "client" / "client.key", client_key),
    )


@contextlib.contextmanager
def modelyard_registry_tls(
    root: Path, ca: CertAuthority, *args: str, timeout: float = 30
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`modelyard registry serve --tls-cert --tls-key ARGS` on a free port of 127.0.0.1;
    yield `host:port` and the process once it answers over HTTPS, then stop it. Output goes
    to `ROOT.log`."""
    addr = f"127.0.0.1:{free_port()}"
    log_path = root.parent / f"{root.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", "registry", "serve", "--root", str(root),
             "--addr", addr, "--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key),
             *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        verify = ssl.create_default_context(cafile=ca.ca_cert)
        verify.load_cert_chain(ca.client_cert, ca.client_key)  # in case the server asks
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"registry exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            try:
                httpx.get(f"https://{addr}/v2/", verify=verify, timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield addr, proc
    finally:
        stop(proc)
