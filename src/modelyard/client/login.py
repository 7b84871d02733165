"""`login` and `logout`: check credentials against a registry, then keep them where Docker,
skopeo, podman and buildah find them.

They go to the file `modelyard.client.auth` reads first among those these tools write:
`$REGISTRY_AUTH_FILE` if set, else `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`),
as `{"auths": {"host:port": {"auth": base64("user:password")}}}`. Docker Hub's key is
`https://index.docker.io/v1/`, as `docker login` writes it. When the Docker config names a
credential helper for the registry (`credHelpers`) or for all of them (`credsStore`), the
secret goes to `docker-credential-NAME store` instead and the file keeps no password. Every other
key and entry of the file is kept; the file is replaced atomically (0600, in a 0700 directory).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from modelyard.client.auth import (
    DOCKER_HUB,
    DOCKER_HUB_KEY,
    Credentials,
    _normalize_key,
    call_helper,
    docker_config_file,
    is_docker_hub,
)
from modelyard.client.registry import RegistryClient
from modelyard.errors import AuthenticationError


def server_key(server: str | None) -> str:
    """The `auths` key for SERVER: `host[:port]`, or Docker Hub's key for it (the default)."""
    if not server:
        return DOCKER_HUB_KEY
    host = _normalize_key(server)
    return DOCKER_HUB_KEY if is_docker_hub(host) else host


def registry_of(key: str) -> str:
    """The registry to talk to for an `auths` key."""
    return DOCKER_HUB if key == DOCKER_HUB_KEY else key


def auth_file() -> Path:
    """The file logins go to: `$REGISTRY_AUTH_FILE`, else Docker's config.json."""
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(env)
    return docker_config_file()


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthenticationError(str(path), f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise AuthenticationError(str(path), f"{path} does not hold a JSON object")
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` with `doc` atomically: temp file beside it, fsync, rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".login-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent="\t")
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _helper_for(doc: dict[str, Any], key: str) -> str | None:
    """The credential helper the Docker config names for `key`, if any."""
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for name, helper in helpers.items():
            if _normalize_key(name) == _normalize_key(key) and isinstance(helper, str):
                return helper
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _run_helper(helper: str, action: str, payload: str, server: str) -> bool:
    """Run `docker-credential-HELPER ACTION`; False if the helper had no such credentials."""
    proc = call_helper(helper, action, payload, server)
    if proc.returncode != 0:
        message = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return False
        raise AuthenticationError(server, f"credential helper {helper} {action} failed: {message}")
    return True


def login(
    server: str | None,
    username: str,
    password: str,
    *,
    plain_http: bool | None = None,
    insecure: bool = False,
    ca_cert: str | Path | None = None,
) -> Path:
    """Check `username`/`password` against `server` (Docker Hub if None), then store them.

    Returns the file that now names the login (with the secret, or pointing at the helper).

    Raises:
        AuthenticationError: the registry refused the credentials (nothing is written), or the
            login file or credential helper failed.
        RegistryUnreachable, RegistryError: the registry could not be asked.
    """
    if not username:
        raise AuthenticationError(server or DOCKER_HUB, "a user name is needed")
    key = server_key(server)
    registry = registry_of(key)
    credentials = Credentials(username, password)
    with RegistryClient(
        registry,
        plain_http=plain_http,
        insecure=insecure,
        ca_cert=ca_cert,
        credentials=credentials,
        retries=1,
    ) as client:
        client.ping()
    path = auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    for old in [k for k in auths if _normalize_key(k) == _normalize_key(key) and k != key]:
        del auths[old]  # one entry per registry, under the key docker uses
    helper = None if "REGISTRY_AUTH_FILE" in os.environ else _helper_for(doc, key)
    if helper:
        secret = {"ServerURL": key, "Username": username, "Secret": password}
        _run_helper(helper, "store", json.dumps(secret), registry)
        auths[key] = {}
    else:
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    doc["auths"] = auths
    _write(path, doc)
    return path


def logout(server: str | None) -> bool:
    """Forget the login for `server` (Docker Hub if None). False: there was none."""
    key = server_key(server)
    path = auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    found = [k for k in auths if _normalize_key(k) == _normalize_key(key)]
    helper = None if "REGISTRY_AUTH_FILE" in os.environ else _helper_for(doc, key)
    erased = _run_helper(helper, "erase", key, registry_of(key)) if helper else False
    if not found:
        return erased
    for k in found:
        del auths[k]
    _write(path, doc)
    return True
