"""Paginated listings: `/v2/<name>/tags/list` and `/v2/_catalog` (`n`, `last`, `Link`)."""

from __future__ import annotations

import bisect
import json
from urllib.parse import urlencode

from starlette.responses import Response

from modelyard.registry.errcodes import RegistryError
from modelyard.registry.handlers.base import API_VERSION_HEADER, Ctx


def _page(ctx: Ctx, items: list[str], path: str, key: str, extra: dict[str, object]) -> Response:
    query = ctx.request.query_params
    last = query.get("last")
    start = bisect.bisect_right(items, last) if last else 0
    headers = dict(API_VERSION_HEADER)
    n_value = query.get("n")
    if n_value is not None:
        try:
            n = int(n_value)
        except ValueError as exc:
            raise RegistryError(
                "UNSUPPORTED", f"n must be an integer, not {n_value!r}", status=400
            ) from exc
        if n < 0:
            raise RegistryError("UNSUPPORTED", "n must not be negative", status=400)
        page = items[start : start + n]
        if n and start + n < len(items):
            link = path + "?" + urlencode({"n": n, "last": page[-1]})
            headers["Link"] = f'<{link}>; rel="next"'
    else:
        page = items[start:]
    body = json.dumps({**extra, key: page}).encode()
    return Response(body, 200, headers, media_type="application/json")


async def list_tags(ctx: Ctx) -> Response:
    tags = ctx.registry.tags(ctx.name)
    return _page(ctx, tags, f"/v2/{ctx.name}/tags/list", "tags", {"name": ctx.name})


async def catalog(ctx: Ctx) -> Response:
    return _page(ctx, ctx.registry.catalog(), "/v2/_catalog", "repositories", {})
