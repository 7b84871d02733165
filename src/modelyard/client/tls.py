"""Which scheme a registry speaks and which certificates verify it.

Trust, in order:

1. `insecure`: HTTPS without verifying anything.
2. The default bundle: `$SSL_CERT_FILE` or `$SSL_CERT_DIR` if set (as OpenSSL and httpx read
   them), else certifi's.
3. Plus, added to it: an explicit CA file (`ca_cert=`, or `$MODELYARD_CA_CERT`, which
   `modelyard push/pull --ca-cert` set), and the `*.crt` files of the registry's `certs.d`
   directory, the convention of Docker and the containers tools:
   `/etc/docker/certs.d/HOST:PORT/ca.crt`, also under `/etc/containers/certs.d` and
   `$XDG_CONFIG_HOME/containers/certs.d`. A `client.cert` + `client.key` pair there is
   presented as a client certificate.

Scheme: loopback registries speak plain HTTP by default, as Docker assumes, unless a CA is
configured for them (then HTTPS); every other registry HTTPS. `plain_http` overrides both.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from modelyard.client.transport import base_url, is_local
from modelyard.errors import TLSConfigError

CA_ENV = "MODELYARD_CA_CERT"


def certs_d_roots() -> list[Path]:
    """Where per-registry certificate directories are looked for, first match wins."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path(config) / "containers" / "certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    ]


@dataclass(frozen=True)
class TLSSettings:
    """What `httpx.Client(verify=...)` gets for one registry, and where it came from."""

    ca_files: tuple[Path, ...] = ()
    client_cert: tuple[Path, Path] | None = None
    insecure: bool = False

    @property
    def custom(self) -> bool:
        return bool(self.ca_files or self.client_cert)

    def verify(self) -> ssl.SSLContext | bool:
        """`False`, `True` (httpx's default trust) or a context with the extra CAs.

        Raises: TLSConfigError if a CA file or client certificate cannot be loaded.
        """
        if self.insecure:
            return False
        if not self.custom:
            return True
        import httpx

        context = httpx.create_ssl_context()  # the default bundle, SSL_CERT_FILE included
        for ca in self.ca_files:
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise TLSConfigError(f"cannot load CA certificates from {ca}: {exc}") from exc
        if self.client_cert is not None:
            cert, key = self.client_cert
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise TLSConfigError(f"cannot load client certificate {cert}: {exc}") from exc
        return context


def tls_settings(
    registry: str, ca_cert: str | Path | None = None, insecure: bool = False
) -> TLSSettings:
    """The trust settings for `registry` (`host[:port]`).

    Raises: TLSConfigError if the explicit CA file does not exist.
    """
    if insecure:
        return TLSSettings(insecure=True)
    files: list[Path] = []
    explicit = ca_cert if ca_cert is not None else os.environ.get(CA_ENV) or None
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise TLSConfigError(f"CA certificate file {path} does not exist")
        files.append(path)
    client_cert = None
    directory = _certs_dir(registry)
    if directory is not None:
        files.extend(sorted(directory.glob("*.crt")))
        cert, key = directory / "client.cert", directory / "client.key"
        if cert.is_file() and key.is_file():
            client_cert = (cert, key)
    return TLSSettings(tuple(files), client_cert)


def _certs_dir(registry: str) -> Path | None:
    for root in certs_d_roots():
        candidate = root / registry
        if candidate.is_dir():
            return candidate
    return None


def connection(
    registry: str,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_cert: str | Path | None = None,
) -> tuple[str, ssl.SSLContext | bool]:
    """`(base URL, httpx verify=)` for `registry`: see the module docstring for the rules.

    Raises: TLSConfigError for unusable certificate files.
    """
    settings = tls_settings(registry, ca_cert, insecure)
    if plain_http is None and is_local(registry) and settings.custom:
        plain_http = False  # a CA for a loopback registry means it speaks TLS
    url = base_url(registry, plain_http)
    return url, settings.verify() if url.startswith("https:") else True


def is_certificate_error(exc: BaseException) -> bool:
    """True when a connection failed because a certificate was refused: retrying is futile."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
