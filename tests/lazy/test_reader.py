"""`LazyFile` on an in-memory eStargz blob: exact chunks for seeks, a growing read-ahead
window for scans, the memory and disk chunk caches, and verification of every chunk."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from modelyard.errors import DigestMismatch
from modelyard.lazy.cache import ContentCache
from modelyard.lazy.image import Located
from modelyard.lazy.reader import LazyFile
from modelyard.oci import estargz
from modelyard.oci.descriptor import Descriptor
from modelyard.testing.files import MiB

CHUNK = 1 * MiB


class StubImage:
    """What LazyFile needs of a RemoteImage, over bytes in memory, recording every range."""

    def __init__(self, blob: bytes, cache: ContentCache) -> None:
        self.blob = blob
        self.cache = cache
        self.ranges: list[tuple[int, int]] = []
        self.bytes_fetched = 0

    def read_range(self, layer: Descriptor, start: int, end: int) -> bytes:
        self.ranges.append((start, end))
        self.bytes_fetched += end - start
        return self.blob[start:end]

    def close(self) -> None:
        pass


def _image(tmp_path: Path, content: bytes) -> tuple[StubImage, Located, estargz.Toc]:
    out = io.BytesIO()
    w = estargz.EStargzWriter(out.write, chunk_size=CHUNK)
    w.begin_file("w.bin", len(content))
    w.write(content)
    w.end_file()
    d = w.close()
    blob = out.getvalue()
    toc = estargz.read_toc(lambda s, e: blob[s:e], len(blob), d.toc_digest)
    f = toc.file("w.bin")
    assert f is not None
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", d.digest, d.size)
    image = StubImage(blob, ContentCache(tmp_path / "cache"))
    return image, Located("w.bin", f.size, f.digest, layer, f), toc


def _chunks_of(toc: estargz.Toc, ranges: list[tuple[int, int]]) -> list[int]:
    f = toc.file("w.bin")
    assert f is not None
    starts = {c.offset: i for i, c in enumerate(f.chunks)}
    ends = {c.end: i for i, c in enumerate(f.chunks)}
    return [ends[e] - starts[s] + 1 for s, e in ranges]


def test_scan_fetches_a_doubling_window_and_seeks_fetch_exact_chunks(tmp_path: Path) -> None:
    content = random.Random(2).randbytes(20 * CHUNK + 77)
    image, loc, toc = _image(tmp_path, content)
    raw = LazyFile(image, loc)  # type: ignore[arg-type]
    f = io.BufferedReader(raw, buffer_size=64 << 10)
    out = bytearray()
    while block := f.read(100_000):
        out += block
    assert out == content
    sizes = _chunks_of(toc, image.ranges)
    assert sizes[:5] == [1, 2, 2, 3, 4] and sum(sizes) == 21 and max(sizes) <= 8
    # Random access: only the chunks touched, each once.
    image.ranges.clear()
    raw = LazyFile(image, loc)  # type: ignore[arg-type]
    raw.seek(0)
    image.cache = ContentCache(tmp_path / "empty")
    buf = bytearray(10)
    raw.seek(7 * CHUNK - 5)
    assert raw.readinto(buf) == 10 and buf == content[7 * CHUNK - 5 : 7 * CHUNK + 5]
    assert _chunks_of(toc, image.ranges) == [2]
    raw.seek(7 * CHUNK + 100)
    assert raw.read(10) == content[7 * CHUNK + 100 :][:10]
    assert len(image.ranges) == 1  # from memory
    assert raw.seek(0, io.SEEK_END) == len(content) and raw.read(10) == b""


def test_chunks_come_from_the_disk_cache_the_second_time(tmp_path: Path) -> None:
    content = random.Random(3).randbytes(3 * CHUNK)
    image, loc, _ = _image(tmp_path, content)
    with io.BufferedReader(LazyFile(image, loc)) as f:  # type: ignore[arg-type]
        assert f.read() == content
    image.ranges.clear()
    with io.BufferedReader(LazyFile(image, loc)) as f:  # type: ignore[arg-type]
        f.seek(CHUNK + 3)
        assert f.read(5) == content[CHUNK + 3 : CHUNK + 8]
        assert f.read() == content[CHUNK + 8 :]
    assert image.ranges == []


def test_a_corrupt_chunk_is_never_returned(tmp_path: Path) -> None:
    content = random.Random(4).randbytes(3 * CHUNK)
    image, loc, toc = _image(tmp_path, content)
    f = toc.file("w.bin")
    assert f is not None
    bad = bytearray(image.blob)
    bad[f.chunks[1].offset + 5000] ^= 0x10
    image.blob = bytes(bad)
    raw = LazyFile(image, loc)  # type: ignore[arg-type]
    assert raw.read(100) == content[:100]
    raw.seek(CHUNK + 10)
    with pytest.raises(DigestMismatch):
        raw.read(100)
