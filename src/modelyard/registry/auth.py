"""Who may do what: htpasswd users, Docker-style bearer tokens and a per-repository policy.

With no htpasswd file the registry is open (meant for loopback). With one, every request
carries either Basic credentials or a bearer token that the registry issued itself at
`/token`; requests without enough rights get `401` with a challenge

    WWW-Authenticate: Bearer realm="http://HOST/token",service="modelyard",
                      scope="repository:NAME:pull,push"

that Docker clients (skopeo, buildah, oras) follow. A user whose rights do not cover the
request gets `403 DENIED`.

The policy file (TOML) grants actions (`pull`, `push`, `delete`) on repositories matched by
shell patterns; users are htpasswd names, `*` (any signed-in user) or `anonymous`:

    [[allow]]
    users = ["alice"]
    repositories = ["org/*"]
    actions = ["pull", "push", "delete"]

Without a policy file every signed-in user may do everything; `anonymous_pull` lets anyone
pull.

Tokens are HMAC-signed with a key kept in `ROOT/auth/token.key` (mode 0600, created on first
use), so tokens stay valid across restarts and between workers; deleting the file revokes
every token issued so far.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import ModelyardError
from modelyard.oci.layout import fsync_dir
from modelyard.registry.errcodes import RegistryError

ACTIONS = ("pull", "push", "delete")
SERVICE = "modelyard"
TOKEN_TTL = 300
#: Lifetime of refresh (identity) tokens, in seconds.
REFRESH_TTL = 90 * 24 * 3600
_MAX_REMEMBERED = 4096
_KEY_BYTES = 32


class AuthConfigError(ModelyardError, ValueError):
    """An htpasswd or policy file cannot be used."""


@dataclass(frozen=True)
class Rule:
    users: tuple[str, ...]
    repositories: tuple[str, ...]
    actions: frozenset[str]

    def grants(self, user: str | None, repository: str, action: str) -> bool:
        who = "anonymous" if user is None else user
        user_ok = who in self.users or (user is not None and "*" in self.users)
        return (
            user_ok
            and action in self.actions
            and any(fnmatch.fnmatchcase(repository, p) for p in self.repositories)
        )


@dataclass
class Identity:
    user: str | None
    #: Set for bearer tokens: exactly the (type, name, action) the token carries.
    scopes: frozenset[tuple[str, str, str]] | None = None


@dataclass
class Policy:
    rules: list[Rule] = field(default_factory=list)
    default_allow_users: bool = True
    anonymous_pull: bool = False

    def allows(self, user: str | None, repository: str, action: str) -> bool:
        if action == "pull" and self.anonymous_pull:
            return True
        if user is not None and self.default_allow_users:
            return True
        return any(r.grants(user, repository, action) for r in self.rules)

    @classmethod
    def load(cls, path: str | Path | None, anonymous_pull: bool) -> Policy:
        if path is None:
            return cls([], True, anonymous_pull)
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AuthConfigError(f"cannot read policy file {path}: {exc}") from exc
        rules = []
        for i, entry in enumerate(data.get("allow", [])):
            try:
                actions = frozenset(entry["actions"])
                rule = Rule(tuple(entry["users"]), tuple(entry["repositories"]), actions)
            except (KeyError, TypeError) as exc:
                raise AuthConfigError(
                    f"{path}: rule {i + 1} needs users, repositories and actions lists"
                ) from exc
            if not actions <= set(ACTIONS) | {"*"}:
                raise AuthConfigError(f"{path}: rule {i + 1}: actions are {', '.join(ACTIONS)}")
            if "*" in actions:
                rule = Rule(rule.users, rule.repositories, frozenset(ACTIONS))
            rules.append(rule)
        return cls(rules, False, anonymous_pull)


def load_htpasswd(path: str | Path) -> dict[str, str]:
    """`user:hash` lines; bcrypt (`$2y$`, `$2b$`, `$2a$`) and `{SHA}` hashes are accepted."""
    users: dict[str, str] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise AuthConfigError(f"cannot read htpasswd file {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise AuthConfigError(f"{path}:{n}: expected user:hash")
        if not (hashed.startswith(("$2y$", "$2b$", "$2a$", "{SHA}"))):
            raise AuthConfigError(
                f"{path}:{n}: unsupported hash for {user!r}; use bcrypt (htpasswd -B)"
            )
        users[user] = hashed
    return users


def _check_password(hashed: str, password: str) -> bool:
    if hashed.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        return hmac.compare_digest(digest, hashed[5:])
    import bcrypt  # the `registry` extra; only needed when an htpasswd file is in use

    # htpasswd writes $2y$, which the bcrypt package reads as $2b$ (same algorithm).
    normalized = "$2b$" + hashed[4:] if hashed.startswith("$2y$") else hashed
    try:
        return bcrypt.checkpw(password.encode(), normalized.encode())
    except ValueError:
        return False


def load_signing_key(path: Path) -> bytes:
    """The token signing key at `path`, created (random, mode 0600) if absent.

    Creation is atomic and first-writer-wins: the key is written and synced to a temp file,
    then hard-linked into place, which fails if another process got there first; that
    process's key is then used. A reader never sees a partial key.

    Raises: AuthConfigError if the file cannot be read or created, or is not a key.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _create_key(path)
    except OSError as exc:
        raise AuthConfigError(f"cannot read the token signing key {path}: {exc}") from exc
    if len(key) != _KEY_BYTES:
        raise AuthConfigError(
            f"{path} is not a token signing key ({len(key)} bytes, expected {_KEY_BYTES}); "
            "delete it to make a new one (this revokes every token issued)"
        )
    return key


def _create_key(path: Path) -> bytes:
    key = secrets.token_bytes(_KEY_BYTES)
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes()  # another worker created it first: use theirs
        fsync_dir(path.parent)
        return key
    except OSError as exc:
        raise AuthConfigError(f"cannot create the token signing key {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def parse_scope(scope: str) -> tuple[str, str, set[str]] | None:
    """`repository:org/model:pull,push` -> ("repository", "org/model", {"pull", "push"})."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, {a for a in actions.split(",") if a}


class Authorizer:
    """Decides requests; `None` htpasswd means the registry is open."""

    def __init__(
        self,
        htpasswd: str | Path | None = None,
        policy: str | Path | None = None,
        anonymous_pull: bool = False,
        key_file: str | Path | None = None,
    ) -> None:
        """`key_file`: where the token signing key persists (None: a key in memory only,
        so tokens die with the process)."""
        self.users = load_htpasswd(htpasswd) if htpasswd else None
        self.policy = Policy.load(policy, anonymous_pull)
        self._key_file = Path(key_file) if key_file is not None else None
        self._key: bytes | None = None
        # bcrypt costs ~100 ms by design; remember credentials already checked.
        self._verified: dict[bytes, bool] = {}

    @property
    def open(self) -> bool:
        return self.users is None

    @property
    def _secret(self) -> bytes:
        # Loaded on first use: an open registry never writes a key.
        if self._key is None:
            if self._key_file is None:
                self._key = secrets.token_bytes(_KEY_BYTES)
            else:
                self._key = load_signing_key(self._key_file)
        return self._key

    # ---- credentials -------------------------------------------------------------------

    def _basic(self, value: str) -> str:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryError("UNAUTHORIZED", "malformed basic credentials") from exc
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        ok = self._verified.get(key)
        if ok is None:
            assert self.users is not None
            hashed = self.users.get(user)
            ok = hashed is not None and _check_password(hashed, password)
            if len(self._verified) >= _MAX_REMEMBERED:
                self._verified.clear()
            self._verified[key] = ok
        if not ok:
            raise RegistryError("UNAUTHORIZED", "invalid username or password")
        return user

    def identify(self, authorization: str | None) -> Identity:
        """Who sent the request. Raises: RegistryError UNAUTHORIZED on bad credentials."""
        if not authorization or self.users is None:
            return Identity(None)
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            return Identity(self._basic(value.strip()))
        if scheme.lower() == "bearer":
            return self._verify_token(value.strip())
        raise RegistryError("UNAUTHORIZED", f"unsupported authorization scheme {scheme!r}")

    # ---- decisions ---------------------------------------------------------------------

    def check(self, identity: Identity, kind: str, name: str, action: str, realm: str) -> None:
        """Raises: RegistryError UNAUTHORIZED (with a challenge) or DENIED."""
        if self.users is None:
            return
        allowed = self._allowed(identity.user, kind, name, action)
        if identity.scopes is not None:
            if (kind, name, action) in identity.scopes:
                return
            if allowed or identity.user is None:
                raise self.challenge(realm, kind, name, action, insufficient=True)
            raise RegistryError("DENIED", detail={"name": name, "action": action})
        if allowed:
            return
        if identity.user is None:
            raise self.challenge(realm, kind, name, action)
        raise RegistryError("DENIED", detail={"name": name, "action": action})

    def _allowed(self, user: str | None, kind: str, name: str, action: str) -> bool:
        if kind == "registry":
            return user is not None  # the catalog: any signed-in user
        return self.policy.allows(user, name, action)

    def challenge(
        self,
        realm: str,
        kind: str = "",
        name: str = "",
        action: str = "",
        insufficient: bool = False,
    ) -> RegistryError:
        value = f'Bearer realm="{realm}",service="{SERVICE}"'
        if kind:
            actions = "pull,push" if action == "push" else action
            value += f',scope="{kind}:{name}:{actions}"'
        if insufficient:
            value += ',error="insufficient_scope"'
        return RegistryError("UNAUTHORIZED", headers={"WWW-Authenticate": value})

    # ---- tokens ------------------------------------------------------------------------

    def issue_token(
        self, authorization: str | None, scopes: list[str], offline: bool = False
    ) -> dict[str, object]:
        """A token granting the requested scopes the caller is allowed.

        `authorization` is Basic credentials, or None for an anonymous token. `offline` adds a
        `refresh_token` (Docker's identity token) for a signed-in user.

        Raises: RegistryError UNAUTHORIZED for bad credentials.
        """
        user = None
        if authorization and authorization.lower().startswith("basic "):
            user = self._basic(authorization[6:].strip())
        answer = self._access_token(user, scopes)
        if offline and user is not None:
            answer["refresh_token"] = self._sign(
                {"sub": user, "typ": "refresh", "pw": self._password_tag(user),
                 "exp": int(time.time()) + REFRESH_TTL}
            )  # fmt: skip
        return answer

    def refresh(self, refresh_token: str, scopes: list[str]) -> dict[str, object]:
        """OAuth2 `grant_type=refresh_token`: a token for the user the refresh token names.

        A refresh token dies with its user's htpasswd entry: removing the user or changing the
        password revokes it.

        Raises: RegistryError UNAUTHORIZED for an invalid, expired or revoked refresh token.
        """
        payload = self._unsign(refresh_token)
        user = payload.get("sub")
        if (
            payload.get("typ") != "refresh"
            or not isinstance(user, str)
            or self.users is None
            or user not in self.users
            or not hmac.compare_digest(str(payload.get("pw")), self._password_tag(user))
        ):
            raise RegistryError("UNAUTHORIZED", "invalid refresh token")
        return self._access_token(user, scopes)

    def _password_tag(self, user: str) -> str:
        hashed = (self.users or {}).get(user, "")
        return hashlib.sha256(self._secret + hashed.encode()).hexdigest()[:32]

    def _access_token(self, user: str | None, scopes: list[str]) -> dict[str, object]:
        granted: list[dict[str, object]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if "*" in actions and kind == "repository":
                actions = set(ACTIONS)
            ok = sorted(a for a in actions if self._allowed(user, kind, name, a))
            if ok:
                granted.append({"type": kind, "name": name, "actions": ok})
        now = int(time.time())
        token = self._sign({"sub": user, "access": granted, "exp": now + TOKEN_TTL})
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": TOKEN_TTL, "issued_at": issued}

    def _sign(self, payload: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.digest(self._secret, body, "sha256")).rstrip(b"=")
        return (body + b"." + sig).decode()

    def _unsign(self, token: str) -> dict[str, object]:
        """The payload of a token this registry signed and that has not expired.

        Raises: RegistryError UNAUTHORIZED otherwise (another key, tampered, expired).
        """
        body, _, sig = token.encode("utf-8", "replace").partition(b".")
        expected = base64.urlsafe_b64encode(hmac.digest(self._secret, body, "sha256")).rstrip(b"=")
        if not hmac.compare_digest(expected, sig):
            raise RegistryError("UNAUTHORIZED", "invalid token")
        payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        if payload["exp"] < time.time():
            raise RegistryError("UNAUTHORIZED", "token expired")
        return payload  # type: ignore[no-any-return]

    def _verify_token(self, token: str) -> Identity:
        payload = self._unsign(token)
        if payload.get("typ") == "refresh":
            raise RegistryError("UNAUTHORIZED", "a refresh token is not an access token")
        access: list[dict[str, object]] = payload["access"]  # type: ignore[assignment]
        scopes = frozenset(
            (str(a["type"]), str(a["name"]), str(action))
            for a in access
            for action in a["actions"]  # type: ignore[attr-defined]
        )
        sub = payload["sub"]
        return Identity(sub if isinstance(sub, str) else None, scopes)
