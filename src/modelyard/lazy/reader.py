"""`modelyard.open(REF, PATH)`: a seekable, read-only file over a file of a remote image.

For a file in an eStargz layer, a read fetches only the chunks it covers (one Range request for
adjacent chunks), verifies each against its TOC digest, and keeps the last few in memory and
every one in the content cache. Sequential small reads fetch one chunk ahead. A file already
whole in the cache, or in a layer that cannot be read by ranges, is read from the cache.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import IO

from modelyard.client.registry import RegistryClient
from modelyard.lazy.cache import ContentCache
from modelyard.lazy.image import Located, RemoteImage
from modelyard.oci import estargz

#: Chunks kept in memory per open file.
MEMORY_CHUNKS = 4
#: At most this many chunks in one Range request (bounds memory for huge reads).
MAX_CHUNKS_PER_REQUEST = 8


class LazyFile(io.RawIOBase):
    """Raw, seekable access to one eStargz-layer file; wrap in `io.BufferedReader`."""

    def __init__(self, image: RemoteImage, located: Located, own_image: bool = False) -> None:
        super().__init__()
        assert located.toc_file is not None
        self._image = image
        self._own_image = own_image
        self._loc = located
        self._file = located.toc_file
        self.name = located.path
        self._pos = 0
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        self._last_index = -2
        self._ahead = 0

    @property
    def bytes_fetched(self) -> int:
        return self._image.bytes_fetched

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._file.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._file.size - self._pos)
        if want <= 0:
            return 0
        first = self._file.chunk_index(self._pos)
        last = self._file.chunk_index(self._pos + want - 1)
        last = min(last, first + MAX_CHUNKS_PER_REQUEST - 1)
        # Read-ahead: a scan that moves on to the next chunk fetches the chunks after it too,
        # a window that doubles while the scan goes on (1, 2, 4, ...) and resets on a seek.
        if first == self._last_index + 1:
            self._ahead = min(max(1, 2 * self._ahead), MAX_CHUNKS_PER_REQUEST - 1)
        elif first != self._last_index:
            self._ahead = 0
        ahead = self._ahead if last == first else 0
        # Refill the window only once half of it is consumed: fewer, larger requests.
        ready = 0
        while last + ready + 1 in self._chunks:
            ready += 1
        if ready > ahead // 2:
            ahead = 0
        self._load(first, min(last + ahead, len(self._file.chunks) - 1))
        done = 0
        for i in range(first, last + 1):
            chunk = self._chunks[i]
            self._chunks.move_to_end(i)
            start = self._pos - self._file.chunks[i].chunk_offset
            n = min(len(chunk) - start, want - done)
            view[done : done + n] = chunk[start : start + n]
            done += n
            self._pos += n
        self._last_index = last
        return done

    def _load(self, first: int, last: int) -> None:
        """Make chunks [first, last] available: memory, then cache, then one Range request."""
        chunks = self._file.chunks
        missing = []
        for i in range(first, last + 1):
            if i in self._chunks:
                self._chunks.move_to_end(i)  # needed now: keep it past this load's evictions
                continue
            digest = chunks[i].digest
            data = self._image.cache.get(digest) if digest else None
            if data is not None and len(data) == chunks[i].size:
                self._remember(i, data)
            else:
                missing.append(i)
        # Contiguous runs of missing chunks, one request each.
        run: list[int] = []
        for i in missing:
            if run and i != run[-1] + 1:
                self._fetch(run)
                run = []
            run.append(i)
        if run:
            self._fetch(run)

    def _fetch(self, run: list[int]) -> None:
        chunks = self._file.chunks
        start, end = chunks[run[0]].offset, chunks[run[-1]].end
        data = self._image.read_range(self._loc.layer, start, end)
        for i in run:
            c = chunks[i]
            member = data[c.offset - start : c.end - start]
            content = estargz.chunk_from_member(self._file, c, member)
            if c.digest:
                self._image.cache.put(c.digest, content)
            self._remember(i, content)

    def _remember(self, i: int, data: bytes) -> None:
        self._chunks[i] = data
        self._chunks.move_to_end(i)
        while len(self._chunks) > max(MEMORY_CHUNKS, MAX_CHUNKS_PER_REQUEST + 1):
            self._chunks.popitem(last=False)

    def close(self) -> None:
        if not self.closed and self._own_image:
            self._image.close()
        self._chunks.clear()
        super().close()


def open_file(
    ref: str,
    path: str,
    *,
    client: RegistryClient | None = None,
    cache: ContentCache | None = None,
    platform: str | None = None,
    plain_http: bool | None = None,
    insecure: bool = False,
    buffer_size: int = 256 << 10,
) -> IO[bytes]:
    """Open file `path` of image `ref` for reading, fetching bytes on demand.

    Returns a seekable, read-only binary file. For files in eStargz layers only the chunks
    read are fetched (each verified against the TOC); otherwise the file is fetched whole into
    the content cache first (verified against the layer and file digests) and opened there.

    Raises:
        FileNotInImage, DigestMismatch, RemoteNotFound, AuthenticationError,
        RegistryUnreachable, InvalidReference.

    Example:
        >>> import modelyard
        >>> with modelyard.open("localhost:5000/org/bert:v1", "config.json") as f:
        ...     config = json.load(f)
    """
    image = RemoteImage(
        ref,
        client=client,
        cache=cache,
        platform=platform,
        plain_http=plain_http,
        insecure=insecure,
    )
    try:
        loc = image.locate(path)
        if loc.digest is not None and image.cache.has(loc.digest):
            image.close()
            return open(image.cache.path(loc.digest), "rb")
        if loc.toc_file is None or loc.toc_file.size == 0:
            digest = image.fetch_to_cache([loc])[loc.path]
            image.close()
            return open(image.cache.path(digest), "rb")
        raw = LazyFile(image, loc, own_image=True)
    except BaseException:
        image.close()
        raise
    return io.BufferedReader(raw, buffer_size=buffer_size)
