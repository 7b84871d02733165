"""Layer compressors that hash while they write, in one pass and constant memory.

A `LayerStream` takes the uncompressed layer bytes (a tar stream), and in the same pass
computes the diff_id (sha256 of the uncompressed bytes), compresses, hashes the compressed
bytes and writes them out. Modes:

- `auto` (default): a gzip member whose deflate stream is decided per 4 MiB chunk of input,
  on the chunk's first 16 KiB: chunks that compress (text, int8 weights) are deflated by zlib,
  chunks that do not (float weights) are written as *stored* deflate blocks built here, byte
  for byte, so a weight layer's bytes do not depend on the zlib build. Every gzip reader
  accepts the result.
- `gzip`: every chunk deflated by zlib.
- `zstd`: one zstd frame (the `zstandard` library).
- `none`: the tar itself.

Stored blocks keep their content on the same 64-byte grid as the tar stream: each holds
65472 (1023 x 64) bytes and is preceded by a frame of empty deflate blocks sized so that the
content lands at a blob offset congruent to its tar offset modulo 64 (one frame of 64 bytes per
block: 0.1% overhead). The diff_id, the blob digest and a file's own sha256 then see the same
64-byte SHA-256 blocks, and `sha256.update3` hashes all three in one pass.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from modelyard.oci import mediatypes as mt
from modelyard.oci import sha256

#: zlib.crc32's values, computed with PCLMULQDQ where the compiled module is available.
crc32: Callable[..., int] = zlib.crc32
try:  # PCLMULQDQ folding, about 2x zlib's CRC-32 here; same values
    from modelyard import _crc32 as _clmul  # type: ignore[attr-defined]

    if _clmul.available():
        crc32 = _clmul.crc32
except ImportError:
    pass

MODES: tuple[str, ...] = ("auto", "gzip", "zstd", "none")

CHUNK = 4 << 20
#: A chunk whose sample deflates to more than this fraction of its size is stored: float
#: weights land near 0.92 (a 7% gain at 15 MB/s), int8 weights and text well below.
STORE_RATIO = 0.85
SAMPLE = 16 << 10
_STORED_MAX = 0xFFFF
GRID = 64
#: Content bytes per stored block in a layer: the largest multiple of GRID a block can hold.
STORED_BLOCK = _STORED_MAX // GRID * GRID
_EMPTY_STORED = b"\x00\x00\x00\xff\xff"
# gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_EMPTY_STORED = b"\x01\x00\x00\xff\xff"

Sink = Callable[[bytes | memoryview], None]


def media_type(mode: str) -> str:
    return {
        "auto": mt.OCI_LAYER_GZIP,
        "gzip": mt.OCI_LAYER_GZIP,
        "zstd": mt.OCI_LAYER_ZSTD,
        "none": mt.OCI_LAYER,
    }[mode]


def stored_blocks(data: memoryview) -> list[bytes | memoryview]:
    """Non-final stored deflate blocks holding `data` (RFC 1951, 3.2.4), byte-aligned."""
    out: list[bytes | memoryview] = []
    pack = struct.pack
    for start in range(0, len(data), _STORED_MAX):
        piece = data[start : start + _STORED_MAX]
        n = len(piece)
        out.append(pack("<BHH", 0, n, n ^ 0xFFFF))
        out.append(piece)
    return out


def _frame_bits(fixed_empty: int) -> bytes:
    """`fixed_empty` empty fixed-Huffman blocks (10 bits each: BFINAL 0, BTYPE 01, the 7-bit
    end-of-block code), then the 3 header bits of a stored block, zero-padded to a byte."""
    bits = [0, 1, 0, *([0] * 7)] * fixed_empty + [0, 0, 0]
    bits += [0] * (-len(bits) % 8)
    return bytes(
        sum(bit << i for i, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8)
    )


def _frame_prefix(size: int) -> bytes | None:
    """`size` - 4 bytes of empty deflate blocks ending with the first byte of a stored block's
    header (LEN and NLEN follow), or None when no mix of empty blocks makes that size."""
    for fixed in range(8):
        bits = _frame_bits(fixed)
        rest = size - 4 - len(bits)
        if rest >= 0 and rest % len(_EMPTY_STORED) == 0:
            return _EMPTY_STORED * (rest // len(_EMPTY_STORED)) + bits
    return None


_FRAMES: dict[int, bytes] = {}


def stored_frame(length: int, shift: int) -> bytes:
    """The bytes before a non-final stored block of `length`: empty deflate blocks, then the
    block's header; the smallest such frame whose size is congruent to `shift` mod GRID."""
    shift %= GRID
    prefix = _FRAMES.get(shift)
    if prefix is None:
        size = shift
        while size < 5 or (prefix := _frame_prefix(size)) is None:
            size += GRID
        _FRAMES[shift] = prefix
    return prefix + struct.pack("<HH", length, length ^ 0xFFFF)


def is_compressible(chunk: memoryview) -> bool:
    sample = chunk[:SAMPLE]
    return len(zlib.compress(sample, 1)) < STORE_RATIO * len(sample)


def chunk_deflater(level: int) -> zlib._Compress:
    """A raw deflater for one chunk. A fresh one per chunk: the output never refers back across
    chunks, so stored and deflated chunks can follow each other freely; the chunk ends with a
    SYNC_FLUSH, byte-aligned."""
    return zlib.compressobj(level, zlib.DEFLATED, -15, 9)


def deflate_chunk(chunk: memoryview, level: int) -> bytes:
    c = chunk_deflater(level)
    return c.compress(chunk) + c.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True)
class LayerDigests:
    diff_id: str
    digest: str
    size: int
    uncompressed_size: int


# One hashing step: the hash objects to update together, and the bytes.
_HashOp = tuple[tuple[sha256.Hash, ...], bytes | bytearray | memoryview]


def _run_hash_ops(ops: list[_HashOp]) -> None:
    for hashes, data in ops:
        sha256.update_all(hashes, data)


class LayerStream:
    """Write uncompressed bytes in; compressed bytes go to `sink`; digests come out of `close`.

    `attach(h)` makes the bytes written until `detach()` also update `h` (a file's own sha256,
    hashed in the same pass as the layer's digests). With `hash_executor`, every hash update runs
    there, in order, while the caller's thread compresses and writes: the caller must then keep
    each buffer it wrote unchanged until `fence()` (a future of the hashing so far) is done.
    """

    def __init__(
        self,
        sink: Sink,
        mode: str = "auto",
        level: int = 6,
        hash_executor: Executor | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compression {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self.level = level
        self._sink = sink
        self._executor = hash_executor
        self._fence: Future[None] | None = None
        self._ops: list[_HashOp] = []
        self._diff = sha256.new()
        self._out = sha256.new()
        self._also: sha256.Hash | None = None
        self._size = 0
        self._usize = 0
        self._crc = 0
        # The current chunk (auto, gzip): None until decided, then "stored" or "deflate".
        self._chunk_mode: str | None = None
        # Tar bytes of the current chunk not emitted yet: the sample of an undecided chunk or
        # the start of a stored block. Already fed to the diff_id (and `also`).
        self._pending = bytearray()
        self._deflater: zlib._Compress | None = None
        self._zstd = None
        if mode == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdCompressor(
                level=3 if level == 6 else level, write_content_size=False, write_checksum=True
            ).compressobj(size=-1)
        elif mode in ("auto", "gzip"):
            self._emit(GZIP_HEADER)
        self._flush_ops()

    # -- the public calls ------------------------------------------------------------------

    def attach(self, h: sha256.Hash) -> None:
        self._also = h

    def detach(self) -> None:
        self._also = None

    def fence(self) -> Future[None] | None:
        """The hashing submitted so far (None without an executor, or before any)."""
        return self._fence

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        if not view:
            return
        if self.mode in ("none", "zstd"):
            self._absorb(view)
            self._usize += len(view)
            if self._zstd is not None:
                self._emit(self._zstd.compress(view))
            else:  # uncompressed: the blob digest is the diff_id
                self._size += len(view)
                self._sink(view)
            self._flush_ops()
            return
        self._crc = crc32(view, self._crc)
        # Chunks and stored blocks sit at fixed offsets of the uncompressed stream, so the
        # output depends on the content only, never on how the caller sliced its writes.
        pos = 0
        while pos < len(view):
            take = min(CHUNK - self._usize % CHUNK, len(view) - pos)
            self._chunk_piece(view[pos : pos + take])
            pos += take
        self._flush_ops()

    def close(self) -> LayerDigests:
        if self.mode == "zstd":
            assert self._zstd is not None
            self._emit(self._zstd.flush())
        elif self.mode in ("auto", "gzip"):
            if self._chunk_mode is None and self._pending:
                self._decide()
            self._end_chunk()
            self._emit(_FINAL_EMPTY_STORED)
            self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._usize & 0xFFFFFFFF))
        self._flush_ops()
        if self._fence is not None:
            self._fence.result()
        diff_id = "sha256:" + self._diff.hexdigest()
        return LayerDigests(
            diff_id=diff_id,
            digest=diff_id if self.mode == "none" else "sha256:" + self._out.hexdigest(),
            size=self._size,
            uncompressed_size=self._usize,
        )

    # -- hashing ---------------------------------------------------------------------------

    def _hash(self, hashes: tuple[sha256.Hash, ...], data: bytes | bytearray | memoryview) -> None:
        self._ops.append((hashes, data))

    def _absorb(self, data: bytes | bytearray | memoryview) -> None:
        """Tar bytes into the diff_id (and the attached hash)."""
        self._hash((self._diff, self._also) if self._also else (self._diff,), data)

    def _flush_ops(self) -> None:
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        if self._executor is None:
            _run_hash_ops(ops)
        else:
            self._fence = self._executor.submit(_run_hash_ops, ops)

    def _emit(self, data: bytes | bytearray | memoryview, hashed: bool = False) -> None:
        """Blob bytes out; hashed into the blob digest unless `hashed` says it was done."""
        if data:
            if not hashed:
                self._hash((self._out,), data)
            self._size += len(data)
            self._sink(data)

    # -- chunks ----------------------------------------------------------------------------

    def _chunk_piece(self, piece: memoryview) -> None:
        """Tar bytes that stay within the current chunk."""
        if self._chunk_mode is None:
            room = SAMPLE - len(self._pending) if self.mode == "auto" else 0
            head = piece[: max(0, room)]
            if head:
                self._absorb(head)
                self._pending += head
                self._usize += len(head)
                piece = piece[len(head) :]
            if self.mode == "auto" and len(self._pending) < SAMPLE:
                return  # still sampling: the chunk ends only at the end of the stream
            self._decide()
        if piece:
            if self._chunk_mode == "deflate":
                assert self._deflater is not None
                self._absorb(piece)
                self._usize += len(piece)
                self._emit(self._deflater.compress(piece))
            else:
                self._stored(piece)
        if self._usize % CHUNK == 0:
            self._end_chunk()

    def _decide(self) -> None:
        if self.mode == "auto" and not is_compressible(memoryview(self._pending)[:SAMPLE]):
            self._chunk_mode = "stored"  # the sample is the start of the first stored block
            return
        self._chunk_mode = "deflate"
        self._deflater = chunk_deflater(self.level)
        pending, self._pending = self._pending, bytearray()
        self._emit(self._deflater.compress(pending))

    def _end_chunk(self) -> None:
        if self._chunk_mode == "deflate":
            assert self._deflater is not None
            self._emit(self._deflater.flush(zlib.Z_SYNC_FLUSH))
            self._deflater = None
        elif self._chunk_mode == "stored" and self._pending:  # the end of the stream
            self._stored_block(self._pending, self._usize - len(self._pending), pending=True)
            self._pending = bytearray()
        self._chunk_mode = None

    def _stored(self, piece: memoryview) -> None:
        """Tar bytes of a stored chunk: whole blocks go out as they are, parts are gathered."""
        pos = 0
        while pos < len(piece):
            block_start = self._usize - len(self._pending)  # blocks tile each chunk
            block_len = min(STORED_BLOCK, CHUNK - block_start % CHUNK)
            take = min(block_len - len(self._pending), len(piece) - pos)
            part = piece[pos : pos + take]
            if not self._pending and take == block_len:
                self._stored_block(part, self._usize, pending=False)
            else:
                self._absorb(part)
                self._pending += part
                if len(self._pending) == block_len:
                    self._stored_block(self._pending, self._usize + take - block_len, pending=True)
                    self._pending = bytearray()
            self._usize += take
            pos += take

    def _stored_block(
        self, data: bytes | bytearray | memoryview, start: int, pending: bool
    ) -> None:
        """One stored block of tar bytes from offset `start`, after its frame. `pending` data
        is already in the diff_id; otherwise diff_id, attached hash and blob digest take it
        together (they all sit on the same 64-byte grid here)."""
        self._emit(stored_frame(len(data), start - self._size))
        if pending:
            self._emit(data)
            return
        hashes = (self._diff, self._also, self._out) if self._also else (self._diff, self._out)
        self._hash(hashes, data)
        self._emit(data, hashed=True)
