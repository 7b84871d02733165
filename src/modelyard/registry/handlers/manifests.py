"""`/v2/<name>/manifests/<reference>`: GET, HEAD, PUT, DELETE."""

from __future__ import annotations

from starlette.responses import Response

from modelyard.oci import mediatypes as mt
from modelyard.registry.errcodes import RegistryError
from modelyard.registry.handlers.base import API_VERSION_HEADER, Ctx, empty, read_limited
from modelyard.registry.service import MAX_MANIFEST_SIZE


def _accepts(accept: str | None, media_type: str) -> bool:
    """Whether a client's Accept header allows `media_type`.

    A client that names manifest types but not this one (say, an old client asking only for
    Docker schema 2 while the manifest is an OCI index) gets MANIFEST_UNKNOWN, as from
    distribution. No header, wildcards or no manifest type at all accept anything.
    """
    if not accept:
        return True
    offered = {part.split(";")[0].strip() for part in accept.split(",")}
    if media_type in offered or "*/*" in offered or "application/*" in offered:
        return True
    return not (offered & mt.MANIFESTS)


async def get_manifest(ctx: Ctx) -> Response:
    reference = ctx.params["reference"]
    if ctx.registry.pull_through is not None:  # hub pull-through (modelyard.hub.proxy)
        await ctx.registry.pull_through(ctx.name, reference)
    info = ctx.registry.get_manifest(ctx.name, reference)
    accept = ", ".join(ctx.request.headers.getlist("accept"))
    if not _accepts(accept, info.media_type):
        raise RegistryError(
            "MANIFEST_UNKNOWN",
            f"manifest is {info.media_type}, which the Accept header does not allow",
        )
    headers = {
        **API_VERSION_HEADER,
        "Docker-Content-Digest": info.digest,
        "ETag": f'"{info.digest}"',
        "Content-Length": str(len(info.data)),
    }
    if ctx.head:
        return Response(b"", 200, headers, media_type=info.media_type)
    return Response(info.data, 200, headers, media_type=info.media_type)


async def put_manifest(ctx: Ctx) -> Response:
    reference = ctx.params["reference"]
    data = await read_limited(ctx.request, MAX_MANIFEST_SIZE)
    digest, subject = ctx.registry.put_manifest(
        ctx.name, reference, data, ctx.request.headers.get("content-type")
    )
    headers = {
        "Location": f"/v2/{ctx.name}/manifests/{digest}",
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    }
    if subject:
        headers["OCI-Subject"] = subject
    return empty(201, headers)


async def delete_manifest(ctx: Ctx) -> Response:
    ctx.registry.delete_manifest(ctx.name, ctx.params["reference"])
    return empty(202, {"Content-Length": "0"})
