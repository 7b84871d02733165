"""One HTTP/1.1 request whose body is a byte range of a local file, sent with `sendfile`.

Pushing a GB blob through httpx costs the client a read into a buffer and a copy into the
socket for every byte, in Python-sized pieces. Over plain HTTP the kernel can send the file's
pages itself (`os.sendfile`, zero-copy), which leaves the CPU to the registry, which has to
hash every byte. TLS needs the bytes in user space, so `https://` keeps the httpx path, as do
bodies that are not files.

The request is framed and the response parsed by h11 (httpx's own HTTP/1.1 engine underneath),
so this module writes no HTTP syntax of its own. Each request uses a fresh connection that the
client closes after the response: bodies sent this way are large, so a connect is negligible.
A registry that answers before reading the whole body (a 401, a 413) is handled: the answer is
read even when sending failed because the server closed its side.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import h11
import httpx

from modelyard.client.transport import iter_file_range

#: sendfile is called for at most this many bytes at a time, so progress moves smoothly.
SEND_PIECE = 16 << 20
#: Headers this module writes itself: the body is framed by Content-Length, one request a
#: connection.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: Responses to uploads are empty or a small JSON error; a larger body is refused.
MAX_RESPONSE_BODY = 1 << 20


@dataclass
class FileBody:
    """`length` bytes of the file at `path` from `offset`; `on_sent(n)` hears of every piece."""

    path: str
    offset: int
    length: int
    on_sent: Callable[[int], None] | None = None

    def chunks(self) -> Iterator[memoryview]:
        """The same bytes through user space, for transports that cannot use sendfile."""
        for chunk in iter_file_range(self.path, self.offset, self.length):
            if self.on_sent:
                self.on_sent(len(chunk))
            yield chunk


def can_sendfile(url: httpx.URL) -> bool:
    """True for plain-HTTP URLs reached directly (no proxy from the environment), on systems
    with `os.sendfile`."""
    if url.scheme != "http" or not hasattr(os, "sendfile"):
        return False
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    # Undocumented in typeshed but long-standing in urllib.request (honours no_proxy).
    return bool(urllib.request.proxy_bypass_environment(url.host))  # type: ignore[attr-defined]


def send(
    request: httpx.Request, body: FileBody, timeout: float, connect_timeout: float = 15.0
) -> httpx.Response:
    """Send `request` (its method, URL and headers) with `body` by sendfile; return the whole
    response, already read.

    Raises:
        httpx.ConnectError, httpx.WriteError, httpx.WriteTimeout, httpx.ReadError,
        httpx.ReadTimeout, httpx.RemoteProtocolError: as httpx would, so callers retry alike.
        OSError: the file cannot be read, or is shorter than `body` says.
    """
    url = request.url
    port = url.port or 80
    with open(body.path, "rb") as f:
        try:
            sock = socket.create_connection((url.host, port), timeout=connect_timeout)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {url.host}:{port}: {exc}") from exc
        with sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _exchange(sock, request, f, body)


def _exchange(
    sock: socket.socket, request: httpx.Request, f: BinaryIO, body: FileBody
) -> httpx.Response:
    conn = h11.Connection(h11.CLIENT)
    fields = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _FRAMING_HEADERS]
    fields = [("Host", request.url.netloc.decode("ascii")), *fields]
    fields += [("Content-Length", str(body.length)), ("Connection", "close")]
    head = conn.send(
        h11.Request(method=request.method, target=request.url.raw_path, headers=fields)
    )
    assert head is not None
    # h11 frames the body without seeing it: it only needs its length.
    conn.send_with_data_passthrough(h11.Data(data=_Length(body.length)))  # type: ignore[arg-type]
    try:
        sock.sendall(head)
        offset, left = body.offset, body.length
        while left > 0:
            piece = min(SEND_PIECE, left)
            n = sock.sendfile(f, offset, piece)
            if n == 0:
                raise _ShortFile(f"{body.path} ends before byte {offset + left}")
            offset += n
            left -= n
            if body.on_sent:
                body.on_sent(n)
        conn.send(h11.EndOfMessage())
    except _ShortFile:
        raise
    except OSError as exc:
        # The server may have answered early (401, 413, an error) and closed: read it.
        early = _read_response(sock, conn, request, quiet=True)
        if early is not None:
            return early
        if isinstance(exc, TimeoutError):
            raise httpx.WriteTimeout(f"sending to {request.url}: {exc}", request=request) from exc
        raise httpx.WriteError(f"sending to {request.url}: {exc}", request=request) from exc
    response = _read_response(sock, conn, request, quiet=False)
    assert response is not None
    return response


class _ShortFile(OSError):
    """The file ended before the body did."""


class _Length:
    """Stands for the body in h11's bookkeeping: the bytes go by sendfile."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n


def _read_response(
    sock: socket.socket, conn: h11.Connection, request: httpx.Request, quiet: bool
) -> httpx.Response | None:
    """Read the response; with `quiet`, None instead of an error when none can be read."""
    status: h11.Response | None = None
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_RESPONSE_BODY:
                    raise httpx.RemoteProtocolError(
                        "the response to an upload is larger than 1 MiB", request=request
                    )
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except (OSError, h11.RemoteProtocolError, httpx.RemoteProtocolError) as exc:
        if quiet:
            return None
        if isinstance(exc, TimeoutError):
            raise httpx.ReadTimeout(f"waiting for {request.url}: {exc}", request=request) from exc
        if isinstance(exc, OSError):
            raise httpx.ReadError(f"reading from {request.url}: {exc}", request=request) from exc
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    if status is None:
        if quiet:
            return None
        raise httpx.RemoteProtocolError(
            f"{request.url} closed the connection without answering", request=request
        )
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    return httpx.Response(
        status.status_code,
        headers=[(bytes(k), bytes(v)) for k, v in status.headers],
        content=b"".join(parts),
        request=request,
    )
