"""`/v2/<name>/blobs/<digest>`: GET and HEAD (with a single byte range), DELETE."""

from __future__ import annotations

import os
import re

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelyard.registry.errcodes import RegistryError
from modelyard.registry.handlers.base import API_VERSION_HEADER, Ctx, empty, error_response

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Bytes per `send` when the server cannot send a file by path: big enough that the
#: per-message overhead of the ASGI server disappears.
SEND_CHUNK = 1 << 20


class FileRangeResponse(Response):
    """Sends `length` bytes of a file from `offset`.

    With a server that implements the ASGI path-send extension (granian) a whole file goes
    out by path, zero-copy; otherwise it is read and sent in large chunks.
    """

    def __init__(
        self,
        path: str,
        offset: int,
        length: int,
        status: int,
        headers: dict[str, str],
        whole: bool,
        head: bool,
    ) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.whole = whole
        self.send_body = not head
        self.status_code = status
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            # Deleted (garbage collected) between the lookup and now.
            err = RegistryError("BLOB_UNKNOWN")
            await error_response(err, head=not self.send_body)(scope, receive, send)
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if not self.send_body or self.length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if self.whole and "http.response.pathsend" in scope.get("extensions", {}):
                await send({"type": "http.response.pathsend", "path": self.path})
                return
            remaining, pos = self.length, self.offset
            while remaining:
                # pread returns a fresh bytes object: the server may keep it queued after
                # `send` returns, so a reused buffer would be unsafe.
                chunk = os.pread(fd, min(SEND_CHUNK, remaining), pos)
                if not chunk:
                    break
                remaining -= len(chunk)
                pos += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": remaining > 0}
                )
            if remaining:  # the file shrank under us: end the body rather than hang
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(fd)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single satisfiable range; None to serve everything.

    Raises: RegistryError RANGE_INVALID (416) if the range cannot be satisfied.
    """
    m = _RANGE_RE.match(value.strip())
    if not m:
        return None  # multiple or unknown ranges: the spec lets us send the whole blob
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise _unsatisfiable(size)
        return max(size - n, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID",
        "requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


async def get_blob(ctx: Ctx) -> Response:
    digest = ctx.params["digest"]
    info = ctx.registry.stat_blob(ctx.name, digest)
    etag = f'"{info.digest}"'
    headers = {
        **API_VERSION_HEADER,
        "Docker-Content-Digest": info.digest,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
        "Content-Type": "application/octet-stream",
    }
    if ctx.request.headers.get("if-none-match") == etag:
        return empty(304, headers)
    path = ctx.registry.driver.local_path(info.path)
    assert path is not None, "only drivers with local paths are served for now"
    rng = None
    if "range" in ctx.request.headers:
        rng = _parse_range(ctx.request.headers["range"], info.size)
    if rng is None:
        headers["Content-Length"] = str(info.size)
        return FileRangeResponse(path, 0, info.size, 200, headers, True, ctx.head)
    start, end = rng
    headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(end - start + 1)
    return FileRangeResponse(path, start, end - start + 1, 206, headers, False, ctx.head)


async def delete_blob(ctx: Ctx) -> Response:
    ctx.registry.delete_blob(ctx.name, ctx.params["digest"])
    return empty(202, {"Content-Length": "0"})
