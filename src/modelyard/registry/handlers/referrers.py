"""`/v2/<name>/referrers/<digest>`: an OCI index of the manifests whose subject is digest."""

from __future__ import annotations

import json

from starlette.responses import Response

from modelyard.oci import mediatypes as mt
from modelyard.registry.handlers.base import API_VERSION_HEADER, Ctx


async def list_referrers(ctx: Ctx) -> Response:
    artifact_type = ctx.request.query_params.get("artifactType")
    found = ctx.registry.referrers(ctx.name, ctx.params["digest"], artifact_type)
    headers = dict(API_VERSION_HEADER)
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    return Response(json.dumps(index).encode(), 200, headers, media_type=mt.OCI_INDEX)
