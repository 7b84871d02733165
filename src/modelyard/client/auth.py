"""Registry credentials and the two auth schemes registries use: Basic and Docker's bearer tokens.

Credentials come from the files Docker and the containers tools (skopeo, podman, buildah) write
on `login`, first match wins:

1. `$REGISTRY_AUTH_FILE`
2. `$XDG_RUNTIME_DIR/containers/auth.json`
3. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`

Each holds `{"auths": {"host[:port]": {"auth": base64("user:password")}}}` (or `username` and
`password` fields), or an `identitytoken`: an OAuth2 refresh token that `docker login` stores
for registries that hand one out (Azure ACR among others); credential helpers return one as
the user `<token>`. The token flow is Docker's: a 401 with
`WWW-Authenticate: Bearer realm="...",service="...",scope="..."` sends the client to the realm
for a token, cached per scope until it expires. The realm gets the password credentials as
Basic auth on a GET, or the identity token in a POST form
(`grant_type=refresh_token&refresh_token=...&service=...&scope=...&client_id=modelyard`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelyard.errors import AuthenticationError

DOCKER_HUB = "docker.io"
#: The key `docker login` writes for Docker Hub, and the other names its entries go by.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_KEYS = (DOCKER_HUB_KEY, "index.docker.io", "registry-1.docker.io")
#: Tokens are refreshed this many seconds before they expire.
_EXPIRY_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0
#: The user name credential helpers give for an identity token.
_TOKEN_USER = "<token>"
#: Sent as `client_id` in OAuth2 requests, as Docker sends "docker".
CLIENT_ID = "modelyard"

_PARAM_RE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (OAuth2 refresh) token."""

    username: str
    password: str
    identity_token: str | None = field(default=None, repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def describe(self) -> str:
        """For messages: `user 'bob'` or `the identity token`."""
        if self.identity_token:
            return "the identity token"
        return f"user {self.username!r}"

    def __repr__(self) -> str:  # never print secrets in tracebacks
        kind = "identity token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=***)"


@dataclass(frozen=True)
class Challenge:
    """One parsed `WWW-Authenticate` challenge."""

    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str) -> Challenge | None:
    """Parse `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.

    Returns None for an empty or unparseable header.
    """
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace(
            '\\"', '"'
        )
        for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def _config_files() -> list[Path]:
    files: list[Path] = []
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env))
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(docker_config_file())
    return files


def docker_config_file() -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    docker_dir = os.environ.get("DOCKER_CONFIG")
    return (Path(docker_dir) if docker_dir else Path.home() / ".docker") / "config.json"


def is_docker_hub(host: str) -> bool:
    """True for `docker.io` and the other names of Docker Hub in logins (`host` normalised)."""
    return host == DOCKER_HUB or host in (_normalize_key(k) for k in _DOCKER_HUB_KEYS)


def _normalize_key(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`, as Docker matches `auths` keys."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def _entry_credentials(entry: Any, source: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        # Docker writes `auth` too (`<user>:` with no password); the token is what counts.
        user = _TOKEN_USER
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            user = base64.b64decode(entry.get("auth") or "").decode().partition(":")[0] or user
        return Credentials(user, "", identity)
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(str(entry["username"]), str(entry["password"]))
    auth = entry.get("auth")
    if not auth:
        return None
    try:
        decoded = base64.b64decode(auth, validate=False).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthenticationError(
            "credentials", f"the 'auth' entry in {source} is not base64 of 'user:password'"
        ) from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise AuthenticationError(
            "credentials", f"the 'auth' entry in {source} is not base64 of 'user:password'"
        )
    return Credentials(user, password)


def find_credentials(registry: str) -> Credentials | None:
    """Credentials for `registry` (`host[:port]`) from the login files, or None.

    In a Docker config, a `credHelpers` entry for the host wins, then an `auths` entry with
    credentials, then the `credsStore` helper (`docker-credential-NAME get`).

    Raises:
        AuthenticationError: an entry for this registry exists but cannot be decoded, or a
            configured credential helper is missing or fails.
    """
    wanted = {registry}
    if is_docker_hub(_normalize_key(registry)):
        wanted |= {DOCKER_HUB, *(_normalize_key(k) for k in _DOCKER_HUB_KEYS)}
    for path in _config_files():
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            continue  # a broken file of another tool should not stop a pull that needs no auth
        if not isinstance(doc, dict):
            continue
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _normalize_key(key) in wanted and isinstance(helper, str):
                    return _from_helper(helper, key)
        auths = doc.get("auths")
        matched_key = None
        if isinstance(auths, dict):
            for key, entry in auths.items():
                if _normalize_key(key) in wanted:
                    matched_key = matched_key or key
                    creds = _entry_credentials(entry, path)
                    if creds is not None:
                        return creds
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            creds = _from_helper(store, matched_key or registry)
            if creds is not None:
                return creds
    return None


def call_helper(
    helper: str, action: str, payload: str, server: str
) -> subprocess.CompletedProcess[bytes]:
    """Run `docker-credential-HELPER ACTION` (get, store, erase) with `payload` on stdin.

    Raises:
        AuthenticationError: the helper is not installed, or could not be run.
    """
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise AuthenticationError(
            server, f"credential helper docker-credential-{helper} is configured but not found"
        )
    try:
        return subprocess.run(
            [exe, action], input=payload.encode(), capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthenticationError(server, f"credential helper {helper} failed: {exc}") from exc


def _from_helper(helper: str, server: str) -> Credentials | None:
    """Ask `docker-credential-HELPER get` for `server`'s credentials (None if it has none)."""
    proc = call_helper(helper, "get", server, server)
    if proc.returncode != 0:
        message = proc.stdout.decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthenticationError(server, f"credential helper {helper} failed: {message}")
    try:
        answer = json.loads(proc.stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthenticationError(server, f"credential helper {helper} answered garbage") from exc
    if user == _TOKEN_USER:
        return Credentials(_TOKEN_USER, "", str(secret))
    return Credentials(str(user), str(secret))


@dataclass
class _Token:
    value: str
    expires_at: float


class Authenticator:
    """Remembers what a registry asked for and produces the Authorization header per scope.

    Thread-safe: push uploads blobs from several threads through one authenticator.
    """

    def __init__(
        self,
        registry: str,
        credentials: Credentials | Callable[[], Credentials | None] | None = None,
    ) -> None:
        self.registry = registry
        self._credentials_source = credentials
        self._credentials_loaded = not callable(credentials)
        self._credentials: Credentials | None = None if callable(credentials) else credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()

    @property
    def credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            source = self._credentials_source
            assert callable(source)
            self._credentials = source()
            self._credentials_loaded = True
        return self._credentials

    def header(self, scope: str) -> str | None:
        """The Authorization header to send for `scope`, if one is known without a round trip."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials
            return creds.basic_header() if creds and not creds.identity_token else None
        if challenge.scheme == "bearer":
            with self._lock:
                token = self._tokens.get(scope)
            if token and token.expires_at > time.monotonic():
                return f"Bearer {token.value}"
        return None

    def needs_token(self, scope: str) -> bool:
        """True when the registry uses bearer tokens and none is cached for `scope`."""
        return (
            self._challenge is not None
            and self._challenge.scheme == "bearer"
            and self.header(scope) is None
        )

    def on_challenge(
        self, response: httpx.Response, scope: str, client: httpx.Client, sent_auth: bool
    ) -> None:
        """Handle a 401: learn the scheme, fetch a token if needed. The caller then retries.

        Raises:
            AuthenticationError: no usable challenge, no credentials, or credentials refused.
        """
        header = response.headers.get("www-authenticate", "")
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthenticationError(
                self.registry, f"authentication required, unsupported challenge {header!r}"
            )
        creds = self.credentials
        if challenge.scheme == "basic":
            if creds is None:
                raise AuthenticationError(self.registry, self._no_credentials())
            if creds.identity_token:
                raise AuthenticationError(
                    self.registry,
                    "the registry asks for a password (Basic auth), but the login holds an "
                    "identity token; log in again with a user name and password",
                )
            if sent_auth and self._challenge is not None and self._challenge.scheme == "basic":
                raise AuthenticationError(
                    self.registry, f"credentials for {creds.describe()} were refused"
                )
            self._challenge = challenge
            return
        if not sent_auth and self.header(scope) is not None:
            return  # another thread fetched a token for this scope meanwhile
        if sent_auth and self._challenge is not None and self._challenge.scheme == "bearer":
            # A fresh token was refused: the token is valid but lacks this scope.
            if creds is None:
                raise AuthenticationError(self.registry, self._no_credentials())
            raise AuthenticationError(
                self.registry, f"{creds.describe()} is not allowed to {_describe(scope)}"
            )
        self._challenge = challenge
        self.fetch_token(scope, client)

    def fetch_token(self, scope: str, client: httpx.Client) -> None:
        """Ask the realm of the last bearer challenge for a token covering `scope`.

        Raises:
            AuthenticationError: the realm refused the credentials or answered garbage.
        """
        with self._fetch_lock:
            # One fetch per scope even when several threads hit the challenge at once.
            if self.header(scope) is None:
                self._fetch_token(scope, client)

    def _fetch_token(self, scope: str, client: httpx.Client) -> None:
        challenge = self._challenge
        assert challenge is not None and challenge.scheme == "bearer"
        realm = challenge.realm
        if not realm:
            raise AuthenticationError(self.registry, "bearer challenge without a realm")
        service = challenge.params.get("service")
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                resp = self._refresh_grant(client, realm, service, scope, creds.identity_token)
            else:
                params: list[tuple[str, str | int | float | bool | None]] = []
                if service:
                    params.append(("service", service))
                params.extend(("scope", s) for s in scope.split(" ") if s)
                headers = {}
                if creds is not None:
                    headers["Authorization"] = creds.basic_header()
                resp = client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise AuthenticationError(
                self.registry, f"token service {realm} unreachable: {exc}"
            ) from exc
        if resp.status_code in (401, 403):
            if creds is None:
                raise AuthenticationError(self.registry, self._no_credentials())
            raise AuthenticationError(
                self.registry, f"credentials for {creds.describe()} were refused"
            )
        if resp.status_code != 200:
            raise AuthenticationError(
                self.registry, f"token service {realm} answered HTTP {resp.status_code}"
            )
        try:
            body = resp.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as exc:
            raise AuthenticationError(
                self.registry, f"token service {realm} answered invalid JSON"
            ) from exc
        if not isinstance(value, str) or not value:
            raise AuthenticationError(self.registry, f"token service {realm} gave no token")
        rotated = body.get("refresh_token")
        if creds is not None and creds.identity_token and isinstance(rotated, str) and rotated:
            # The realm may rotate the refresh token: later fetches of this run use the new one.
            self._credentials = Credentials(creds.username, "", rotated)
        expires = time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[scope] = _Token(value, expires)

    @staticmethod
    def _refresh_grant(
        client: httpx.Client, realm: str, service: str | None, scope: str, refresh_token: str
    ) -> httpx.Response:
        """Docker's OAuth2 request for an access token in exchange for an identity token."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        }
        if scopes := " ".join(s for s in scope.split(" ") if s):
            form["scope"] = scopes
        if service:
            form["service"] = service
        return client.post(realm, data=form)

    def _no_credentials(self) -> str:
        return (
            "authentication required and no credentials found; log in with "
            f"`skopeo login {self.registry}` or `docker login {self.registry}` "
            "(or set DOCKER_CONFIG / REGISTRY_AUTH_FILE)"
        )


def _describe(scope: str) -> str:
    """`repository:org/m:pull,push` -> `pull,push org/m`."""
    parts = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        parts.append(f"{actions} {name}" if kind == "repository" else item)
    return " and ".join(parts) or "access the registry"
