"""`/v2/<name>/blobs/uploads/`: POST (start, monolithic, mount), PATCH, PUT, GET, DELETE."""

from __future__ import annotations

import contextlib

from starlette.responses import Response

from modelyard.registry.errcodes import RegistryError
from modelyard.registry.handlers.base import Ctx, body, chunk_bounds, empty
from modelyard.registry.service import BlobInfo, range_header


def _created(ctx: Ctx, info: BlobInfo) -> Response:
    return empty(
        201,
        {
            "Location": f"/v2/{ctx.name}/blobs/{info.digest}",
            "Docker-Content-Digest": info.digest,
            "Content-Length": "0",
        },
    )


def _session(ctx: Ctx, upload_id: str, offset: int, status: int) -> Response:
    return empty(
        status,
        {
            "Location": f"/v2/{ctx.name}/blobs/uploads/{upload_id}",
            "Range": range_header(offset),
            "Docker-Upload-UUID": upload_id,
            "Content-Length": "0",
        },
    )


async def start_upload(ctx: Ctx) -> Response:
    query = ctx.request.query_params
    mount, source = query.get("mount"), query.get("from")
    if mount and source:
        # Only blobs the caller may read in `source` are mounted; otherwise the spec says to
        # fall back to an ordinary upload session.
        info = ctx.registry.mount_blob(ctx.name, source, mount) if ctx.can_pull(source) else None
        if info is not None:
            return _created(ctx, info)
    digest = query.get("digest")
    upload_id = ctx.registry.start_upload(ctx.name)
    if digest:
        start, length = chunk_bounds(ctx.request)
        try:
            info = await ctx.registry.finish_upload(
                ctx.name, upload_id, digest, body(ctx.request), start, length
            )
        except BaseException:
            _drop(ctx, upload_id)
            raise
        return _created(ctx, info)
    return _session(ctx, upload_id, 0, 202)


def _drop(ctx: Ctx, upload_id: str) -> None:
    # Already gone when a digest mismatch ended the session itself.
    with contextlib.suppress(RegistryError):
        ctx.registry.cancel_upload(ctx.name, upload_id)


async def patch_upload(ctx: Ctx) -> Response:
    upload_id = ctx.params["uuid"]
    start, length = chunk_bounds(ctx.request)
    offset = await ctx.registry.append_upload(ctx.name, upload_id, body(ctx.request), start, length)
    return _session(ctx, upload_id, offset, 202)


async def put_upload(ctx: Ctx) -> Response:
    upload_id = ctx.params["uuid"]
    digest = ctx.request.query_params.get("digest")
    if not digest:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required")
    start, length = chunk_bounds(ctx.request)
    info = await ctx.registry.finish_upload(
        ctx.name, upload_id, digest, body(ctx.request), start, length
    )
    return _created(ctx, info)


async def get_upload(ctx: Ctx) -> Response:
    upload_id = ctx.params["uuid"]
    offset = ctx.registry.upload_offset(ctx.name, upload_id)
    return _session(ctx, upload_id, offset, 204)


async def delete_upload(ctx: Ctx) -> Response:
    ctx.registry.cancel_upload(ctx.name, ctx.params["uuid"])
    return empty(204, {"Content-Length": "0"})
