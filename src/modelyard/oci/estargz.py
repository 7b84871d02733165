"""eStargz layers: a `tar+gzip` layer that can be read one file, or one chunk, at a time.

An eStargz blob is an ordinary gzip-compressed tar (every unpacker accepts it) cut into many
gzip members: a new member starts at the top of each non-empty regular file's payload and at
every chunk boundary inside it. The last tar entry, `stargz.index.json` (the TOC), lists every
entry and chunk with the offset of its gzip member and its sha256; a 51-byte empty gzip member
at the very end (the footer) holds the TOC's offset. A reader that knows the blob's size reads
the footer, then the TOC, then only the members of the files it needs, and verifies each chunk
against the TOC, whose own digest is in the layer descriptor's annotations.

The writer takes the calls of `TarWriter` and computes, in the same single pass and constant
memory, the diff_id, the blob digest, each chunk's and each file's digest, and the TOC digest.
Members are built here, byte for byte: chunks that do not compress are stored deflate blocks,
so a weight layer's bytes do not depend on the zlib build.

Spec: https://github.com/containerd/stargz-snapshotter/blob/main/docs/estargz.md
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import json
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import DigestMismatch, InvalidEStargz
from modelyard.oci.compress import (
    CHUNK,
    GZIP_HEADER,
    LayerDigests,
    crc32,
    deflate_chunk,
    is_compressible,
    stored_blocks,
)
from modelyard.oci.tar import TarWriter

TOC_NAME = "stargz.index.json"
FOOTER_SIZE = 51
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
PREFETCH_LANDMARK = ".prefetch.landmark"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
LANDMARK_CONTENT = b"\x0f"
#: Uncompressed bytes per chunk (each chunk is its own gzip member).
CHUNK_SIZE = 4 << 20

_FINAL_EMPTY_STORED = b"\x01\x00\x00\xff\xff"
_FOOTER_MAGIC = b"STARGZ"

Sink = Callable[[bytes | memoryview], None]
#: Returns the blob bytes [start, end) (end exclusive).
ReadRange = Callable[[int, int], bytes]


def footer(toc_offset: int) -> bytes:
    """The 51-byte footer: an empty gzip member whose extra field holds the TOC offset."""
    subfield = b"%016x" % toc_offset + _FOOTER_MAGIC
    extra = b"SG" + struct.pack("<H", len(subfield)) + subfield
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", len(extra)) + extra
    return header + _FINAL_EMPTY_STORED + b"\0" * 8


def parse_footer(data: bytes) -> int:
    """The TOC offset recorded in a footer.

    Raises:
        InvalidEStargz: `data` is not an eStargz footer.
    """
    if len(data) != FOOTER_SIZE or data[:4] != b"\x1f\x8b\x08\x04":
        raise InvalidEStargz("no eStargz footer at the end of the blob")
    (xlen,) = struct.unpack_from("<H", data, 10)
    extra = data[12 : 12 + xlen]
    if xlen != 26 or extra[:2] != b"SG" or struct.unpack_from("<H", extra, 2)[0] != 22:
        raise InvalidEStargz("eStargz footer has no SG extra subfield")
    subfield = extra[4:]
    if subfield[16:] != _FOOTER_MAGIC:
        raise InvalidEStargz("eStargz footer lacks the STARGZ magic")
    try:
        return int(subfield[:16], 16)
    except ValueError as exc:
        raise InvalidEStargz("eStargz footer holds no hexadecimal TOC offset") from exc


def _modtime(mtime: int) -> str:
    return dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class EStargzDigests(LayerDigests):
    """The digests of a written eStargz layer, plus what its descriptor must announce."""

    toc_digest: str = ""

    @property
    def annotations(self) -> dict[str, str]:
        return {
            TOC_DIGEST_ANNOTATION: self.toc_digest,
            UNCOMPRESSED_SIZE_ANNOTATION: str(self.uncompressed_size),
        }


@dataclass
class _OpenFile:
    entry: dict[str, Any]
    size: int
    pos: int = 0
    file_hash: Any = field(default_factory=hashlib.sha256)
    chunk_hash: Any = None
    chunk_entry: dict[str, Any] | None = None


class EStargzWriter:
    """Writes an eStargz layer to `sink`, with the calls of `TarWriter`.

    Entries are written in the order given (callers sort them); the no-prefetch landmark comes
    first. `close()` appends the TOC and footer and returns the digests.

    Args:
        sink: receives the compressed blob bytes, in order.
        mtime: modification time of every entry.
        level: zlib level for data that compresses.
        mode: "auto" stores data that does not compress; "gzip" deflates everything.
        chunk_size: uncompressed bytes per chunk of a regular file.
    """

    def __init__(
        self,
        sink: Sink,
        mtime: int = 0,
        level: int = 6,
        mode: str = "auto",
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if mode not in ("auto", "gzip"):
            raise ValueError(f"eStargz layers are gzip: compression {mode!r} is not possible")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._sink = sink
        self._level = level
        self._always_deflate = mode == "gzip"
        self._chunk_size = chunk_size
        self._modtime = _modtime(mtime)
        self._tar = TarWriter(self._feed, mtime)
        self._mtime = mtime
        self._entries: list[dict[str, Any]] = []
        self._file: _OpenFile | None = None
        self._closed = False
        # Whole-blob state.
        self._diff = hashlib.sha256()
        self._out = hashlib.sha256()
        self._size = 0
        self._usize = 0
        # Current gzip member.
        self._member_open = False
        self._crc = 0
        self._isize = 0
        self._buf = bytearray(CHUNK)
        self._fill = 0
        self._open_member()
        self._write_whole_file(NO_PREFETCH_LANDMARK, LANDMARK_CONTENT)

    # -- the TarWriter calls -------------------------------------------------------------------

    def add_dir(self, name: str) -> None:
        self._tar.add_dir(name)
        self._entries.append(self._entry(name.rstrip("/") + "/", "dir", 0o755))

    def add_symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        info.mtime = self._mtime
        info.uname = info.gname = ""
        if self._file is not None:
            raise RuntimeError("previous file entry not finished")
        self._feed(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        entry = self._entry(name, "symlink", 0o777)
        entry["linkName"] = target
        self._entries.append(entry)

    def begin_file(self, name: str, size: int) -> None:
        self._tar.begin_file(name, size)
        entry = self._entry(name, "reg", 0o644)
        if size:
            entry["size"] = size
        self._file = _OpenFile(entry, size)
        self._entries.append(entry)

    def write(self, data: bytes | memoryview) -> None:
        f = self._file
        if f is None:
            raise RuntimeError("write() outside of a file entry")
        view = data if isinstance(data, memoryview) else memoryview(data)
        view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        while len(view):
            if f.pos >= f.size:
                self._tar.write(view)  # raises: the file grew
            inner = f.pos % self._chunk_size
            if inner == 0:
                self._start_chunk(f)
            take = min(len(view), self._chunk_size - inner, f.size - f.pos)
            piece = view[:take]
            f.file_hash.update(piece)
            if f.chunk_hash is not None:
                f.chunk_hash.update(piece)
            self._tar.write(piece)
            f.pos += take
            view = view[take:]

    def end_file(self) -> str:
        """Finish the current file and return the sha256 digest of its content."""
        f = self._file
        if f is None:
            raise RuntimeError("end_file() without begin_file()")
        self._tar.end_file()  # raises if the file was short
        self._finish_chunk(f)
        digest = "sha256:" + f.file_hash.hexdigest()
        f.entry["digest"] = digest
        if f.size and f.size <= self._chunk_size:
            # A file of one chunk: its chunk digest is its digest (hashed once, here).
            f.entry["chunkDigest"] = digest
        self._file = None
        return digest

    def close(self) -> EStargzDigests:
        """Append the TOC and the footer; return the layer's digests."""
        if self._closed:
            raise RuntimeError("writer already closed")
        if self._file is not None:
            raise RuntimeError("previous file entry not finished")
        self._closed = True
        toc = json.dumps(
            {"version": 1, "entries": self._entries}, indent="\t", ensure_ascii=False
        ).encode()
        self._close_member()
        toc_offset = self._size
        self._open_member()
        self._tar.begin_file(TOC_NAME, len(toc))
        self._tar.write(toc)
        self._tar.end_file()
        self._tar.close()
        self._close_member()
        self._emit(footer(toc_offset))
        return EStargzDigests(
            diff_id="sha256:" + self._diff.hexdigest(),
            digest="sha256:" + self._out.hexdigest(),
            size=self._size,
            uncompressed_size=self._usize,
            toc_digest="sha256:" + hashlib.sha256(toc).hexdigest(),
        )

    # -- internals -----------------------------------------------------------------------------

    def _entry(self, name: str, kind: str, mode: int) -> dict[str, Any]:
        # Field order follows the spec's listing so that the TOC reads like other writers'.
        return {
            "name": name,
            "type": kind,
            "modtime": self._modtime,
            "mode": mode,
            "uid": 0,
            "gid": 0,
        }

    def _write_whole_file(self, name: str, content: bytes) -> None:
        self.begin_file(name, len(content))
        self.write(content)
        self.end_file()

    def _start_chunk(self, f: _OpenFile) -> None:
        self._finish_chunk(f)
        self._close_member()
        offset = self._size
        self._open_member()
        if f.pos == 0:
            entry = f.entry
        else:
            entry = {"name": f.entry["name"], "type": "chunk"}
            self._entries.append(entry)
        entry["offset"] = offset
        if f.pos:
            entry["chunkOffset"] = f.pos
        if f.size - f.pos > self._chunk_size:
            entry["chunkSize"] = self._chunk_size  # the last chunk says 0, i.e. "the rest"
        f.chunk_entry = entry
        # Files of one chunk take their chunk digest from the file digest in end_file().
        f.chunk_hash = hashlib.sha256() if f.size > self._chunk_size else None

    def _finish_chunk(self, f: _OpenFile) -> None:
        if f.chunk_entry is not None and f.chunk_hash is not None:
            f.chunk_entry["chunkDigest"] = "sha256:" + f.chunk_hash.hexdigest()
        f.chunk_entry = None

    def _emit(self, data: bytes | memoryview) -> None:
        if data:
            self._out.update(data)
            self._size += len(data)
            self._sink(data)

    def _open_member(self) -> None:
        assert not self._member_open
        self._emit(GZIP_HEADER)
        self._member_open = True
        self._crc = 0
        self._isize = 0

    def _close_member(self) -> None:
        if not self._member_open:
            return
        if self._fill:
            self._encode(memoryview(self._buf)[: self._fill])
            self._fill = 0
        self._emit(_FINAL_EMPTY_STORED)
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._isize & 0xFFFFFFFF))
        self._member_open = False

    def _feed(self, data: bytes | memoryview) -> None:
        """Uncompressed tar bytes into the current member."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        n = len(view)
        if not n:
            return
        self._diff.update(view)
        self._usize += n
        self._isize += n
        self._crc = crc32(view, self._crc)
        # Pieces are cut at fixed offsets of the member's content, so the bytes depend on the
        # content only, never on how the caller sliced its writes.
        pos = 0
        while pos < n:
            take = min(CHUNK - self._fill, n - pos)
            if self._fill == 0 and take == CHUNK:
                self._encode(view[pos : pos + CHUNK])
            else:
                self._buf[self._fill : self._fill + take] = view[pos : pos + take]
                self._fill += take
                if self._fill == CHUNK:
                    self._encode(memoryview(self._buf))
                    self._fill = 0
            pos += take

    def _encode(self, piece: memoryview) -> None:
        if self._always_deflate or is_compressible(piece):
            self._emit(deflate_chunk(piece, self._level))
        else:
            for block in stored_blocks(piece):
                self._emit(block)


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One chunk of a regular file: where its gzip member is, and what it decompresses to."""

    #: Offset of the gzip member in the blob, and of the next member (end of the range to fetch).
    offset: int
    end: int
    #: Uncompressed bytes of the member to skip before this chunk (other writers pack several).
    inner_offset: int
    #: Offset and size of the chunk in the file.
    chunk_offset: int
    size: int
    digest: str | None


@dataclass(frozen=True)
class TocFile:
    name: str
    size: int
    digest: str | None
    mode: int
    chunks: tuple[Chunk, ...]

    def chunk_index(self, offset: int) -> int:
        """Index of the chunk holding byte `offset` of the file."""
        starts = [c.chunk_offset for c in self.chunks]
        return max(0, bisect.bisect_right(starts, offset) - 1)


@dataclass(frozen=True)
class Toc:
    """A parsed, verified table of contents."""

    digest: str
    offset: int
    entries: tuple[dict[str, Any], ...]
    files: dict[str, TocFile]
    #: The TOC JSON exactly as it was read (and verified).
    raw: bytes = b""

    def names(self) -> list[str]:
        return [e["name"] for e in self.entries if e.get("type") != "chunk"]

    def file(self, name: str) -> TocFile | None:
        return self.files.get(clean_name(name))


def clean_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _int(entry: dict[str, Any], key: str) -> int:
    value = entry.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEStargz(f"TOC entry {entry.get('name')!r}: {key} must be a natural number")
    return value


def parse_toc(toc_json: bytes, toc_offset: int, expected_digest: str | None = None) -> Toc:
    """Parse a TOC, checking its digest against the layer annotation when given.

    Raises:
        DigestMismatch: the TOC does not hash to `expected_digest`.
        InvalidEStargz: the TOC is not valid version-1 eStargz JSON.
    """
    digest = "sha256:" + hashlib.sha256(toc_json).hexdigest()
    if expected_digest is not None and digest != expected_digest:
        raise DigestMismatch(expected_digest, digest, "eStargz TOC")
    try:
        doc = json.loads(toc_json)
    except ValueError as exc:
        raise InvalidEStargz(f"TOC is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise InvalidEStargz("TOC version must be 1")
    entries = doc.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidEStargz("TOC entries must be a list of objects")
    # Every member start, sorted: a chunk's bytes end where the next member begins.
    starts = sorted(
        {
            _int(e, "offset")
            for e in entries
            if e.get("type") in ("reg", "chunk") and e.get("offset")
        }
        | {toc_offset}
    )
    files: dict[str, TocFile] = {}
    current: dict[str, Any] | None = None
    chunks: list[Chunk] = []

    def finish() -> None:
        if current is not None:
            name = clean_name(current["name"])
            files[name] = TocFile(
                name,
                _int(current, "size"),
                current.get("digest"),
                _int(current, "mode"),
                tuple(chunks),
            )

    for e in entries:
        kind = e.get("type")
        if not isinstance(e.get("name"), str):
            raise InvalidEStargz("TOC entry without a name")
        if kind == "chunk":
            if current is None:
                raise InvalidEStargz("TOC chunk entry before any regular file")
        elif kind == "reg":
            finish()
            current, chunks = e, []
        else:
            continue
        size = _int(current, "size")
        if size == 0:
            continue
        offset = _int(e, "offset")
        chunk_offset = _int(e, "chunkOffset")
        chunk_size = _int(e, "chunkSize") or size - chunk_offset
        if offset == 0 or chunk_offset + chunk_size > size:
            raise InvalidEStargz(f"TOC entry {e['name']!r} has an invalid offset or size")
        i = bisect.bisect_right(starts, offset)
        end = starts[i] if i < len(starts) else toc_offset
        chunks.append(
            Chunk(
                offset, end, _int(e, "innerOffset"), chunk_offset, chunk_size, e.get("chunkDigest")
            )
        )
    finish()
    return Toc(digest, toc_offset, tuple(entries), files, toc_json)


def decompress_member(data: bytes, skip: int, size: int) -> bytes:
    """Bytes [skip, skip + size) of the gzip member at the start of `data`.

    Raises:
        InvalidEStargz: `data` does not start with a gzip member that long.
    """
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(data, skip + size)
    except zlib.error as exc:
        raise InvalidEStargz(f"corrupt gzip member: {exc}") from exc
    if len(out) < skip + size:
        raise InvalidEStargz("gzip member is shorter than the TOC says")
    return out[skip : skip + size]


def read_toc(
    read_range: ReadRange, blob_size: int, expected_digest: str | None = None, tail: int = 64 << 10
) -> Toc:
    """Read the footer and TOC of an eStargz blob through `read_range`.

    One request when the TOC fits in the last `tail` bytes, two otherwise.

    Raises:
        InvalidEStargz, DigestMismatch.
    """
    if blob_size < FOOTER_SIZE:
        raise InvalidEStargz("blob too small to be eStargz")
    start = max(0, blob_size - tail)
    data = read_range(start, blob_size)
    if len(data) != blob_size - start:
        raise InvalidEStargz("short read of the blob's tail")
    toc_offset = parse_footer(data[-FOOTER_SIZE:])
    toc_end = blob_size - FOOTER_SIZE
    if toc_offset >= toc_end:
        raise InvalidEStargz("TOC offset points past the blob")
    if toc_offset >= start:
        member = data[toc_offset - start : toc_end - start]
    else:
        member = read_range(toc_offset, toc_end)
    try:
        raw = zlib.decompressobj(31).decompress(member)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            info = tar.next()
            if info is None or clean_name(info.name) != TOC_NAME or not info.isfile():
                raise InvalidEStargz(f"the TOC member does not hold {TOC_NAME}")
            f = tar.extractfile(info)
            assert f is not None
            toc_json = f.read()
    except (zlib.error, tarfile.TarError) as exc:
        raise InvalidEStargz(f"cannot read the TOC: {exc}") from exc
    return parse_toc(toc_json, toc_offset, expected_digest)


def verify_chunk(file: TocFile, chunk: Chunk, data: bytes) -> None:
    """Raises: DigestMismatch if `data` is not the chunk the TOC describes."""
    if chunk.digest is None:
        return
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != chunk.digest:
        raise DigestMismatch(chunk.digest, actual, f"{file.name} chunk at {chunk.chunk_offset}")


def chunk_from_member(file: TocFile, chunk: Chunk, member: bytes) -> bytes:
    """Decompress and verify one chunk from the bytes [chunk.offset, chunk.end) of the blob.

    Raises:
        DigestMismatch: the bytes are not the chunk the (verified) TOC describes, whether they
            still decompress (a wrong chunk digest) or not (a broken gzip member).
    """
    try:
        data = decompress_member(member, chunk.inner_offset, chunk.size)
    except InvalidEStargz as exc:
        if chunk.digest is None:
            raise
        raise DigestMismatch(
            chunk.digest, f"undecodable bytes ({exc})", f"{file.name} chunk at {chunk.chunk_offset}"
        ) from exc
    verify_chunk(file, chunk, data)
    return data


def _groups(chunks: tuple[Chunk, ...], batch: int) -> Iterator[tuple[Chunk, ...]]:
    """Runs of at most `batch` chunks whose members are adjacent (or shared) in the blob."""
    group: list[Chunk] = []
    for c in chunks:
        if group and (len(group) == batch or c.offset not in (group[-1].end, group[-1].offset)):
            yield tuple(group)
            group = []
        group.append(c)
    if group:
        yield tuple(group)


def iter_file(
    read_range: ReadRange, file: TocFile, *, verify_file: bool = True, batch: int = 4
) -> Iterator[bytes]:
    """Yield a file's content chunk by chunk, each verified against its chunk digest.

    Adjacent chunks are fetched `batch` at a time, one range each. With `verify_file`, the
    whole-file digest is checked after the last chunk (so a consumer must not trust the
    content before the end); pass False when the consumer hashes the content itself.

    Raises:
        DigestMismatch, InvalidEStargz.
    """
    h = hashlib.sha256() if verify_file and file.digest is not None else None
    for group in _groups(file.chunks, batch):
        start = group[0].offset
        data = read_range(start, max(c.end for c in group))
        for c in group:
            content = chunk_from_member(file, c, data[c.offset - start : c.end - start])
            if h is not None:
                h.update(content)
            yield content
        del data
    if h is not None and file.digest is not None:
        actual = "sha256:" + h.hexdigest()
        if actual != file.digest:
            raise DigestMismatch(file.digest, actual, file.name)
