"""Writing one layer: a deterministic tar of some model files, compressed and hashed in a
single streaming pass, together with each file's own sha256."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from modelyard.errors import SourceError
from modelyard.oci import sha256
from modelyard.oci.compress import LayerDigests, LayerStream
from modelyard.oci.digest import aligned_buffer, iter_chunks
from modelyard.oci.estargz import EStargzWriter
from modelyard.oci.tar import TarWriter, parent_dirs
from modelyard.pack.layering import LayerPlan
from modelyard.pack.source import SourceFile


@dataclass(frozen=True)
class FileDigest:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LayerResult:
    plan: LayerPlan
    digests: LayerDigests
    files: tuple[FileDigest, ...]


Progress = Callable[[int], None]


class Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


def write_layer(
    plan: LayerPlan,
    out: Writable,
    compression: str = "auto",
    level: int = 6,
    mtime: int = 0,
    progress: Progress | None = None,
    layer_format: str = "tar",
) -> LayerResult:
    """Write `plan`'s files as one layer to `out` and return its digests.

    Raises:
        SourceError: a file changed size or could not be read while packing.
    """
    stream: LayerStream | None = None
    hasher: ThreadPoolExecutor | None = None
    tar: TarWriter | EStargzWriter
    if layer_format == "estargz":
        # The eStargz writer compresses and hashes itself, per file and per chunk.
        tar = EStargzWriter(out.write, mtime, level, compression)
    else:
        # Hashing (diff_id, blob digest, each file's sha256, in one pass) runs on `hasher`
        # while this thread reads, compresses and writes: a single-file layer uses two cores.
        hasher = ThreadPoolExecutor(1, thread_name_prefix="layer-sha256")
        stream = LayerStream(out.write, compression, level, hash_executor=hasher)
        tar = TarWriter(stream.write, mtime)
    paths = [f.path for f in plan.files]
    entries: list[tuple[list[str], str | None]] = [(d.split("/"), None) for d in parent_dirs(paths)]
    by_path = {f.path: f for f in plan.files}
    entries.extend((p.split("/"), p) for p in paths)
    entries.sort(key=lambda e: e[0])
    digests: list[FileDigest] = []
    try:
        _write_entries(entries, by_path, tar, stream, progress, digests)
        if isinstance(tar, EStargzWriter):
            return LayerResult(plan, tar.close(), tuple(digests))
        tar.close()
        assert stream is not None
        return LayerResult(plan, stream.close(), tuple(digests))
    finally:
        if hasher is not None:
            hasher.shutdown()


def _copy(
    src: BinaryIO,
    write: Callable[[memoryview], object],
    stream: LayerStream,
    bufs: list[memoryview],
    progress: Progress | None,
) -> None:
    """Copy `src` into `write` (the tar writer in front of `stream`) through the two aligned
    buffers `bufs`, which alternate: a buffer is refilled only once the stream's hashing of it
    is done (`stream.fence()`), so reading and writing one overlap with hashing the other."""
    fences: list[Future[None] | None] = [None, None]
    i = 0
    while True:
        slot = i % 2
        fence = fences[slot]
        if fence is not None:
            fence.result()
        n = src.readinto(bufs[slot])  # type: ignore[attr-defined]
        if not n:
            break
        write(bufs[slot][:n])
        fences[slot] = stream.fence()
        if progress:
            progress(n)
        i += 1
    for fence in fences:
        if fence is not None:
            fence.result()


def _write_entries(
    entries: list[tuple[list[str], str | None]],
    by_path: dict[str, SourceFile],
    tar: TarWriter | EStargzWriter,
    stream: LayerStream | None,
    progress: Progress | None,
    digests: list[FileDigest],
) -> None:
    bufs: list[memoryview] = []  # the copy buffers, made once per layer
    for parts, file_path in entries:
        if file_path is None:
            tar.add_dir("/".join(parts))
            continue
        f = by_path[file_path]
        try:
            with open(f.real, "rb", buffering=0) as src:
                os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                tar.begin_file(f.path, f.size)
                if stream is None:  # eStargz: the writer hashes each file itself
                    assert isinstance(tar, EStargzWriter)
                    for chunk in iter_chunks(src):
                        tar.write(chunk)
                        if progress:
                            progress(len(chunk))
                    file_digest = tar.end_file()
                else:
                    bufs = bufs or [memoryview(aligned_buffer()) for _ in range(2)]
                    h = sha256.new()
                    stream.attach(h)
                    try:
                        _copy(src, tar.write, stream, bufs, progress)
                    finally:
                        stream.detach()
                    tar.end_file()
                    file_digest = "sha256:" + h.hexdigest()
        except OSError as exc:
            raise SourceError(f"cannot read {f.path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise SourceError(f"{f.path}: {exc}") from exc
        digests.append(FileDigest(f.path, f.size, file_digest))
