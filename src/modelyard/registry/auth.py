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
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import secrets
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import ModelyardError
from modelyard.registry.errcodes import RegistryError

ACTIONS = ("pull", "push", "delete")
SERVICE = "modelyard"
TOKEN_TTL = 300
_MAX_REMEMBERED = 4096


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
    ) -> None:
        self.users = load_htpasswd(htpasswd) if htpasswd else None
        self.policy = Policy.load(policy, anonymous_pull)
        self._secret = secrets.token_bytes(32)
        # bcrypt costs ~100 ms by design; remember credentials already checked.
        self._verified: dict[bytes, bool] = {}

    @property
    def open(self) -> bool:
        return self.users is None

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

    def issue_token(self, authorization: str | None, scopes: list[str]) -> dict[str, object]:
        """A token granting the requested scopes the caller is allowed.

        Raises: RegistryError UNAUTHORIZED for bad credentials.
        """
        user = None
        if authorization and authorization.lower().startswith("basic "):
            user = self._basic(authorization[6:].strip())
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
        payload = {"sub": user, "access": granted, "exp": now + TOKEN_TTL}
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.digest(self._secret, body, "sha256")).rstrip(b"=")
        token = (body + b"." + sig).decode()
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": TOKEN_TTL, "issued_at": issued}

    def _verify_token(self, token: str) -> Identity:
        body, _, sig = token.encode().partition(b".")
        expected = base64.urlsafe_b64encode(hmac.digest(self._secret, body, "sha256")).rstrip(b"=")
        if not hmac.compare_digest(expected, sig):
            raise RegistryError("UNAUTHORIZED", "invalid token")
        payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        if payload["exp"] < time.time():
            raise RegistryError("UNAUTHORIZED", "token expired")
        scopes = frozenset(
            (a["type"], a["name"], action) for a in payload["access"] for action in a["actions"]
        )
        return Identity(payload["sub"], scopes)
