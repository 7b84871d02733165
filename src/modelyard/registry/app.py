"""The registry as an ASGI application: route, authorize, call a handler, write errors.

Routing is a short table of regular expressions rather than starlette's router because
repository names contain slashes (`/v2/org/team/model/manifests/v1`): the name is whatever
precedes the last API keyword, then validated against the spec's grammar.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelyard.registry.auth import Authorizer
from modelyard.registry.errcodes import RegistryError
from modelyard.registry.handlers import blobs, listing, manifests, referrers, uploads
from modelyard.registry.handlers.base import (
    API_VERSION_HEADER,
    Ctx,
    Handler,
    error_response,
    read_limited,
)
from modelyard.registry.service import Registry, check_name
from modelyard.storage.local import LocalDriver

log = logging.getLogger("modelyard.registry")
#: What may go into the realm URL from request headers (no quotes, no path).
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[Handler, str]]  # method -> (handler, action needed)


def _route(pattern: str, **methods: tuple[Handler, str]) -> Route:
    return Route(re.compile(f"^/v2/(?P<name>.+)/{pattern}$"), methods)


ROUTES = [
    _route(
        r"manifests/(?P<reference>[^/]+)",
        GET=(manifests.get_manifest, "pull"),
        HEAD=(manifests.get_manifest, "pull"),
        PUT=(manifests.put_manifest, "push"),
        DELETE=(manifests.delete_manifest, "delete"),
    ),
    _route(
        r"blobs/uploads/?",
        POST=(uploads.start_upload, "push"),
    ),
    _route(
        r"blobs/uploads/(?P<uuid>[^/]+)",
        GET=(uploads.get_upload, "push"),
        PATCH=(uploads.patch_upload, "push"),
        PUT=(uploads.put_upload, "push"),
        DELETE=(uploads.delete_upload, "push"),
    ),
    _route(
        r"blobs/(?P<digest>[^/]+)",
        GET=(blobs.get_blob, "pull"),
        HEAD=(blobs.get_blob, "pull"),
        DELETE=(blobs.delete_blob, "delete"),
    ),
    _route(r"tags/list", GET=(listing.list_tags, "pull")),
    _route(r"referrers/(?P<digest>[^/]+)", GET=(referrers.list_referrers, "pull")),
]


class RegistryApp:
    """ASGI callable serving the distribution API over a `Registry`."""

    def __init__(
        self, registry: Registry, authorizer: Authorizer | None = None, realm: str | None = None
    ) -> None:
        """`realm`: the token endpoint URL to advertise; default: this server's `/token`
        as the client reached it (see `_realm`)."""
        self.registry = registry
        self.auth = authorizer or Authorizer()
        self.realm = realm

    def _realm(self, request: Request) -> str:
        return self.realm or _realm(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._dispatch(request)
        except RegistryError as err:
            if err.status == 401 and "WWW-Authenticate" not in err.headers:
                err.headers["WWW-Authenticate"] = self.auth.challenge(self._realm(request)).headers[
                    "WWW-Authenticate"
                ]
            response = error_response(err, head=request.method == "HEAD")
        except Exception as exc:  # a bug or a storage failure: still a spec error body
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = error_response(RegistryError("UNKNOWN", str(exc)))
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        method = request.method
        identity = self.auth.identify(request.headers.get("authorization"))
        realm = self._realm(request)
        if path in ("/v2", "/v2/"):
            if not self.auth.open and identity.user is None and identity.scopes is None:
                # Docker clients learn where to get tokens from this answer.
                raise self.auth.challenge(realm)
            return Response(b"{}", 200, API_VERSION_HEADER, media_type="application/json")
        if path == "/token":
            return await self._token(request)
        if path == "/v2/_catalog":
            self.auth.check(identity, "registry", "catalog", "*", realm)
            return await listing.catalog(Ctx(request, self.registry, {}))
        for route in ROUTES:
            m = route.pattern.match(path)
            if m is None:
                continue
            entry = route.methods.get(method)
            if entry is None:
                raise RegistryError("UNSUPPORTED", f"{method} is not allowed here", status=405)
            handler, action = entry
            params = m.groupdict()
            name = check_name(params.pop("name"))
            self.auth.check(identity, "repository", name, action, realm)

            def can_pull(source: str, identity: object = identity) -> bool:
                try:
                    self.auth.check(identity, "repository", source, "pull", realm)  # type: ignore[arg-type]
                except RegistryError:
                    return False
                return True

            return await handler(Ctx(request, self.registry, params, name, can_pull))
        raise RegistryError("NAME_UNKNOWN", f"no API endpoint at {path}", status=404)

    async def _token(self, request: Request) -> Response:
        """Docker token endpoint: GET with Basic credentials (`offline_token=true` adds a
        refresh token), or an OAuth2 POST form: `grant_type=password` (username, password;
        `access_type=offline` adds a refresh token) or `grant_type=refresh_token`."""
        authorization = request.headers.get("authorization")
        scopes = request.query_params.getlist("scope")
        offline = request.query_params.get("offline_token", "").lower() == "true"
        if request.method == "POST":
            form = parse_qs((await read_limited(request, 64 << 10)).decode("utf-8", "replace"))

            def field(key: str) -> str:
                return form.get(key, [""])[0]

            scopes = [s for value in form.get("scope", []) for s in value.split(" ") if s]
            grant = field("grant_type")
            if grant == "refresh_token":
                token = self.auth.refresh(field("refresh_token"), scopes)
                return Response(json.dumps(token).encode(), 200, media_type="application/json")
            if grant != "password":
                raise RegistryError(
                    "UNSUPPORTED",
                    "grant_type must be password or refresh_token",
                    status=400,
                )
            user, password = field("username"), field("password")
            authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            offline = field("access_type") == "offline"
        token = self.auth.issue_token(authorization, scopes, offline=offline)
        return Response(json.dumps(token).encode(), 200, media_type="application/json")


def _realm(request: Request) -> str:
    """`/token` on the scheme and host the client used, as a TLS-terminating proxy in front
    reports them (`X-Forwarded-Proto`, `X-Forwarded-Host`). Trusting these headers is safe
    here: the realm only goes back to the client that sent them."""
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if scheme not in ("http", "https"):
        scheme = request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip()
    if not _HOST_RE.match(host):
        host = headers.get("host", "")
        if not _HOST_RE.match(host):
            host = "localhost"
    return f"{scheme}://{host}/token"


def create_app(
    root: str | Path,
    htpasswd: str | Path | None = None,
    policy: str | Path | None = None,
    anonymous_pull: bool = False,
    hf_ttl: float | None = None,
    realm: str | None = None,
) -> RegistryApp:
    """The registry app over a local directory (what `modelyard registry serve` runs).

    Raises: AuthConfigError if the htpasswd or policy file cannot be used.

    Example:
        >>> app = create_app("/srv/registry")  # then serve it with any ASGI server

    `realm`: the token endpoint URL to advertise in challenges (behind a proxy that rewrites
    paths, say); default: `/token` on the scheme and host the client reached.

    `hf_ttl`: serve `hf/ORG/NAME:REV` by pull-through from the Hugging Face Hub, re-resolving
    moving revisions after that many seconds (see `modelyard.hub.proxy`); None: off.
    """
    registry = Registry(LocalDriver(root))
    if hf_ttl is not None:  # hub pull-through
        from modelyard.hub.proxy import HubProxy

        registry.pull_through = HubProxy(registry, ttl=hf_ttl).ensure
    key_file = Path(root) / "auth" / "token.key"
    return RegistryApp(registry, Authorizer(htpasswd, policy, anonymous_pull, key_file), realm)
