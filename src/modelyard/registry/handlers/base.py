"""What every handler shares: the request context, the one error writer, body and header
parsing helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from modelyard.registry.errcodes import RegistryError
from modelyard.registry.service import Registry

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(\d+|\*))?$")


@dataclass
class Ctx:
    """One request as the handlers see it."""

    request: Request
    registry: Registry
    params: dict[str, str]
    name: str = ""
    #: Extra query-driven permission checks (cross-repository mount) go through this.
    can_pull: Callable[[str], bool] = field(default=lambda _name: True)

    @property
    def head(self) -> bool:
        return self.request.method == "HEAD"


Handler = Callable[[Ctx], Awaitable[Response]]


def error_response(err: RegistryError, head: bool = False) -> Response:
    """The one place where an error becomes a distribution-spec JSON error body."""
    headers = {**API_VERSION_HEADER, **err.headers}
    body = b"" if head else err.to_body()
    response = Response(
        body, status_code=err.status, headers=headers, media_type="application/json"
    )
    if head:
        response.headers["Content-Length"] = str(len(err.to_body()))
    return response


def empty(status: int, headers: dict[str, str]) -> Response:
    return Response(b"", status_code=status, headers={**API_VERSION_HEADER, **headers})


def content_range(request: Request) -> tuple[int, int] | None:
    """(start, end) of a `Content-Range: start-end` header, or None if absent.

    Raises: RegistryError RANGE_INVALID (416) if it is malformed.
    """
    value = request.headers.get("content-range")
    if value is None:
        return None
    m = _CONTENT_RANGE_RE.match(value.strip())
    if not m or int(m.group(2)) < int(m.group(1)):
        raise RegistryError("RANGE_INVALID", f"malformed Content-Range {value!r}")
    return int(m.group(1)), int(m.group(2))


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError as exc:
        raise RegistryError("SIZE_INVALID", f"bad Content-Length {value!r}") from exc
    if n < 0:
        raise RegistryError("SIZE_INVALID", f"bad Content-Length {value!r}")
    return n


def chunk_bounds(request: Request) -> tuple[int | None, int | None]:
    """(start, length) a chunk announces through Content-Range and Content-Length.

    Raises: RegistryError RANGE_INVALID when both are present and disagree.
    """
    rng = content_range(request)
    length = content_length(request)
    if rng is None:
        return None, length
    span = rng[1] - rng[0] + 1
    if length is not None and length != span:
        raise RegistryError(
            "RANGE_INVALID", f"Content-Range spans {span} bytes but Content-Length is {length}"
        )
    return rng[0], span


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413 SIZE_INVALID) anything larger than `limit` bytes
    without reading it all."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise RegistryError("SIZE_INVALID", f"body larger than {limit} bytes", status=413)
    parts: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RegistryError("SIZE_INVALID", f"body larger than {limit} bytes", status=413)
        parts.append(chunk)
    return b"".join(parts)


def body(request: Request) -> AsyncIterator[bytes]:
    return request.stream()
