"""`RegistryClient`: the distribution-spec API seen from the client, one method per operation.

Every answer is checked: manifests and blobs are verified against their digest, error bodies
become `RegistryError` (or `AuthenticationError` / `RemoteNotFound`), transport failures are
retried with backoff and become `RegistryUnreachable` at the end. Uploads of big blobs go in
chunks (PATCH with `Content-Range`) and resume from the registry's upload status after a
failure; if the registry dropped the session, the upload starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from modelyard import __version__
from modelyard.client import rawhttp
from modelyard.client.auth import Authenticator, Credentials, find_credentials
from modelyard.client.rawhttp import FileBody
from modelyard.client.tls import connection, is_certificate_error
from modelyard.client.transport import iter_file_range
from modelyard.errors import (
    AuthenticationError,
    DigestMismatch,
    RegistryUnreachable,
    RemoteNotFound,
)
from modelyard.oci import mediatypes as mt
from modelyard.oci.digest import Digest, digest_bytes
from modelyard.oci.reference import api_host
from modelyard.registry.errcodes import RegistryError, parse_error_body

#: Every manifest type modelyard understands, most specific first.
MANIFEST_ACCEPT = (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST)
#: Registries reject larger manifests (distribution: 4 MiB); so do we, before reading them whole.
MAX_MANIFEST_SIZE = 4 << 20
#: Blobs up to this size go in one PUT; bigger ones in PATCH chunks of `chunk_size`.
#: Each chunk costs a round trip and a flush on the registry; a failure costs at most one.
DEFAULT_CHUNK_SIZE = 256 << 20
#: Upload read size: 4 MiB reads into an aligned buffer measured 2x faster than 1 MiB ones
#: (larger ones make every allocation on the way to the socket an mmap).
READ_SIZE = 4 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

Progress = Callable[[int], None]
BlobSource = str | Path | bytes | IO[bytes]


@dataclass(frozen=True)
class ManifestInfo:
    media_type: str
    digest: str
    size: int


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def push_scope(name: str) -> str:
    return f"repository:{name}:pull,push"


def _retry_after(resp: httpx.Response, default: float) -> float:
    value = resp.headers.get("retry-after", "")
    return min(float(value), 30.0) if value.isdigit() else default


class _Chunks:
    """Byte ranges of a blob source as iterables of chunks, re-readable for retries."""

    def __init__(self, source: BlobSource) -> None:
        self._source = source
        if isinstance(source, str | Path):
            self.path: str | None = str(source)
        else:
            self.path = None
        if not isinstance(source, str | Path | bytes | bytearray | memoryview) and not (
            hasattr(source, "seek") and source.seekable()
        ):
            raise TypeError("upload_blob needs a path, bytes, or a seekable binary file")

    def range(self, start: int, length: int) -> Iterator[bytes | memoryview]:
        source = self._source
        if self.path is not None:
            yield from iter_file_range(self.path, start, length, READ_SIZE)
        elif isinstance(source, bytes | bytearray | memoryview):
            view = memoryview(source)
            for pos in range(start, start + length, READ_SIZE):
                yield view[pos : min(pos + READ_SIZE, start + length)]
        else:
            f: Any = source
            f.seek(start)
            left = length
            while left > 0:
                data = f.read(min(READ_SIZE, left))
                if not data:
                    raise OSError(f"blob source is shorter than expected ({length - left} bytes)")
                left -= len(data)
                yield data


class _SessionLost(Exception):
    """The registry no longer knows the upload session; start a new one."""


class RegistryClient:
    """A client for one registry (`host[:port]`).

    Args:
        registry: `host[:port]` as in a reference; `docker.io` means Docker Hub.
        plain_http: force `http://` (True) or `https://` (False); default: plain HTTP for
            loopback hosts only, as Docker does.
        insecure: do not verify TLS certificates.
        ca_cert: a PEM file of CA certificates to trust besides the default ones (see
            `modelyard.client.tls` for `certs.d` directories and environment variables).
        transport: an `httpx.BaseTransport` to send through (tests pass an in-process one).
        credentials: explicit credentials; default: looked up in the login files on first need.
        chunk_size: blobs bigger than this are uploaded in PATCH chunks of this size.
        retries: attempts after the first for transient failures.
        sendfile: send blobs that are files with `os.sendfile` over plain HTTP (see
            `modelyard.client.rawhttp`); https, proxies and other transports use httpx.

    Example:
        >>> with RegistryClient("localhost:5000") as client:
        ...     data, media_type, digest = client.get_manifest("org/model", "v1")
    """

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool | None = None,
        insecure: bool = False,
        ca_cert: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
        credentials: Credentials | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float = 300.0,
        sendfile: bool = True,
    ) -> None:
        self.registry = registry
        endpoint = api_host(registry)  # docker.io answers at registry-1.docker.io
        self.base, verify = connection(endpoint, plain_http, insecure, ca_cert)
        self.auth = Authenticator(
            registry, credentials if credentials is not None else lambda: find_credentials(registry)
        )
        self.chunk_size = chunk_size
        self.retries = retries
        self.backoff = backoff
        self._timeout = timeout
        self._sendfile = sendfile and transport is None
        self._http = httpx.Client(
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=15.0),
            # Identity: digests are over the stored bytes, never over a transfer encoding.
            headers={"User-Agent": f"modelyard/{__version__}", "Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # plumbing

    def _url(self, path_or_url: str) -> httpx.URL:
        return httpx.URL(self.base).join(path_or_url)

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | Callable[[], Iterable[bytes | memoryview] | FileBody] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """Send one request with auth and retries; returns the final response (any status).

        `content` is bytes or a factory of chunk iterables or `FileBody`s, so the body can be
        sent again after an auth challenge or a transient failure. A `FileBody` goes by
        sendfile where it can (plain HTTP, real sockets), else through httpx.
        """
        target = url if isinstance(url, httpx.URL) else self._url(url)
        attempt = 0
        auth_rounds = 0
        while True:
            if self.auth.needs_token(scope):
                self.auth.fetch_token(scope, self._http)
            req_headers = dict(headers or {})
            authorization = self.auth.header(scope)
            if authorization:
                req_headers["Authorization"] = authorization
            # httpx writes memoryviews to the socket as well as bytes.
            body: Any = content() if callable(content) else content
            raw = isinstance(body, FileBody)
            if raw and not (self._sendfile and rawhttp.can_sendfile(target)):
                body, raw = body.chunks(), False
            request = self._http.build_request(
                method, target, headers=req_headers, content=None if raw else body, params=params
            )
            try:
                if raw:
                    resp = rawhttp.send(request, body, self._timeout)
                else:
                    resp = self._http.send(request, stream=stream, follow_redirects=follow)
            except httpx.TransportError as exc:
                if not retry or attempt >= self.retries or is_certificate_error(exc):
                    raise RegistryUnreachable(self.registry, _describe(exc)) from exc
                time.sleep(self.backoff * 2**attempt)
                attempt += 1
                continue
            if resp.status_code == 401 and auth_rounds < 2:
                resp.read()
                resp.close()
                self.auth.on_challenge(resp, scope, self._http, authorization is not None)
                auth_rounds += 1
                continue
            if resp.status_code in _RETRY_STATUS and retry and attempt < self.retries:
                resp.read()
                resp.close()
                time.sleep(_retry_after(resp, self.backoff * 2**attempt))
                attempt += 1
                continue
            return resp

    def _error(self, resp: httpx.Response, what: str) -> Exception:
        """The exception for an unexpected answer about `what`."""
        try:
            body = resp.read()
        except (httpx.HTTPError, httpx.StreamError):
            body = b""
        err = parse_error_body(resp.status_code, body)
        if resp.status_code == 401:
            return AuthenticationError(self.registry, f"{what}: authentication refused")
        if resp.status_code == 403:
            return AuthenticationError(self.registry, f"{what}: {err.message}")
        if resp.status_code == 404:
            return RemoteNotFound(f"{self.registry}/{what}", err.message)
        return err

    # API

    def ping(self) -> None:
        """Check that the registry speaks the v2 API (and that credentials work, if it asks).

        Raises: RegistryUnreachable, AuthenticationError, RegistryError.
        """
        resp = self._send("GET", "/v2/", "")
        resp.read()
        if resp.status_code != 200:
            raise self._error(resp, "/v2/")

    def head_manifest(
        self, name: str, reference: str, accept: Iterable[str] = MANIFEST_ACCEPT
    ) -> ManifestInfo | None:
        """The manifest's media type, digest and size, or None if the registry lacks it."""
        resp = self._send(
            "HEAD",
            f"/v2/{name}/manifests/{reference}",
            pull_scope(name),
            headers={"Accept": ", ".join(accept)},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error(resp, f"{name}:{reference}")
        digest = resp.headers.get("docker-content-digest", "")
        if not digest and _is_digest(reference):
            digest = reference
        return ManifestInfo(
            resp.headers.get("content-type", "").split(";")[0].strip(),
            digest,
            int(resp.headers.get("content-length", "0") or 0),
        )

    def get_manifest(
        self, name: str, reference: str, accept: Iterable[str] = MANIFEST_ACCEPT
    ) -> tuple[bytes, str, str]:
        """Fetch a manifest or index by tag or digest.

        Returns:
            (bytes exactly as stored, media type, digest). The digest is verified: against
            `reference` when it is a digest, else against the registry's
            `Docker-Content-Digest` header, if any.

        Raises:
            RemoteNotFound, AuthenticationError, RegistryError, DigestMismatch,
            RegistryUnreachable.
        """
        resp = self._send(
            "GET",
            f"/v2/{name}/manifests/{reference}",
            pull_scope(name),
            headers={"Accept": ", ".join(accept)},
            stream=True,
        )
        try:
            if resp.status_code != 200:
                raise self._error(resp, f"{name}:{reference}")
            chunks: list[bytes] = []
            total = 0
            for chunk in _iter_raw(resp, READ_SIZE):
                total += len(chunk)
                if total > MAX_MANIFEST_SIZE:
                    raise RegistryError(
                        "MANIFEST_INVALID", f"manifest {name}:{reference} is larger than 4 MiB"
                    )
                chunks.append(chunk)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(self.registry, _describe(exc)) from exc
        finally:
            resp.close()
        data = b"".join(chunks)
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        expected = reference if _is_digest(reference) else resp.headers.get("docker-content-digest")
        algorithm = Digest.parse(expected).algorithm if expected and _is_digest(expected) else None
        digest = digest_bytes(data, algorithm or "sha256")
        if expected and _is_digest(expected) and digest != expected:
            raise DigestMismatch(expected, digest, f"manifest {name}:{reference}")
        return data, media_type, digest

    def put_manifest(self, name: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag or its digest; returns its digest.

        Raises: RegistryError (e.g. MANIFEST_BLOB_UNKNOWN, MANIFEST_INVALID),
            AuthenticationError, DigestMismatch (the registry computed another digest).
        """
        resp = self._send(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            push_scope(name),
            headers={"Content-Type": media_type},
            content=data,
        )
        resp.read()
        if resp.status_code not in (200, 201, 202):
            raise self._error(resp, f"{name}:{reference}")
        algorithm = Digest.parse(reference).algorithm if _is_digest(reference) else "sha256"
        digest = digest_bytes(data, algorithm)
        returned = resp.headers.get("docker-content-digest")
        if (
            returned
            and _is_digest(returned)
            and Digest.parse(returned).algorithm == algorithm
            and returned != digest
        ):
            raise DigestMismatch(digest, returned, f"manifest {name}:{reference} (registry)")
        return digest

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a manifest by digest (or a tag, where the registry allows it)."""
        resp = self._send("DELETE", f"/v2/{name}/manifests/{reference}", push_scope(name))
        resp.read()
        if resp.status_code not in (200, 202, 204):
            raise self._error(resp, f"{name}:{reference}")

    def list_tags(self, name: str, page_size: int | None = None) -> list[str]:
        """Every tag of a repository, following `Link` pagination."""
        tags: list[str] = []
        url: str | httpx.URL = f"/v2/{name}/tags/list"
        params = {"n": str(page_size)} if page_size else None
        while True:
            resp = self._send("GET", url, pull_scope(name), params=params)
            resp.read()
            if resp.status_code != 200:
                raise self._error(resp, name)
            try:
                page = resp.json().get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError("UNKNOWN", f"tag list of {name} is not JSON") from exc
            tags.extend(str(t) for t in page)
            link = resp.links.get("next", {}).get("url")
            if not link:
                return tags
            url, params = self._url(link), None

    def head_blob(self, name: str, digest: str) -> int | None:
        """The blob's size if the repository holds it, else None."""
        resp = self._send("HEAD", f"/v2/{name}/blobs/{digest}", pull_scope(name), follow=True)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._error(resp, f"{name}@{digest}")
        return int(resp.headers.get("content-length", "0") or 0)

    def get_blob_stream(
        self, name: str, digest: str, *, read_size: int = READ_SIZE
    ) -> Iterator[bytes]:
        """Yield the blob's bytes; verify the digest when the last byte has arrived.

        A connection lost in the middle is resumed with a Range request from the last byte
        received. The consumer must write to a temp file: `DigestMismatch` comes at the end.

        Raises:
            RemoteNotFound, AuthenticationError, DigestMismatch, RegistryUnreachable.
        """
        hasher = hashlib.new(Digest.parse(digest).algorithm)
        received = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else None
            resp = self._send(
                "GET",
                f"/v2/{name}/blobs/{digest}",
                pull_scope(name),
                headers=headers,
                stream=True,
                follow=True,
            )
            try:
                if received and resp.status_code == 200:
                    # The server ignored Range: skip what we already have.
                    skip = received
                elif resp.status_code in (200, 206):
                    skip = 0
                else:
                    raise self._error(resp, f"{name}@{digest}")
                for chunk in _drop(_iter_raw(resp, read_size), skip):
                    hasher.update(chunk)
                    received += len(chunk)
                    yield chunk
                break
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.retries:
                    raise RegistryUnreachable(self.registry, _describe(exc)) from exc
                time.sleep(self.backoff * 2 ** (failures - 1))
            finally:
                resp.close()
        actual = f"{Digest.parse(digest).algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            raise DigestMismatch(digest, actual, f"blob {name}@{digest}")

    def get_blob_range(self, name: str, digest: str, start: int, end: int) -> bytes:
        """Exactly the bytes `[start, end)` of a blob (half-open, like a slice), in one request.

        The bytes cannot be verified against the blob digest (that needs the whole blob);
        callers check them against per-file digests.

        Raises:
            ValueError: `start`/`end` out of order or negative.
            RegistryError: RANGE_INVALID if the blob is shorter than `end`.
            RemoteNotFound, AuthenticationError, RegistryUnreachable.
        """
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        if end == start:
            return b""
        want = end - start
        resp = self._send(
            "GET",
            f"/v2/{name}/blobs/{digest}",
            pull_scope(name),
            headers={"Range": f"bytes={start}-{end - 1}"},
            stream=True,
            follow=True,
        )
        try:
            if resp.status_code == 416:
                raise RegistryError(
                    "RANGE_INVALID", f"bytes {start}-{end - 1} are past the end of {digest}"
                )
            if resp.status_code == 206:
                skip = 0
                content_range = resp.headers.get("content-range", "")
                if not content_range.startswith(f"bytes {start}-"):
                    raise RegistryError(
                        "RANGE_INVALID", f"asked bytes {start}-{end - 1}, got {content_range!r}"
                    )
            elif resp.status_code == 200:
                skip = start  # Range ignored: read past the prefix, stop after the window
            else:
                raise self._error(resp, f"{name}@{digest}")
            out = bytearray()
            for chunk in _drop(_iter_raw(resp, READ_SIZE), skip):
                out += chunk[: want - len(out)]
                if len(out) >= want:
                    break
        except httpx.TransportError as exc:
            raise RegistryUnreachable(self.registry, _describe(exc)) from exc
        finally:
            resp.close()
        if len(out) != want:
            raise RegistryError(
                "RANGE_INVALID",
                f"asked {want} bytes at {start} of {digest}, the registry sent {len(out)}",
            )
        return bytes(out)

    def mount_blob(self, name: str, digest: str, from_name: str) -> bool:
        """Ask the registry to link `digest` from repository `from_name` into `name`.

        Returns True if mounted; False if the registry declined (then upload instead).
        """
        mounted, location = self._start_upload(name, mount=digest, from_name=from_name)
        if not mounted and location:
            # The registry opened a plain upload session instead; do not leave it dangling.
            with contextlib.suppress(RegistryUnreachable):
                self._send("DELETE", location, push_scope(name), retry=False).close()
        return mounted

    def _start_upload(
        self, name: str, mount: str | None = None, from_name: str | None = None
    ) -> tuple[bool, httpx.URL | None]:
        params = {"mount": mount, "from": from_name} if mount and from_name else None
        scope = push_scope(name)
        if from_name and from_name != name:
            scope += f" {pull_scope(from_name)}"
        resp = self._send("POST", f"/v2/{name}/blobs/uploads/", scope, params=params)
        resp.read()
        if resp.status_code == 201 and mount:
            return True, None
        if resp.status_code != 202:
            raise self._error(resp, f"{name} (upload)")
        location = resp.headers.get("location")
        if not location:
            raise RegistryError("BLOB_UPLOAD_INVALID", "upload started without a Location")
        return False, self._url(location)

    def upload_blob(
        self,
        name: str,
        source: BlobSource,
        digest: str,
        size: int,
        *,
        progress: Progress | None = None,
    ) -> None:
        """Upload a blob: one PUT up to `chunk_size`, else PATCH chunks with resume.

        Args:
            source: a file path, bytes, or a seekable binary file holding exactly the blob.
            digest: the blob's digest; the registry verifies it and rejects a mismatch.
            progress: called with byte counts as they are sent (negative after a rewind).

        Raises:
            RegistryError (DIGEST_INVALID, ...), AuthenticationError, RegistryUnreachable.
        """
        chunks = _Chunks(source)
        restarts = 0
        while True:
            sent = [0]
            try:
                self._upload_once(name, chunks, digest, size, progress, sent)
                return
            except _SessionLost as exc:
                if progress and sent[0]:
                    progress(-sent[0])
                restarts += 1
                if restarts > self.retries:
                    raise RegistryUnreachable(
                        self.registry, f"upload of {digest} kept failing: {exc}"
                    ) from exc
                time.sleep(self.backoff * 2 ** (restarts - 1))

    def _upload_once(
        self,
        name: str,
        chunks: _Chunks,
        digest: str,
        size: int,
        progress: Progress | None,
        sent: list[int],
    ) -> None:
        scope = push_scope(name)
        _, location = self._start_upload(name)
        assert location is not None

        def count(n: int) -> None:
            sent[0] += n
            if progress:
                progress(n)

        def body(start: int, length: int) -> Callable[[], Iterator[bytes | memoryview] | FileBody]:
            path = chunks.path
            if path is not None:
                return lambda: FileBody(path, start, length, count)

            def gen() -> Iterator[bytes | memoryview]:
                for chunk in chunks.range(start, length):
                    count(len(chunk))
                    yield chunk

            return gen

        octet = {"Content-Type": "application/octet-stream"}
        if size <= self.chunk_size:
            try:
                resp = self._send(
                    "PUT",
                    location.copy_merge_params({"digest": digest}),
                    scope,
                    headers={**octet, "Content-Length": str(size)},
                    content=body(0, size),
                    retry=False,
                )
                resp.read()
            except RegistryUnreachable as exc:
                raise _SessionLost(exc.reason) from exc
            if resp.status_code == 201:
                return
            if resp.status_code in _RETRY_STATUS or resp.status_code == 404:
                raise _SessionLost(f"HTTP {resp.status_code}")
            raise self._error(resp, f"{name}@{digest}")

        offset = 0
        failures = 0
        while offset < size:
            n = min(self.chunk_size, size - offset)
            try:
                resp = self._send(
                    "PATCH",
                    location,
                    scope,
                    headers={
                        **octet,
                        "Content-Length": str(n),
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    },
                    content=body(offset, n),
                    retry=False,
                )
                resp.read()
                status = resp.status_code
            except RegistryUnreachable:
                status = None
            if status == 202:
                failures = 0
                offset += n
                location = self._url(resp.headers.get("location") or str(location))
                held = _range_end(resp.headers.get("range", ""))
                if held is not None and held != offset:
                    # The registry kept another amount than sent: go on from what it has.
                    if progress:
                        progress(held - sent[0])
                    sent[0] = offset = held
                continue
            if status is not None and status not in _RETRY_STATUS and status != 416:
                if status == 404:
                    raise _SessionLost("upload session unknown")
                raise self._error(resp, f"{name}@{digest}")
            failures += 1
            if failures > self.retries:
                raise RegistryUnreachable(self.registry, f"chunk at {offset} kept failing")
            time.sleep(self.backoff * 2 ** (failures - 1))
            # Ask the registry how much it kept and go on from there.
            resumed, location = self._upload_status(location, scope)
            if progress:
                progress(resumed - sent[0])
            sent[0] = offset = resumed
        resp = self._send(
            "PUT",
            location.copy_merge_params({"digest": digest}),
            scope,
            headers={"Content-Length": "0"},
            content=b"",
        )
        resp.read()
        if resp.status_code == 201:
            return
        if resp.status_code == 404:
            raise _SessionLost("upload session unknown at commit")
        raise self._error(resp, f"{name}@{digest}")

    def _upload_status(self, location: httpx.URL, scope: str) -> tuple[int, httpx.URL]:
        """(bytes the registry holds for this session, the location to go on with)."""
        resp = self._send("GET", location, scope)
        resp.read()
        if resp.status_code not in (200, 204):
            raise _SessionLost(f"upload status HTTP {resp.status_code}")
        held = _range_end(resp.headers.get("range", "")) or 0
        return held, self._url(resp.headers.get("location") or str(location))


def _range_end(value: str) -> int | None:
    """Bytes held according to an upload `Range: 0-N` header (N + 1), or None."""
    if "-" not in value:
        return None
    try:
        return int(value.rsplit("-", 1)[1]) + 1
    except ValueError:
        return None


def _iter_raw(resp: httpx.Response, size: int) -> Iterator[bytes]:
    """The body as it arrives; transports that hand over a body already read work too."""
    if resp.is_stream_consumed:
        content = resp.content
        for pos in range(0, len(content), size):
            yield content[pos : pos + size]
        return
    # No re-chunking: pieces go on as they arrive (no extra copy, and a resume after a
    # dropped connection starts right after the last byte the caller received).
    yield from resp.iter_raw()


def _drop(chunks: Iterator[bytes], skip: int) -> Iterator[bytes]:
    """`chunks` without their first `skip` bytes (sent by a server that ignored Range)."""
    for chunk in chunks:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        yield chunk


def _is_digest(value: str) -> bool:
    try:
        Digest.parse(value)
    except ValueError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
