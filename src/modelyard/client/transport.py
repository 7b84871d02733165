"""Where the client's requests go: real sockets by default, or an ASGI app in process.

`RegistryClient` takes any `httpx.BaseTransport`. Real registries use httpx's default
transport; unit tests hand it `ASGIAppTransport(app)` to call the registry's ASGI app without
a socket (httpx's own `ASGITransport` only works with the async client).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def is_local(registry: str) -> bool:
    """True for loopback registries, which speak plain HTTP by default (as Docker assumes)."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if registry.startswith("["):
        host = registry.split("]")[0] + "]"
    return host in _LOCAL_HOSTS or host.startswith("127.")


def base_url(registry: str, plain_http: bool | None = None) -> str:
    """`http://` for loopback hosts or when asked, `https://` otherwise."""
    use_http = is_local(registry) if plain_http is None else plain_http
    return f"{'http' if use_http else 'https'}://{registry}"


class ASGIAppTransport(httpx.BaseTransport):
    """A synchronous httpx transport that runs requests against an ASGI app in process.

    The app runs in an event loop on a helper thread (an anyio blocking portal) for the
    lifetime of the transport. Bodies are buffered: this is for tests, not for GB blobs.
    """

    def __init__(self, app: Any) -> None:
        from anyio.from_thread import start_blocking_portal

        self._inner = httpx.ASGITransport(app=app)
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # Copy every piece: senders may reuse one buffer between chunks.
        body = b"".join(bytes(part) for part in request.stream)  # type: ignore[union-attr]
        async_request = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._inner.handle_async_request(async_request)
            data = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, data

        status, headers, data = self._portal.call(call)
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(data), request=request
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._portal_cm.__exit__(None, None, None)


def iter_file_range(
    path: str, start: int, length: int, read_size: int = 4 << 20
) -> Iterator[memoryview]:
    """Yield `length` bytes of `path` from `start`, through one reused aligned buffer.

    Each view is valid until the next is requested; httpx copies it onto the wire before that.
    """
    from modelyard.oci.digest import aligned_buffer

    buf = aligned_buffer(read_size)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            left = length
            while left > 0:
                n = f.readinto(view[: min(read_size, left)])
                if not n:
                    raise OSError(f"{path} is shorter than expected ({length - left} of {length})")
                left -= n
                yield view[:n]
    finally:
        view.release()
        with contextlib.suppress(BufferError):  # a consumer still holds a view: let GC close
            buf.close()
